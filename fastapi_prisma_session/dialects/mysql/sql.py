"""MySQL 8 and MariaDB 10.11 (asyncmy): ON DUPLICATE KEY UPDATE upserts, prune batches of DELETE ...
ORDER BY ... LIMIT, a named lock (GET_LOCK) so that one process prunes at a time, and no RETURNING.

Prisma's table is `utf8mb4_unicode_ci`, whose comparisons fold case and accents ('Bob' = 'bob'): a
compare-and-set on such a comparison would overwrite a change it cannot see, so `equal` compares bytes
too, after the index has found the row. Matching by data is done in Python: MariaDB's JSON functions
compare text (1.0 is not 1, key order counts) and MySQL's compare JSON, so neither says what
PostgreSQL's jsonb says, and one comparison in Python serves both.

The user key (`user_key=`) is a generated column, VIRTUAL, and an index on it: MariaDB has no index on an
expression. The column holds the key's value in a normal form that the same expression computes for the
value looked up, so that the index finds every row that could match; matching.py then compares each in
Python (`user_key_exact` is False: numbers meet as doubles, long strings are cut short).
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    ClauseElement,
    ColumnElement,
    Executable,
    String,
    and_,
    bindparam,
    case,
    cast,
    column,
    delete,
    exists,
    func,
    literal_column,
    null,
    select,
    table,
    text,
    type_coerce,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.visitors import InternalTraversal

from ...rows import DataLimit
from ..base import (
    Serialize,
    SQLDialect,
    check_user_key,
    user_key_column_name,
    user_key_index_name,
)

if TYPE_CHECKING:
    from sqlalchemy import Delete
    from sqlalchemy.sql.compiler import SQLCompiler

# GET_LOCK names are server-wide and at most 64 characters: the database's name and the table's key are
# hashed into one, so that two databases on one server prune side by side.
LOCK_PREFIX = "fastapi_prisma_session:"
# ER_SUBQUERY_NO_1_ROW: what the upsert raises rather than overwrite a session whose sid differs in case.
SUBQUERY_ROWS = 1242
# ER_BAD_FIELD_ERROR: no such column (the user key's, when its migration has not run).
UNKNOWN_COLUMN = 1054
# The user-key column's bytes: a string value is cut to this many (an index entry stays small).
USER_KEY_BYTES = 255
# A number in JSON's own form (no backslashes: the same under NO_BACKSLASH_ESCAPES).
JSON_NUMBER = "'^-?(0|[1-9][0-9]*)([.][0-9]+)?([eE][-+]?[0-9]+)?$'"
# What the user-key column holds for data the database cannot read as JSON. A value it can read is
# 's' and the string, 'n' and the number as a double, or 'true', 'false', 'null', '[]' (any array) or
# '{}' (any object).
UNREADABLE = "'!'"


class Dialect(SQLDialect):
    name = "mysql"
    longest_key = 191  # Prisma's String on MySQL: VARCHAR(191)
    # MEDIUMTEXT holds 16 MiB, and the server takes a statement of at most max_allowed_packet (16 MiB on
    # MariaDB, 64 MiB on MySQL 8) or closes the connection: 64 KiB are left for the rest of the statement.
    # The data is counted as asyncmy sends it, a string literal with a backslash before each of these.
    longest_data = DataLimit(16 * 1024 * 1024 - 64 * 1024, escaped="\\'\"\x00\n\r\x1a")
    deletes_returning = False  # MySQL 8 has no DELETE ... RETURNING (MariaDB has, since 10.5)
    scans_miss_moved_keys = True
    sid_clash_error = SUBQUERY_ROWS

    def build_upsert(self) -> Executable:
        stmt = mysql.insert(self.table).values(
            id=bindparam("record_id"),
            sid=bindparam("session_id"),
            data=bindparam("payload"),
            expiresAt=bindparam("expires"),
        )
        # The row keeps its id on a duplicate sid: only the session's contents and expiry change. The
        # unique index compares under the collation, so 'ABC' finds the row of 'abc', another session,
        # and a duplicate id finds another sid's row too: that row is left alone and the statement fails
        # (a subquery of two rows where one value goes: SUBQUERY_ROWS), which MySQL evaluates only
        # then, before the next assignment.
        same_sid = _bytes(self.table.c.sid) == stmt.inserted.sid
        clash = select(literal_column("1")).union_all(select(literal_column("2"))).scalar_subquery()
        return stmt.on_duplicate_key_update(
            data=func.if_(same_sid, stmt.inserted.data, clash), expiresAt=stmt.inserted.expiresAt
        )

    def unchanged(self) -> ColumnElement[bool]:
        # The stored data's SHA-256 against the loaded text's, computed in Python. Compared as text, the
        # loaded data would be sent twice (`equal` compares by collation, then by bytes) besides the new
        # data: a statement three times the session, and a session well within `longest_data` could never
        # be changed again. The digest is of the UTF-8 bytes, as Python encodes the text, whatever the
        # column's character set.
        utf8 = cast(self.table.c.data, mysql.CHAR(charset="utf8mb4"))
        digest: ColumnElement[str] = func.sha2(utf8, literal_column("256"))
        return digest == bindparam("expected", type_=String)

    def expected_data(self, text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()

    def prune_statements(self, limit: ColumnElement[int]) -> tuple[Executable, Executable]:
        # One table, read through the expiresAt index in its order, each row then found by its primary
        # key and locked: the expiry is checked again on the row as it is when locked, so a row touched
        # meanwhile stays. A DELETE joined with a derived table of the batch's ids (the other databases'
        # form) deletes in a second pass over the ids it gathered, at about half the speed.
        c = self.table.c
        batch = FirstRows(delete(self.table).where(self.expired()), c.expiresAt, limit)
        chosen = (
            select(*self.returned, c.id)
            .where(self.expired())
            .order_by(c.expiresAt)
            .limit(limit)
            .with_for_update()
        )
        return batch, chosen

    def matching(self, match: dict[str, Any], serialize: Serialize) -> None:
        return None

    # -- the user key ----------------------------------------------------------------------------------

    user_key_exact = False

    def user_key_value(self, key: str, data: ColumnElement[Any] | None = None) -> ColumnElement[Any]:
        # The generated column, or (given `data`) the expression it is generated by.
        if data is not None:
            return user_key_of(data, check_user_key(key))
        return column(user_key_column_name(check_user_key(key)), mysql.VARBINARY(USER_KEY_BYTES))

    def user_key_unreadable(self) -> ColumnElement[Any]:
        return literal_column(UNREADABLE)

    def user_key_parameter(self, name: str) -> ColumnElement[Any]:
        # The column's expression, on a document that holds the value looked up (its JSON text): whatever
        # form the server gives a value (a double's digits), both sides get it the same way.
        opening: ColumnElement[str] = literal_column("'{\"v\":'")
        closing: ColumnElement[str] = literal_column("'}'")
        return user_key_of(func.concat(opening, bindparam(name, type_=String), closing), "v")

    def user_key_lookup(self, value: Any, serialize: Serialize) -> Any:
        return serialize(value)  # the value's JSON text, which user_key_parameter reads

    def user_key_missing(self, error: BaseException | None) -> bool:
        return bool(error is not None and error.args and error.args[0] == UNKNOWN_COLUMN)

    def user_key_ddl(self, key: str, *, if_exists: bool = False) -> tuple[list[Executable], list[Executable]]:
        table = self._quote(self.table.name)
        name = user_key_column_name(check_user_key(key))
        index = user_key_index_name(self.table.name, key)
        expression = _sql(user_key_of(literal_column("`data`"), key))
        add_column = (
            f"ALTER TABLE {table} ADD COLUMN {self._quote(name)} VARBINARY({USER_KEY_BYTES}) "
            f"AS ({expression}) VIRTUAL"
        )
        add_index = f"CREATE INDEX {self._quote(index)} ON {table} ({self._quote(name)})"
        drop_index = f"DROP INDEX {self._quote(index)} ON {table}"
        drop_column = f"ALTER TABLE {table} DROP COLUMN {self._quote(name)}"
        if not if_exists:
            return [text(add_column), text(add_index)], [text(drop_index), text(drop_column)]
        # MySQL 8 has no IF [NOT] EXISTS for columns and indexes: each statement runs only where the
        # information schema says it has work to do.
        has_column = self._exists("columns", "column_name", name)
        has_index = self._exists("statistics", "index_name", index)
        return (
            [*_unless(has_column, add_column), *_unless(has_index, add_index)],
            [*_unless(f"NOT {has_index}", drop_index), *_unless(f"NOT {has_column}", drop_column)],
        )

    def user_key_index_exists(self, key: str) -> Executable:
        index = user_key_index_name(self.table.name, key)
        return text(f"SELECT {self._exists('statistics', 'index_name', index)}")

    def _quote(self, name: str) -> str:
        return str(mysql.dialect().identifier_preparer.quote_identifier(name))

    def _exists(self, view: str, column_name: str, name: str) -> str:
        """SQL that is true where the information schema's `view` lists `name` for the table."""
        fields = ("table_schema", "table_name", column_name)
        listed = table(view, *(column(field, String) for field in fields))
        listed.schema = "information_schema"
        found = exists().where(
            listed.c.table_schema == func.database(),
            listed.c.table_name == self.table.name,
            listed.c[column_name] == name,
        )
        return _sql(found)

    def equal(self, column: ColumnElement[Any], value: ColumnElement[Any]) -> ColumnElement[bool]:
        # The collation's comparison finds the row through the index; the binary one keeps it only if
        # every byte is the same.
        return and_(column == value, _bytes(column) == value)

    def among(self, column: ColumnElement[Any], name: str) -> ColumnElement[bool]:
        values: ColumnElement[Any] = bindparam(name, expanding=True)
        return and_(column.in_(values), _bytes(column).in_(values))

    def prune_lock(self) -> Executable:
        # Waits for nothing (timeout 0): 1 when taken, 0 when another connection holds it.
        return select(func.get_lock(self.lock_name(), 0))

    def prune_unlock(self) -> Executable:
        return select(func.release_lock(self.lock_name()))

    # The server's count of reads and writes (all databases: MySQL counts no finer): three of them a prune
    # batch's own (its lock, its DELETE, its unlock).
    own_activity_per_batch = 3

    def activity(self) -> Executable:
        return text(
            "SHOW GLOBAL STATUS WHERE Variable_name IN "
            "('Com_select', 'Com_insert', 'Com_update', 'Com_delete', 'Com_replace', "
            "'Com_insert_select', 'Com_update_multi', 'Com_delete_multi', 'Com_replace_select')"
        )

    def lock_name(self) -> ColumnElement[Any]:
        """The lock's name, for the table's key (parameter `key`) in the current database."""
        key = func.concat_ws(".", func.database(), bindparam("key"))
        return func.concat(LOCK_PREFIX, func.sha1(key))


