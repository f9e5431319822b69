"""Writing a loaded session back without losing what other requests wrote meanwhile.

The row is rewritten whole, in one statement, if it still holds the text this request loaded
(compare-and-set). If another request changed it, only this request's keys (and the cookie) are applied
to the row as it is now, in Python (SQL's JSON functions change numbers and refuse some strings), and
compare-and-set again. A row deleted meanwhile (a logout, a prune) is never brought back. The dialect
says what the compare-and-set compares (`expected_data`): the loaded text, or its digest on MySQL.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from .cookies import COOKIE_KEY
from .durations import utcnow
from .exceptions import StoreUnavailableError
from .logs import redact

if TYPE_CHECKING:
    from datetime import datetime

    from .executor import Executor
    from .rows import RowFormat

# A merge that keeps losing compare-and-set races to other processes gives up after this many tries.
MERGE_ATTEMPTS = 10


class Merger:
    """Compare-and-set writes of one store's sessions."""

    def __init__(self, executor: Executor, rows: RowFormat) -> None:
        self._db = executor
        self._rows = rows

    async def write_back(
        self,
        params: dict[str, Any],
        session: Mapping[str, Any],
        changed: Iterable[str],
        removed: Iterable[str],
        expected: str | None,
        *,
        merge: bool = True,
    ) -> bool:
        """Write `session` (whose row parameters are `params`, a fresh dict this adds `expected` to) over
        the row loaded as `expected`, or apply its `changed` and `removed` keys to what is stored now
        (unless not `merge`). Returns whether the row exists (False too when a write that may not merge
        found the row changed)."""
        sid = params["session_id"]
        async with self._db.writers.one(sid) as writer:
            if expected is not None:
                # The caller's fresh parameters, not copied again.
                params["expected"] = self._db.sql.expected_data(expected)
                if await self._db.write("update_if_unchanged", params):
                    return True
            if not merge:
                return False
            writer.bound()  # the merge's statements, all within what is left of the deadline
            patch = {key: session[key] for key in changed if key in session}
            if COOKIE_KEY in session:
                patch[COOKIE_KEY] = session[COOKIE_KEY]
            return await self._apply(sid, patch, removed, params["expires"])

    async def patch(self, sid: str, patch: Mapping[str, Any], expires: datetime) -> bool:
        """Set the keys of `patch` in the stored session `sid`, keeping every other key as it is."""
        async with self._db.writers.one(sid) as writer:
            writer.bound()
            return await self._apply(sid, patch, (), expires)

    async def _apply(
        self, sid: str, patch: Mapping[str, Any], removed: Iterable[str], expires: datetime
    ) -> bool:
        gone = set(removed)
        for _ in range(MERGE_ATTEMPTS):
            row = await self._db.fetch_row("load", {"session_id": sid})
            if row is None or row[1] is None or row[1] <= utcnow():
                return False  # destroyed, pruned or expired meanwhile: not brought back
            stored = self._rows.parse(sid, row[0]) or {}
            merged = {key: value for key, value in stored.items() if key not in gone and key not in patch}
            merged.update(patch)
            params = self._rows.params(sid, merged, expires)  # SessionTooLargeError: nothing written
            params["expected"] = self._db.sql.expected_data(row[0])
            if await self._db.write("update_if_unchanged", params):
                return True
        raise StoreUnavailableError(f"session {redact(sid)} is written by too many requests at once")
