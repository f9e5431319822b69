"""The row API the middleware's lifecycle uses: a session loaded, created, written back, moved to a new
id, or destroyed, each in as few statements as the database allows.

`SessionRepository` is the contract (the store implements it by delegating to `SessionRows`); the lifecycle
knows nothing else of the store.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from .cookies import MOVED_KEY
from .dialects.driver import Fault
from .durations import naive_utc, utcnow
from .executor import StatementError
from .logs import redact
from .rows import RowFormat, SessionData, check_sid, marker_sid

if TYPE_CHECKING:
    from .deleter import Deleter
    from .devices import DeviceOptions
    from .executor import Executor, Transaction
    from .logs import StoreLog
    from .merging import Merger

# A logout that follows a session's moves (regenerate(keep_data=True) of a regenerated session) follows
# this many at most.
MOVE_HOPS = 3
# A first write of a sid that keeps colliding with another's (see `replace`) is tried this many times.
UPSERT_ATTEMPTS = 3


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs three times as much, per load
class StoredSession:
    """A live session as stored: its deserialized data and when its row expires."""

    data: SessionData
    expires_at: datetime
    #: the `data` column's text as read, to write the row back only if nobody changed it meanwhile
    text: str | None = None


class SessionRepository(Protocol):
    """What the middleware's lifecycle asks of a store."""

    rows: RowFormat
    devices: DeviceOptions | None

    async def load(self, sid: str, *, now: datetime | None = None) -> StoredSession | None: ...

    async def create(
        self, sid: str, session: Mapping[str, Any], *, expires_at: datetime | None = None
    ) -> None: ...

    async def update(
        self,
        sid: str,
        session: Mapping[str, Any],
        *,
        changed: Iterable[str] | None = None,
        removed: Iterable[str] = (),
        expected: str | None = None,
        expires_at: datetime | None = None,
        merge: bool = True,
    ) -> bool: ...

    async def rename(self, sid: str, new_sid: str) -> bool: ...

    async def destroy(self, sid: str | Sequence[str]) -> None: ...


