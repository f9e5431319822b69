"""Every SQL statement the store runs, built once per store so that no request builds SQL.

Each write is a single statement: the store runs them on an autocommit connection, so none of them
pays for BEGIN/COMMIT round trips, and none of them reads before it writes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    Text,
    and_,
    bindparam,
    case,
    cast,
    delete,
    false,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from .exceptions import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime

    from sqlalchemy import ColumnElement, Delete, Executable, Insert, Select, Table, TextClause
    from sqlalchemy.engine import Dialect

SUPPORTED_DIALECTS = ("postgresql", "sqlite")


@dataclass(frozen=True, slots=True)
class NativeStatement:
    """A statement compiled once to the driver's own SQL, for the request path on asyncpg."""

    sql: str
    order: tuple[str, ...]

    @classmethod
    def compile(cls, statement: Executable, dialect: Dialect) -> NativeStatement:
        compiled = statement.compile(dialect=dialect)  # type: ignore[attr-defined]
        return cls(compiled.string, tuple(compiled.positiontup or ()))

    def args(self, params: Mapping[str, Any]) -> list[Any]:
        return [params[name] for name in self.order]


class SessionQueries:
    """The prebuilt statements for one session table on one database dialect.

    Bound parameters: `session_id`, `sids`, `record_id`, `payload`, `expires`, `expected`, `patch`,
    `removed` and `now`, named apart from the columns, which SQLAlchemy reserves in INSERT and UPDATE.
    """

    def __init__(self, table: Table, dialect: str, *, prune_batch_size: int) -> None:
        if dialect not in SUPPORTED_DIALECTS:
            raise ConfigurationError(
                f"the {dialect!r} database is not supported; use PostgreSQL (postgresql+asyncpg://) "
                "or SQLite (sqlite+aiosqlite://)"
            )
        c = table.c
        by_sid = c.sid == bindparam("session_id")
        live = c.expiresAt > bindparam("now")
        row_values: dict[str, Any] = {"data": bindparam("payload"), "expiresAt": bindparam("expires")}
        # What a delete hands back when there is a `dispose` to call.
        self.returned = (c.sid, c.data)

        self.load: Executable = select(c.data, c.expiresAt).where(by_sid)
        self.insert: Executable = insert(table).values(
            id=bindparam("record_id"), sid=bindparam("session_id"), **row_values
        )
        self.update: Executable = update(table).where(by_sid).values(**row_values)
        # Compare-and-set: rewrite the row only if it still holds the text this request loaded.
        self.update_if_unchanged: Executable = (
            update(table).where(by_sid, c.data == bindparam("expected")).values(**row_values)
        )
        self.upsert: Executable = self._upsert(table, dialect)
        self.touch: Executable = update(table).where(by_sid).values(expiresAt=bindparam("expires"))
        self.merge: Executable = _merge_statement(table.name, dialect)

        by_sids = delete(table).where(c.sid.in_(bindparam("sids", expanding=True)))
        self.delete: Executable = by_sids
        self.delete_returning: Executable = by_sids.returning(*self.returned)
        self.clear: Executable = delete(table)
        self.clear_returning: Executable = delete(table).returning(*self.returned)

        self.live_rows: Executable = select(c.sid, c.data).where(live)
        self.live_ids: Executable = select(c.sid).where(live)
        self.live_count: Executable = select(func.count()).select_from(table).where(live)

        # Prune in batches through the expiresAt index; SKIP LOCKED lets concurrent pruners share the work
        # on PostgreSQL (SQLite ignores it: it has one writer at a time anyway).
        expired_ids = (
            select(c.id)
            .where(c.expiresAt <= bindparam("now"))
            .limit(prune_batch_size)
            .with_for_update(skip_locked=True)
        )
        prune_batch = delete(table).where(c.id.in_(expired_ids.scalar_subquery()))
        self.prune_batch: Executable = prune_batch
        self.prune_batch_returning: Executable = prune_batch.returning(*self.returned)
        # PostgreSQL: one pruner at a time across processes and hosts, coordinated by the database.
        self.prune_lock: Executable | None = None
        self.prune_unlock: Executable | None = None
        if dialect == "postgresql":
            self.prune_lock = select(func.pg_try_advisory_lock(bindparam("key", type_=BigInteger)))
            self.prune_unlock = select(func.pg_advisory_unlock(bindparam("key", type_=BigInteger)))

        self._table = table
        self._dialect = dialect
        self.native: dict[str, NativeStatement] = {}
        self.all_rows: Executable = select(c.sid, c.data, c.expiresAt)
        self.rows_with_keys_like: Executable = select(c.sid, c.data, c.expiresAt).where(
            c.data.like(bindparam("pattern"), escape="\\")
        )

    def merge_params(self, sid: str, patch: str, removed: list[str], expires: datetime) -> dict[str, Any]:
        """Parameters of `merge`; `patch` is a JSON object, `removed` the keys to delete."""
        removed_param = removed if self._dialect == "postgresql" else json.dumps(removed)
        return {"session_id": sid, "patch": patch, "removed": removed_param, "expires": expires}

    def compile_native(self, dialect: Dialect) -> None:
        """Precompile the request path's statements (load, insert, update, touch) for the raw driver."""
        for name in ("load", "insert", "update", "update_if_unchanged", "touch", "merge"):
            self.native[name] = NativeStatement.compile(getattr(self, name), dialect)

    def delete_matching(self, match: dict[str, Any], serialize: Any) -> tuple[Delete, dict[str, Any]]:
        """A DELETE of every row whose JSON data holds all of `match`'s key/value pairs, and its params."""
        condition, params = self._matching(match, serialize)
        return delete(self._table).where(condition), params

    def select_matching(self, match: dict[str, Any], serialize: Any) -> tuple[Select[Any], dict[str, Any]]:
        """A SELECT of the live rows (sid, data, expiresAt) whose JSON data holds all of `match`."""
        c = self._table.c
        condition, params = self._matching(match, serialize)
        statement = select(c.sid, c.data, c.expiresAt).where(condition, c.expiresAt > bindparam("now"))
        return statement, params

    def _matching(self, match: dict[str, Any], serialize: Any) -> tuple[ColumnElement[Any], dict[str, Any]]:
        data = self._table.c.data
        params: dict[str, Any] = {}
        if self._dialect == "postgresql":
            params["match"] = serialize(match)
            match_json = cast(bindparam("match", type_=Text), postgresql.JSONB)
            return cast(data, postgresql.JSONB).op("@>")(match_json), params
        checks = []
        for n, (key, value) in enumerate(match.items()):
            params[f"path{n}"], params[f"value{n}"] = _json_path(key), serialize(value)
            checks.append(data.op("->")(bindparam(f"path{n}")) == func.json(bindparam(f"value{n}")))
        # json_valid first: a corrupt row must not fail the whole statement.
        return case((func.json_valid(data) == 1, and_(*checks)), else_=false()), params

    @staticmethod
    def _upsert(table: Table, dialect: str) -> Insert:
        dialect_insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        stmt = dialect_insert(table).values(
            id=bindparam("record_id"),
            sid=bindparam("session_id"),
            data=bindparam("payload"),
            expiresAt=bindparam("expires"),
        )
        # The row keeps its id on conflict: only the session's contents and expiry change.
        return stmt.on_conflict_do_update(
            index_elements=[table.c.sid],
            set_={"data": stmt.excluded.data, "expiresAt": stmt.excluded.expiresAt},
        )


