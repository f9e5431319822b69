"""SQLite: merges rebuilt with json_each, ON CONFLICT upserts; one writer at a time needs no prune lock."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from sqlalchemy import Text, and_, bindparam, case, false, func, select
from sqlalchemy.dialects import sqlite

from .base import Serialize, SQLDialect

if TYPE_CHECKING:
    from datetime import datetime

    from sqlalchemy import ColumnElement, Executable

# SQLite has no jsonb: rebuild the object from json_each, the stored keys that survive then the patch.
# json_each hands back containers and true/false/null as text, which json() turns back into JSON.
MERGE = """UPDATE {table} SET "expiresAt" = :expires, data = (
    SELECT json_group_object(key, CASE WHEN type IN ('object', 'array') THEN json(value)
                                      WHEN type IN ('true', 'false', 'null') THEN json(type)
                                      ELSE value END)
    FROM (SELECT key, value, type FROM json_each({table}.data)
          WHERE key NOT IN (SELECT value FROM json_each(:removed))
            AND key NOT IN (SELECT key FROM json_each(:patch))
          UNION ALL
          SELECT key, value, type FROM json_each(:patch)))
    WHERE sid = :session_id"""


class Dialect(SQLDialect):
    name = "sqlite"

    def build_upsert(self) -> Executable:
        return self.upsert_on_sid(sqlite.insert)

    def build_merge(self) -> Executable:
        return self.merge_statement(MERGE, Text())

    def merge_params(self, sid: str, patch: str, removed: list[str], expires: datetime) -> dict[str, Any]:
        return {"session_id": sid, "patch": patch, "removed": json.dumps(removed), "expires": expires}

    def expired_ids(self, limit: int) -> Any:
        c = self.table.c
        return select(c.id).where(c.expiresAt <= bindparam("now")).limit(limit).scalar_subquery()

    def matching(
        self, match: dict[str, Any], serialize: Serialize
    ) -> tuple[ColumnElement[Any], dict[str, Any]]:
        data = self.table.c.data
        params: dict[str, Any] = {}
        checks = []
        for n, (key, value) in enumerate(match.items()):
            params[f"path{n}"], params[f"value{n}"] = json_path(key), serialize(value)
            checks.append(data.op("->")(bindparam(f"path{n}")) == func.json(bindparam(f"value{n}")))
        # json_valid first: a corrupt row must not fail the whole statement.
        return case((func.json_valid(data) == 1, and_(*checks)), else_=false()), params


def json_path(key: str) -> str:
    return '$."' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'