def _bytes(column: ColumnElement[Any]) -> ColumnElement[Any]:
    """`CAST(column AS BINARY)`, compared with text parameters: a comparison with a binary string is
    byte for byte."""
    return type_coerce(cast(column, mysql.BINARY()), String())


class FirstRows(Executable, ClauseElement):
    """`statement` (a single-table DELETE) with `ORDER BY order LIMIT limit`: MySQL's own DELETE
    syntax, which SQLAlchemy writes only with a fixed limit."""

    __visit_name__ = "first_rows"
    inherit_cache = True
    _traverse_internals: list[tuple[str, InternalTraversal]] = [  # noqa: RUF012 - as its base declares it
        ("statement", InternalTraversal.dp_clauseelement),
        ("order", InternalTraversal.dp_clauseelement),
        ("limit", InternalTraversal.dp_clauseelement),
    ]

    def __init__(self, statement: Delete, order: ColumnElement[Any], limit: ColumnElement[int]) -> None:
        self.statement, self.order, self.limit = statement, order, limit


@compiles(FirstRows)
def _first_rows(element: FirstRows, compiler: SQLCompiler, **kw: Any) -> str:
    statement = compiler.process(element.statement, **kw)
    order, limit = compiler.process(element.order, **kw), compiler.process(element.limit, **kw)
    return f"{statement} ORDER BY {order} LIMIT {limit}"


