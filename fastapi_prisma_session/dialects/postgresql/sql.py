"""PostgreSQL: matching by jsonb, ON CONFLICT upserts, SKIP LOCKED prune batches, and an
advisory lock so that one process prunes at a time across processes and hosts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    BigInteger,
    Text,
    and_,
    any_,
    bindparam,
    case,
    cast,
    column,
    exists,
    func,
    literal_column,
    null,
    select,
    table,
    text,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.sql.elements import quoted_name
from sqlalchemy.sql.functions import Function

from ..base import UNREADABLE_ONLY, Serialize, SQLDialect, check_user_key, encodable, user_key_index_name

if TYPE_CHECKING:
    from sqlalchemy import ColumnElement, Executable

# PostgreSQL not knowing a function.
UNDEFINED_FUNCTION = "42883"


def _jsonb_holds(value: Any) -> bool:
    """Whether jsonb can hold `value`: no string in it (key or value) has a NUL or a lone surrogate."""
    if isinstance(value, str):
        return "\x00" not in value and (value.isascii() or encodable(value))
    if isinstance(value, dict):
        return all(_jsonb_holds(key) and _jsonb_holds(item) for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return all(_jsonb_holds(item) for item in value)
    return True


class Dialect(SQLDialect):
    name = "postgresql"
    sids_as_array = True

    def listed(self, column: ColumnElement[Any], name: str) -> ColumnElement[bool]:
        # column = ANY($1): one statement, and one plan, for any number of values.
        return column == any_(bindparam(name, type_=postgresql.ARRAY(Text)))

    def build_upsert(self) -> Executable:
        return self.upsert_on_sid(postgresql.insert)

    def readable_expiry(self) -> ColumnElement[Any]:
        # TIMESTAMP reaches 4713 BC and 294276 AD, Python's datetime years 1 to 9999: asyncpg fails the
        # whole statement (OverflowError) on such a row. ±infinity it reads as datetime.min and max.
        column = self.table.c.expiresAt
        year = func.extract("year", column)
        outside = and_(func.isfinite(column), ~year.between(literal_column("1"), literal_column("9999")))
        return case((outside, null()), else_=column).label(column.key)

    def expired_ids(self, limit: ColumnElement[int]) -> Any:
        c = self.table.c
        # SKIP LOCKED: concurrent pruners share the work instead of waiting on each other's rows.
        return (
            select(c.id)
            .where(self.expired())
            .limit(limit)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )

    def in_prune_batch(self, limit: ColumnElement[int]) -> ColumnElement[bool]:
        # id = ANY(ARRAY(subquery)): the batch is found first, then each row through the primary key. With
        # `IN (subquery)` and the batch's size a parameter, a generic plan may hash-join the whole table.
        return self.table.c.id == any_(func.array(self.expired_ids(limit)))

    def prune_condition(self, limit: ColumnElement[int]) -> ColumnElement[bool]:
        # The rows by their primary key alone. The subquery locks each row it picks (FOR UPDATE checks the
        # expiry again on the row's newest version), so no touch comes between it and the DELETE. With
        # the expiry in this WHERE too, after a bulk UPDATE that expired many rows (statistics that say
        # hardly any are expired) the planner reads the expiresAt index and filters by id instead: every
        # batch then walks all the expired rows left, and a large backlog prunes in quadratic time.
        return self.in_prune_batch(limit)

    def matching(
        self, match: dict[str, Any], serialize: Serialize
    ) -> tuple[ColumnElement[Any], dict[str, Any]]:
        # Each key's value equals the given one as jsonb: true is not 1 and "42" is not 42, and unlike
        # containment (@>) ["admin"] does not match ["admin", "user"].
        data = cast(self.table.c.data, postgresql.JSONB)
        params: dict[str, Any] = {}
        checks = []
        for n, (key, value) in enumerate(match.items()):
            params[f"key{n}"], params[f"value{n}"] = key, serialize(value)
            value_json = cast(bindparam(f"value{n}", type_=Text), postgresql.JSONB)
            checks.append(data.op("->")(bindparam(f"key{n}", type_=Text)) == value_json)
        return and_(*checks), params

    # The user key: an expression index on a function of `data` that reads it as jsonb, and answers for
    # data jsonb cannot hold (invalid JSON, a \u0000, a lone surrogate) instead of failing the write.
    user_key_exact = True

    def user_key_function(self) -> str:
        """The function the user-key index calls, one per table: `"Session_json_value"(data, key)`."""
        return f"{self.table.name}_json_value"

    def user_key_value(self, key: str, data: ColumnElement[Any] | None = None) -> ColumnElement[Any]:
        # The key is written into the SQL, not bound: the index matches the query's expression only then.
        column = self.table.c.data if data is None else data
        name = quoted_name(self.user_key_function(), quote=True)
        return Function(name, column, literal_column(f"'{check_user_key(key)}'"), type_=postgresql.JSONB)

    def user_key_unreadable(self) -> ColumnElement[Any]:
        return literal_column("'[]'::jsonb", postgresql.JSONB)

    def user_key_parameter(self, name: str) -> ColumnElement[Any]:
        return cast(bindparam(name, type_=Text), postgresql.JSONB)

    def user_key_lookup(self, value: Any, serialize: Serialize) -> Any:
        # What the function gives a row holding `value` under the key: [value], as jsonb. A value jsonb
        # cannot hold cannot be a lookup either, and a row holding it is one the function gave '[]'.
        if not _jsonb_holds(value):
            return UNREADABLE_ONLY
        return f"[{serialize(value)}]"

    def user_key_missing(self, error: BaseException | None) -> bool:
        # The user-key index's function is not there: its migration has not run.
        return getattr(error, "sqlstate", None) == UNDEFINED_FUNCTION

    def user_key_index_exists(self, key: str) -> Executable:
        listed = table("pg_indexes", column("schemaname"), column("tablename"), column("indexname"))
        return select(
            exists().where(
                listed.c.schemaname == func.current_schema(),
                listed.c.tablename == self.table.name,
                listed.c.indexname == user_key_index_name(self.table.name, key),
            )
        )

    def user_key_ddl(self, key: str, *, if_exists: bool = False) -> tuple[list[Executable], list[Executable]]:
        function = self._quote(self.user_key_function())
        create_index, drop_index = super().user_key_ddl(key, if_exists=if_exists)
        # [value] when the key is there (JSON null included), NULL when it is not, [] when the text is
        # not JSON jsonb can hold. IMMUTABLE, so that it can be indexed: it depends on its arguments only.
        create_function = text(
            f"""CREATE OR REPLACE FUNCTION {function}(data text, key text) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE STRICT AS $fn$
DECLARE
  found jsonb;
BEGIN
  BEGIN
    found := data::jsonb -> key;
  EXCEPTION WHEN OTHERS THEN
    RETURN '[]'::jsonb;
  END;
  RETURN CASE WHEN found IS NULL THEN NULL ELSE jsonb_build_array(found) END;
END
$fn$"""
        )
        drop_function = text(f"DROP FUNCTION IF EXISTS {function}(text, text)")
        return [create_function, *create_index], [*drop_index, drop_function]

    def _quote(self, name: str) -> str:
        return str(postgresql.dialect().identifier_preparer.quote(name))  # type: ignore[no-untyped-call]

    def prune_lock(self) -> Executable:
        # A transaction-level lock: it ends with the batch's transaction, whatever the pooler does.
        return select(func.pg_try_advisory_xact_lock(bindparam("key", type_=BigInteger)))

    # Every transaction committed or rolled back in this database, as its statistics count them: one of
    # them a prune batch's own, and one the pool's ping before it (an empty statement is a transaction).
    own_activity_per_batch = 1
    ping_activity = 1

    def activity(self) -> Executable:
        return text(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()"
        )