def _json_path(key: str) -> str:
    return '$."' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'


# The merge: keys in the `patch` object replace the stored ones, keys in `removed` go, and every other
# stored key stays as it is, so concurrent requests that change different keys all keep their changes.
_MERGE_SQL = {
    "postgresql": (
        "UPDATE {table} SET "
        "data = ((data::jsonb - CAST(:removed AS text[])) || CAST(:patch AS jsonb))::text, "
        '"expiresAt" = :expires WHERE sid = :session_id'
    ),
    # SQLite has no jsonb: rebuild the object from json_each, the stored keys that survive then the patch.
    # json_each hands back containers and true/false/null as text, which json() turns back into JSON.
    "sqlite": """UPDATE {table} SET "expiresAt" = :expires, data = (
        SELECT json_group_object(key, CASE WHEN type IN ('object', 'array') THEN json(value)
                                          WHEN type IN ('true', 'false', 'null') THEN json(type)
                                          ELSE value END)
        FROM (SELECT key, value, type FROM json_each({table}.data)
              WHERE key NOT IN (SELECT value FROM json_each(:removed))
                AND key NOT IN (SELECT key FROM json_each(:patch))
              UNION ALL
              SELECT key, value, type FROM json_each(:patch)))
        WHERE sid = :session_id""",
}


def _merge_statement(table_name: str, dialect: str) -> TextClause:
    quoted = '"' + table_name.replace('"', '""') + '"'
    removed_type = postgresql.ARRAY(Text) if dialect == "postgresql" else Text
    return text(_MERGE_SQL[dialect].format(table=quoted)).bindparams(
        bindparam("removed", type_=removed_type),
        bindparam("patch", type_=Text),
        bindparam("expires", type_=DateTime),
        bindparam("session_id", type_=Text),
    )