class SessionRows:
    """`SessionRepository` on one store's table."""

    def __init__(
        self,
        executor: Executor,
        rows: RowFormat,
        deleter: Deleter,
        merger: Merger,
        log: StoreLog,
        *,
        stale: bool,
    ) -> None:
        self._executor = executor
        self.rows = rows
        self._deleter = deleter
        self._merger = merger
        self._log = log
        self._stale = stale

    async def load(self, sid: str, *, now: datetime | None = None) -> StoredSession | None:
        """One indexed SELECT: the live session `sid` with its expiry, or None. An expired row is deleted
        (and disposed); with `stale` its data is returned that one last time."""
        row = await self._executor.load_row(sid)
        if row is None:
            return None
        text, expires_at = row[0], row[1]
        data = self.rows.parse(sid, text)
        if data is None or MOVED_KEY in data:
            return None  # unreadable (logged), or where a regenerated session was: no session
        if not isinstance(expires_at, datetime):
            # An expiresAt no reader can place in time: on SQLite neither a number nor a date (None), on
            # MySQL a zero date such as '0000-00-00' (text from the driver). Kept, as a corrupt row is.
            self._log(
                logging.ERROR, "session %s has an unreadable expiresAt; treating it as absent", redact(sid)
            )
            return None
        if expires_at <= (now or utcnow()):
            await self.destroy(sid)  # disposes it too, when there is a dispose
            return StoredSession(data, expires_at, text) if self._stale else None
        return StoredSession(data, expires_at, text)

    async def create(
        self, sid: str, session: Mapping[str, Any], *, expires_at: datetime | None = None
    ) -> None:
        """Insert a new session expiring at `expires_at` (default: as its cookie says). Never overwrites."""
        expires = self.expiry(sid, session, expires_at)
        await self._executor.write("insert", self.rows.new_row(sid, session, expires))

    async def update(
        self,
        sid: str,
        session: Mapping[str, Any],
        *,
        changed: Iterable[str] | None = None,
        removed: Iterable[str] = (),
        expected: str | None = None,
        expires_at: datetime | None = None,
        merge: bool = True,
    ) -> bool:
        """Write back an existing session. A row deleted meanwhile (logout, prune) is not brought back.

        With `changed` (the keys set since the session was loaded) and `removed` (the keys deleted), and
        the default JSON serializer, no other request's changes are lost. If the row still holds
        `expected` (the text that was loaded), it is rewritten whole in one statement; otherwise another
        request changed it meanwhile, and only these keys and the cookie are applied to what is stored
        now, every other value kept exactly as it is (with `merge=False`, it is left as it is, and False
        returned). Without `changed`, the whole row is replaced. Returns whether the row still existed."""
        expires = self.expiry(sid, session, expires_at)
        params = self.rows.params(sid, session, expires)
        if changed is None or not self.rows.is_json:
            return await self._executor.write("update", params) > 0
        return await self._merger.write_back(params, session, changed, removed, expected, merge=merge)

    async def replace(self, sid: str, session: Mapping[str, Any]) -> None:
        """Create or replace the session `sid` (`store.set`), in one atomic upsert."""
        params = self.rows.new_row(sid, session, self.rows.expiry_from_cookie(sid, session))
        # Two first writes of one sid can race past ON CONFLICT (sid) and collide on the primary key when
        # the id is derived from the sid. The loser retries once the winner's row is visible, and then
        # takes the update path.
        for attempt in range(1, UPSERT_ATTEMPTS + 1):
            try:
                async with self._executor.writers.one(sid):
                    await self._executor.execute(self._executor.sql.upsert, params)
                return
            except StatementError as error:
                if error.fault is Fault.SID_CLASH:
                    raise ValueError(
                        f"session {redact(sid)} would overwrite another session's row, whose sid differs "
                        "only in case (this database's unique index takes them for the same) or whose id is "
                        "the same (db_record_id_function): nothing was written"
                    ) from None
                if error.fault is not Fault.DUPLICATE or attempt == UPSERT_ATTEMPTS:
                    raise

    async def rename(self, sid: str, new_sid: str) -> bool:
        """Move the live session `sid` to `new_sid`, its data untouched, and leave a marker of where it
        went (see rows.MOVED_KEY), in one transaction. Returns False, and creates nothing, when the row
        is already gone: a logout that came first stays a logout."""
        check_sid(new_sid, self.rows.longest_key)
        now = utcnow()
        params = {
            "session_id": sid,
            "new_sid": new_sid,
            "record_id": self.rows.renamed_id(new_sid),
            "now": now,
        }
        marker = self.rows.moved_marker(sid, new_sid, now)
        sql = self._executor.sql

        async def move(transaction: Transaction) -> bool:
            if not await transaction.execute(sql.rename, params):
                return False
            await transaction.execute(sql.insert, marker)
            return True

        async with self._executor.writers.one(sid):
            return await self._executor.transaction(move)

    async def destroy(self, sid: str | Sequence[str]) -> None:
        """Delete one session, or a list of them, disposing each. Missing sessions are ignored. A session
        moved by `regenerate(keep_data=True)` is ended under its new id too."""
        if isinstance(sid, str):
            async with self._executor.writers.one(sid):
                await self._destroy([sid], MOVE_HOPS)
        elif sid:
            await self._destroy(list(sid), MOVE_HOPS)

    async def _destroy(self, sids: list[str], hops: int) -> None:
        sids = list(dict.fromkeys(sids))
        deleter, sql = self._deleter, self._executor.sql
        if deleter.disposes:
            deleted = await deleter.deleted_rows(sql.delete_returning, {"sids": sids})
            for row_sid, text in deleted:
                await deleter.dispose(row_sid, text)
            found = len({row_sid for row_sid, _ in deleted})
        else:
            found = await self._executor.execute(sql.delete, {"sids": sids})
        if found == len(sids):
            return
        # Some sid had no session: it may have moved (regenerate(keep_data=True)), leaving a marker of
        # where it went, which this look finds even when the move committed while the DELETE above
        # waited for the row (the DELETE does not see a row inserted meanwhile).
        markers = [marker_sid(sid) for sid in sids]
        moved = []
        for row_sid, text in await deleter.deleted_rows(sql.delete_returning, {"sids": markers}):
            target = self.rows.moved_to(self.rows.parse(row_sid, text) or {})
            if target is not None:
                moved.append(target)
        if moved and hops:
            await self._destroy(moved, hops - 1)

    def expiry(self, sid: str, session: Mapping[str, Any], expires_at: datetime | None) -> datetime:
        """`expires_at` as the naive UTC the columns hold, or what the session's cookie says."""
        return naive_utc(expires_at) if expires_at else self.rows.expiry_from_cookie(sid, session)
