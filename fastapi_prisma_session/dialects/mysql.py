"""MySQL 8 and MariaDB 10.11 (asyncmy): ON DUPLICATE KEY UPDATE upserts, prune batches through a
derived table, a named lock (GET_LOCK) so that one process prunes at a time, and no RETURNING.

Prisma's table is `utf8mb4_unicode_ci`, whose comparisons fold case and accents ('Bob' = 'bob'): a
compare-and-set on such a comparison would overwrite a change it cannot see, so `equal` compares bytes
too, after the index has found the row. Matching by data is done in Python: MariaDB's JSON functions
compare text (1.0 is not 1, key order counts) and MySQL's compare JSON, so neither says what
PostgreSQL's jsonb says, and one comparison in Python serves both.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import String, and_, bindparam, cast, func, literal_column, select, text, type_coerce
from sqlalchemy.dialects import mysql

from .base import Serialize, SQLDialect

if TYPE_CHECKING:
    from sqlalchemy import ColumnElement, Executable, Subquery

# GET_LOCK names are server-wide and at most 64 characters: the database's name and the table's key are
# hashed into one, so that two databases on one server prune side by side.
LOCK_PREFIX = "fastapi_prisma_session:"
# ER_SUBQUERY_NO_1_ROW: what the upsert raises rather than overwrite a session whose sid differs in case.
SUBQUERY_ROWS = 1242


class Dialect(SQLDialect):
    name = "mysql"
    longest_key = 191  # Prisma's String on MySQL: VARCHAR(191)
    # MEDIUMTEXT holds 16 MiB, and the server takes a statement of at most max_allowed_packet (16 MiB on
    # MariaDB, 64 MiB on MySQL 8) or closes the connection: 64 KiB are left for the rest of the statement.
    longest_data = 16 * 1024 * 1024 - 64 * 1024
    deletes_returning = False  # MySQL 8 has no DELETE ... RETURNING (MariaDB has, since 10.5)
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

    def expired_ids(self, limit: ColumnElement[int]) -> Any:
        c = self.table.c
        # MariaDB refuses LIMIT in an IN subquery, and MySQL a subquery on the table a DELETE deletes
        # from; a derived table is neither: it is read (through the expiresAt index) before the delete.
        return select(c.id).where(self.expired()).order_by(c.expiresAt).limit(limit).subquery("batch")

    def in_prune_batch(self, limit: ColumnElement[int]) -> ColumnElement[bool]:
        # A join with the batch (a multi-table DELETE), each row then found by its primary key. With
        # `id IN (SELECT id FROM batch)`, MariaDB reads the whole table and runs the subquery per row:
        # at 400,000 rows a batch took seconds, at 1,000,000 longer than the read timeout.
        batch: Subquery = self.expired_ids(limit)
        return self.table.c.id == batch.c.id

    def matching(self, match: dict[str, Any], serialize: Serialize) -> None:
        return None

    def equal(self, column: ColumnElement[Any], value: ColumnElement[Any]) -> ColumnElement[bool]:
        # The collation's comparison finds the row through the index; the binary one keeps it only if
        # every byte is the same.
        return and_(column == value, _bytes(column) == value)

    def among(self, column: ColumnElement[Any], values: ColumnElement[Any]) -> ColumnElement[bool]:
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