class OnMariaDB(ColumnElement[bool]):
    """`mariadb` where MariaDB runs the statement, `mysql` where MySQL does: MariaDB runs the text of a
    `/*M! */` comment, which MySQL skips as a comment. MariaDB reads `mariadb OR (FALSE AND mysql)`,
    and never evaluates `mysql`."""

    __visit_name__ = "on_mariadb"
    inherit_cache = True
    _traverse_internals: list[tuple[str, InternalTraversal]] = [  # noqa: RUF012 - as its base declares it
        ("mariadb", InternalTraversal.dp_clauseelement),
        ("mysql", InternalTraversal.dp_clauseelement),
    ]

    def __init__(self, mariadb: ColumnElement[bool], mysql: ColumnElement[bool]) -> None:
        self.mariadb, self.mysql = mariadb, mysql


@compiles(OnMariaDB)
def _on_mariadb(element: OnMariaDB, compiler: SQLCompiler, **kw: Any) -> str:
    mariadb, mysql = compiler.process(element.mariadb, **kw), compiler.process(element.mysql, **kw)
    return f"(/*M! {mariadb} OR (FALSE AND */ {mysql} /*M! ) */)"


def user_key_of(document: ColumnElement[Any], key: str) -> ColumnElement[Any]:
    """What the user-key column holds for the JSON text `document`: NULL without `key` at the top level,
    '!' (UNREADABLE) where the database cannot read the text as a JSON object (or array), else the key's
    value in a normal form.

    Every write computes it, so no text may make it fail, nor warn: in strict mode a warning ends the
    write, and any warning or note costs the client a SHOW WARNINGS round trip. MariaDB's JSON_VALID notes
    every text it refuses (a lone surrogate's escape, `\\ud800`, which JSON.stringify and Python write;
    nesting deeper than 32), and its JSON_EXTRACT warns: on MariaDB the text is checked by JSON_QUERY,
    which returns NULL for what it cannot read, silently (MySQL has no JSON_QUERY; its JSON_VALID is
    silent). JSON_VALID takes numbers inside a document that MariaDB's other JSON functions refuse (`1e-`,
    `-`), and JSON_EXTRACT of such a number warns. So the value's kind is read from its first character
    (an extract of two paths copies the value without reading it), and a number is read only once it
    has JSON's form and JSON_VALID takes it on its own."""
    path: ColumnElement[str] = literal_column(f"'$.{key}'")
    value = func.json_extract(document, path)
    text_value = func.json_value(document, path)
    string = func.left(
        cast(func.concat(literal_column("'s'"), func.json_unquote(value)), mysql.BINARY()), USER_KEY_BYTES
    )
    number = func.concat(literal_column("'n'"), value + literal_column("0e0"))
    kinds: dict[Any, ColumnElement[Any]] = {
        literal_column("'\"'"): string,
        literal_column("'t'"): literal_column("'true'"),
        literal_column("'f'"): literal_column("'false'"),
        literal_column("'n'"): literal_column("'null'"),
        literal_column("'['"): literal_column("'[]'"),
        literal_column("'{'"): literal_column("'{}'"),
    }
    missing = func.if_(text_value.is_(None), null(), literal_column(UNREADABLE))
    is_number = and_(text_value.op("REGEXP")(literal_column(JSON_NUMBER)), func.json_valid(text_value))
    readable = case(
        kinds,
        value=func.substring(func.json_extract(document, path, path), 2, 1),
        else_=func.if_(is_number, number, missing),
    )
    # JSON_QUERY returns the top-level object or array as it is written, without what follows it (which
    # JSON_EXTRACT then warns about): the text is read whole only where nothing follows.
    whole = func.length(func.json_query(document, literal_column("'$'")))
    valid = OnMariaDB(whole.is_not_distinct_from(func.length(document)), func.json_valid(document))
    return case((~valid, literal_column(UNREADABLE)), else_=readable)


def _sql(element: ColumnElement[Any]) -> str:
    """`element` as MySQL's SQL, its values written in."""
    return str(element.compile(dialect=mysql.dialect(), compile_kwargs={"literal_binds": True}))


def _string(value: str) -> str:
    """`value` as a MySQL string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def _unless(condition: str, statement: str) -> list[Executable]:
    """`statement`, run only where `condition` (SQL) is false: a prepared statement of it, or of `DO 0`."""
    name = "fastapi_prisma_session_ddl"
    chosen = f"SET @{name} = IF({condition}, 'DO 0', {_string(statement)})"
    steps = (chosen, f"PREPARE {name} FROM @{name}", f"EXECUTE {name}", f"DEALLOCATE PREPARE {name}")
    return [text(step) for step in steps]
