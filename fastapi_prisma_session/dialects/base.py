"""The statements every database writes the same way, and the ones each database module supplies.

Statements are built once per store, so that no request builds SQL. Each write is a single statement:
the store runs them on an autocommit connection, so none of them pays for BEGIN/COMMIT round trips.
Bound parameters are `session_id`, `new_sid`, `sids`, `record_id`, `payload`, `expires`, `expected`
and `now`, named apart from the columns, which SQLAlchemy reserves in INSERT and UPDATE.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import Index, Integer, MetaData, Text, and_, bindparam, delete, func, insert, select, update
from sqlalchemy.schema import CreateIndex, DropIndex

from ..models import session_table
from ..rows import DataLimit
from ..sqltext import check_batch_size
from .common import (
    NOT_INDEXED,
    UNREADABLE_ONLY,
    USER_KEY_PATTERN,
    Serialize,
    check_user_key,
    encodable,
    is_user_key_object,
    user_key_column_name,
    user_key_index_name,
)

__all__ = [
    "NOT_INDEXED",
    "UNREADABLE_ONLY",
    "USER_KEY_PATTERN",
    "SQLDialect",
    "Serialize",
    "check_user_key",
    "encodable",
    "is_user_key_object",
    "user_key_column_name",
    "user_key_index_name",
]

if TYPE_CHECKING:
    from sqlalchemy import ColumnElement, Delete, Executable, Table
    from sqlalchemy.dialects.postgresql import Insert as PostgresInsert
    from sqlalchemy.dialects.sqlite import Insert as SQLiteInsert


class SQLDialect(ABC):
    """The prebuilt statements for one session table on one database."""

    #: SQLAlchemy's name for the database.
    name: ClassVar[str]
    #: The most characters the `id` and `sid` columns hold, where that is fewer than a sid may have.
    longest_key: ClassVar[int | None] = None
    #: The most bytes of serialized data a row can be written with, counted as the driver sends them,
    #: where the database has a limit.
    longest_data: ClassVar[DataLimit | None] = None
    #: Whether DELETE ... RETURNING hands back the deleted rows; where not (MySQL), `deleted()` is a
    #: SELECT ... FOR UPDATE of them, and the database deletes them by id in the same transaction.
    deletes_returning: ClassVar[bool] = True
    #: Whether a locking read that waited for a row can miss it at the new primary key a move gave it
    #: (InnoDB scans its clustered index: the row's old key is gone, the new one may lie behind the scan).
    scans_miss_moved_keys: ClassVar[bool] = False
    #: Whether a list parameter (`listed`) is one array (else one parameter per value).
    sids_as_array: ClassVar[bool] = False
    #: The driver's error number when the upsert found the row of a sid that is not the same text (a
    #: unique index that folds case); None where the index compares exactly.
    sid_clash_error: ClassVar[int | None] = None

    def __init__(self, table: Table, *, prune_batch_size: int) -> None:
        check_batch_size(prune_batch_size)
        self.table = table
        c = table.c
        by_sid = self.equal(c.sid, bindparam("session_id"))
        live = self.live()
        row_values: dict[str, Any] = {"data": bindparam("payload"), "expiresAt": bindparam("expires")}
        # What a delete hands back when there is a `dispose` to call.
        self.returned = (c.sid, c.data)

        expiry = self.readable_expiry()
        self.load: Executable = select(c.data, expiry).where(by_sid)
        # Several sessions at once (coalescing.py): each row with its sid, for the request that asked.
        self.load_many: Executable = select(c.sid, c.data, expiry).where(self.among(c.sid, "sids"))
        self.insert: Executable = insert(table).values(
            id=bindparam("record_id"), sid=bindparam("session_id"), **row_values
        )
        self.update: Executable = update(table).where(by_sid).values(**row_values)
        # Compare-and-set: rewrite the row only if it still holds the text this request loaded.
        self.update_if_unchanged: Executable = (
            update(table).where(by_sid, self.unchanged()).values(**row_values)
        )
        self.touch: Executable = update(table).where(by_sid).values(expiresAt=bindparam("expires"))
        # regenerate(keep_data=True): the live row moves to the new sid, or nothing happens.
        self.rename: Executable = (
            update(table)
            .where(by_sid, live)
            .values(sid=bindparam("new_sid"), id=func.coalesce(bindparam("record_id", type_=Text), c.id))
        )

        by_sids = delete(table).where(self.among(c.sid, "sids"))
        self.delete: Executable = by_sids
        self.delete_returning: Executable = self.deleted(by_sids)
        self.clear: Executable = delete(table)
        self.clear_returning: Executable = self.deleted(delete(table))
        self.delete_ids: Executable = delete(table).where(self.listed(c.id, "ids"))

        self.live_rows: Executable = select(c.sid, c.data).where(live)
        self.live_ids: Executable = select(c.sid).where(live)
        self.live_count: Executable = select(func.count()).select_from(table).where(live)
        # (sid, data, expiresAt, id): what matching reads, and locks when it deletes what matches by id.
        self.all_rows: Executable = select(c.sid, c.data, expiry, c.id)
        self.rows_with_keys_like: Executable = select(c.sid, c.data, expiry, c.id).where(
            c.data.like(bindparam("pattern"), escape="\\")
        )
        self.locked_rows_by_ids: Executable = (
            select(c.sid, c.data, expiry, c.id).where(self.listed(c.id, "ids")).with_for_update()
        )

        self.upsert: Executable = self.build_upsert()
        # The batch's size is a parameter (`batch_size`): the pruner sizes each batch to the database's pace.
        batch_size = bindparam("batch_size", type_=Integer)
        self.prune_batch, self.prune_batch_returning = self.prune_statements(batch_size)

    # -- what each database writes its own way -------------------------------------------------------

    def live(self) -> ColumnElement[bool]:
        """True for a row that has not expired at `now`."""
        return self.table.c.expiresAt > bindparam("now")

    def expired(self) -> ColumnElement[bool]:
        """True for a row that has expired at `now` (the prune batches' condition)."""
        return self.table.c.expiresAt <= bindparam("now")

    def readable_expiry(self) -> ColumnElement[Any]:
        """The expiry column as the store reads it: NULL (an unreadable expiry) where the database holds
        an instant the driver cannot hand to Python."""
        return self.table.c.expiresAt

    def unchanged(self) -> ColumnElement[bool]:
        """The compare-and-set's condition: the row still holds the data it was loaded with, which the
        parameter `expected` gives as `expected_data` makes it."""
        return self.equal(self.table.c.data, bindparam("expected"))

    def expected_data(self, text: str) -> str:
        """The parameter `expected` for data loaded as `text`: the text itself, or what the database
        compares instead (a digest, where the statement must not carry the data twice)."""
        return text

    @abstractmethod
    def build_upsert(self) -> Executable:
        """Insert the row, or on a conflict of `sid` replace its data and expiry (keeping its id)."""

    def prune_statements(self, limit: ColumnElement[int]) -> tuple[Executable, Executable]:
        """A prune batch: the DELETE of at most `limit` (a bound parameter) rows expired at `now`, and its
        `deleted()` form, which hands back what it deletes. Here a DELETE of the rows whose ids
        `prune_condition` finds."""
        batch = delete(self.table).where(self.prune_condition(limit))
        return batch, self.deleted(batch)

    def expired_ids(self, limit: ColumnElement[int]) -> Any:
        """A subquery of at most `limit` (a bound parameter) ids of rows expired at `now`, found through
        the expiry index: what the prune batch deletes, for a dialect that keeps `prune_statements`."""
        raise NotImplementedError

    def in_prune_batch(self, limit: ColumnElement[int]) -> ColumnElement[bool]:
        """The row is one of `expired_ids(limit)`."""
        return self.table.c.id.in_(self.expired_ids(limit))

    def prune_condition(self, limit: ColumnElement[int]) -> ColumnElement[bool]:
        """The prune batch's condition: the row is one of `expired_ids(limit)`, and is expired still when
        it is deleted, so that a row touched after the subquery found it stays."""
        return and_(self.in_prune_batch(limit), self.expired())

    @abstractmethod
    def matching(
        self, match: dict[str, Any], serialize: Serialize
    ) -> tuple[ColumnElement[Any], dict[str, Any]] | None:
        """A condition true for rows whose JSON data has each of `match`'s keys at the top level with a
        value equal to the given one, as JSON values (true is not 1, "42" is not 42), and its
        parameters; or None where the database cannot say that, and matching.py compares in Python."""

    # -- the user key (`user_key=`): a user's sessions found through an index on `data` -------------------

    #: Whether `user_key_value(...) == user_key_lookup(value)` is the match itself (True), or only narrows
    #: the rows down to candidates that matching.py checks in Python (False).
    user_key_exact: ClassVar[bool] = False

    @abstractmethod
    def user_key_value(self, key: str, data: ColumnElement[Any] | None = None) -> ColumnElement[Any]:
        """What the user-key index holds for a row: the value of `key` in its `data` column (the table's,
        unless given), derived in the database so that rows Node writes count too, by an expression that
        never fails a write whatever `data` holds, and that gives `user_key_unreadable()` for data the
        database cannot read as JSON."""

    @abstractmethod
    def user_key_unreadable(self) -> ColumnElement[Any]:
        """What `user_key_value` gives a row whose data the database cannot read as JSON."""

    def user_key_parameter(self, name: str) -> ColumnElement[Any]:
        """The bound parameter `name` as `user_key_value` is compared with it."""
        return bindparam(name)

    def user_key_lookup(self, value: Any, serialize: Serialize) -> Any:
        """The parameter to compare `user_key_value` with to find rows whose key holds `value`;
        `NOT_INDEXED` when the index cannot find them (matching then reads the table as without it), or
        `UNREADABLE_ONLY` when only the rows it marks unreadable can hold `value`."""
        return NOT_INDEXED

    def user_key_missing(self, error: BaseException | None) -> bool:
        """Whether the driver's `error` says that what `user_key_ddl` adds is not in the database."""
        return False

    def user_key_ddl(self, key: str, *, if_exists: bool = False) -> tuple[list[Executable], list[Executable]]:
        """The statements that add what `user_key_value(key)` needs (a function, an index, or a generated
        column and its index), and the ones that remove it again; with `if_exists`, each does nothing
        when its work is done already."""
        index = self.user_key_index(key)
        return [CreateIndex(index, if_not_exists=if_exists)], [DropIndex(index, if_exists=if_exists)]

    @abstractmethod
    def user_key_index_exists(self, key: str) -> Executable:
        """A SELECT whose one value is true when the database has the index `user_key_ddl(key)` adds."""

    def user_key_index(self, key: str) -> Index:
        """The index on `user_key_value(key)`, built on a copy of the table: the store's stays Prisma's."""
        copy = session_table(self.table.name, MetaData())
        value = self.user_key_value(key, copy.c.data)
        return Index(user_key_index_name(self.table.name, key), value, _table=copy)

    def prune_lock(self) -> Executable | None:
        """A statement that tries to take the lock that lets one process prune at a time (parameter
        `key`), and says whether it did; or None where the database needs none. It is taken for the
        current transaction only, or else released by `prune_unlock()` at the transaction's end."""
        return None

    def prune_unlock(self) -> Executable | None:
        """A statement that releases the lock `prune_lock()` took (parameter `key`), where the lock
        outlives the transaction; None where it ends with it."""
        return None

    #: How much each prune batch adds to `activity()`'s counter itself, and the pool's test of the
    #: connection it takes (`pool_pre_ping`), where that counts.
    own_activity_per_batch: ClassVar[int] = 0
    ping_activity: ClassVar[int] = 0

    def activity(self) -> Executable | None:
        """A statement whose rows' last columns add up to a counter of the work clients have done on the
        database (transactions or statements), which the pruner reads at each batch to pace itself to
        the app's load; None where there is none (SQLite: no other clients to make way for)."""
        return None

    def equal(self, column: ColumnElement[Any], value: ColumnElement[Any]) -> ColumnElement[bool]:
        """`column = value`, character for character. A database whose comparisons fold case (MySQL's
        utf8mb4_unicode_ci) says so its own way."""
        return column == value

    def listed(self, column: ColumnElement[Any], name: str) -> ColumnElement[bool]:
        """`column` is one of the values of the list parameter `name`: `IN (…)`, one parameter each."""
        return column.in_(bindparam(name, expanding=True))

    def among(self, column: ColumnElement[Any], name: str) -> ColumnElement[bool]:
        """`column` is one of the values of the list parameter `name`, character for character, as
        `equal`."""
        return self.listed(column, name)

    def deleted(self, statement: Delete) -> Executable:
        """What hands back the (sid, data) of the rows `statement` deletes: the DELETE with RETURNING;
        where the database has none, a SELECT ... FOR UPDATE of (sid, data, id) of the same rows."""
        if self.deletes_returning:
            return statement.returning(*self.returned)
        chosen = select(*self.returned, self.table.c.id)
        if statement.whereclause is not None:
            chosen = chosen.where(statement.whereclause)
        return chosen.with_for_update()

    # -- helpers for the database modules ------------------------------------------------------------

    def upsert_on_sid(self, dialect_insert: Callable[[Table], PostgresInsert | SQLiteInsert]) -> Executable:
        """`INSERT ... ON CONFLICT (sid) DO UPDATE`, where the database has that syntax."""
        stmt = dialect_insert(self.table).values(
            id=bindparam("record_id"),
            sid=bindparam("session_id"),
            data=bindparam("payload"),
            expiresAt=bindparam("expires"),
        )
        # The row keeps its id on conflict: only the session's contents and expiry change.
        return stmt.on_conflict_do_update(
            index_elements=[self.table.c.sid],
            set_={"data": stmt.excluded.data, "expiresAt": stmt.excluded.expiresAt},
        )

    # -- built on the above --------------------------------------------------------------------------

    def delete_matching(
        self, match: dict[str, Any], serialize: Serialize
    ) -> tuple[Executable, dict[str, Any]] | None:
        """A DELETE of every row that `matching` matches, and its parameters."""
        found = self.matching(match, serialize)
        return None if found is None else (delete(self.table).where(found[0]), found[1])

    def select_matching(
        self, match: dict[str, Any], serialize: Serialize
    ) -> tuple[Executable, dict[str, Any]] | None:
        """A SELECT of the live rows (sid, data, expiresAt) that `matching` matches, and its parameters."""
        found = self.matching(match, serialize)
        if found is None:
            return None
        c = self.table.c
        return select(c.sid, c.data, self.readable_expiry()).where(found[0], self.live()), found[1]
