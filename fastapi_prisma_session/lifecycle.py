"""What happens to a session in one request: load or start it, then save, touch or drop it.

The middleware decides when (the request arrives, the response starts); `SessionLifecycle` decides what,
and is the backend a `Session` asks to save, destroy or reload itself.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from .cookies import (
    ABSOLUTE_KEY,
    COOKIE_KEY,
    CookieAttributes,
    SessionCookie,
    check_choice,
    cookie_from_json,
    iso_utc,
    parse_iso_utc,
)
from .devices import DEVICE_KEY, DeviceRecorder
from .durations import LIFETIME_CEILING, Duration, to_seconds, utcnow
from .exceptions import ConfigurationError, StoreSetupError, StoreUnavailableError, TableMissingError
from .logs import middleware_logger as logger
from .logs import redact
from .session import Session, SessionState, data_of, mark_saved, state_of
from .session_ids import GenId, SessionIds
from .signing import Signer

if TYPE_CHECKING:
    from starlette.types import Scope

    from .repository import SessionRepository

DEFAULT_MAX_AGE = 14 * 24 * 3600
# Without an explicit touch_after, an unchanged session's expiry is rewritten at most once per this
# fraction of its lifetime.
DEFAULT_TOUCH_FRACTION = 0.1
Unset = Literal["keep", "destroy"]
# True: express-session's rolling, a refresh on every response; "throttled": at most once per touch_after.
Rolling: TypeAlias = bool | Literal["throttled"]


# What a response does for its session (SessionLifecycle.at_response).
PASS, HEADERS, COMMIT = 0, 1, 2


class SessionLifecycle:
    """Loads, creates, saves, touches and drops sessions in `store`, for the options of the middleware."""

    def __init__(
        self,
        store: SessionRepository,
        signer: Signer,
        cookie: CookieAttributes,
        *,
        max_age: Duration | None = DEFAULT_MAX_AGE,
        rolling: Rolling = False,
        resave: bool = False,
        save_uninitialized: bool = False,
        unset: Unset = "keep",
        genid: GenId | None = None,
        touch_after: Duration | None = None,
        absolute_timeout: Duration | None = None,
        proxy: bool = False,
    ) -> None:
        check_choice("unset", unset, ("keep", "destroy"))
        check_choice("rolling", rolling, (False, True, "throttled"))
        if rolling is True and touch_after is not None:
            raise ConfigurationError(
                "touch_after does nothing with rolling=True, which refreshes the session on every response "
                "as express-session does: for a refresh at most once per touch_after, pass "
                "rolling='throttled'"
            )
        self.store = store
        self.signer = signer
        self.cookie = cookie
        self.max_age = to_seconds(max_age, "max_age", allow_zero=False, ceiling=LIFETIME_CEILING)
        # Touching less often than a session lives would never touch it.
        self.touch_after = to_seconds(touch_after, "touch_after", ceiling=self.max_age or LIFETIME_CEILING)
        absolute = to_seconds(
            absolute_timeout, "absolute_timeout", allow_zero=False, ceiling=LIFETIME_CEILING
        )
        self.absolute_timeout = None if absolute is None else timedelta(seconds=absolute)
        self.rolling = rolling is not False  # either kind: a refresh re-sends the cookie
        # express-session's rolling: every response refreshes the session its cookie names.
        self.rolls_every = rolling is True
        self.resave = resave
        self.save_uninitialized = save_uninitialized
        #: some session the request never used is saved (uninitialized) or refreshed (rolling=True)
        self.commits_unused = save_uninitialized or self.rolls_every
        self.unset = unset
        self.ids = SessionIds(genid)
        #: what each session records of its device (the store's `devices`), or None
        self.devices = None
        if store.devices is not None:
            lifetime = self.max_age or DEFAULT_MAX_AGE
            every = self.touch_after if self.touch_after is not None else lifetime * DEFAULT_TOUCH_FRACTION
            self.devices = DeviceRecorder(store.devices, proxy=proxy, every=every)
        # Each session keeps the request's scope when a device record or genid needs it.
        self.keeps_scope = self.devices is not None or self.ids.takes_request

    # -- the session's backend -----------------------------------------------------------------------

    def new_id(self, state: SessionState) -> str:
        return self.ids.new(state.request_scope)

    def new_cookie(self) -> SessionCookie:
        return SessionCookie(self.max_age, started=False)

    async def read(self, sid: str, state: SessionState) -> tuple[dict[str, Any], SessionCookie] | None:
        """The data and cookie of the stored session `sid`, for a Session to take over, or None when it
        is missing, expired, past its absolute timeout, or has no readable cookie object (logged: a
        corrupt row, kept). What the commit needs of the row (its expiry and text, the absolute timeout)
        goes to the session's `state`."""
        now = utcnow()  # one reading for the load (its save, maybe much later, reads the clock again)
        stored = await self.store.load(sid, now=now)
        if stored is None:
            logger.debug("no live session %s; starting a new one", redact(sid))
            return None
        data = stored.data
        cookie = cookie_from_json(data.pop(COOKIE_KEY, None))
        if cookie is None:
            logger.warning("session %s has no readable cookie object; starting a new session", redact(sid))
            return None
        state.row_expires, state.loaded_text = stored.expires_at, stored.text
        # The keys most sessions lack are looked for, not popped: each pop of a missing key costs as much.
        if ABSOLUTE_KEY in data:
            ends = data.pop(ABSOLUTE_KEY)
            absolute = parse_iso_utc(ends) if isinstance(ends, str) else None
            if absolute is not None and absolute <= now:
                logger.info("session %s reached its absolute timeout; starting a new one", redact(sid))
                await self.store.destroy(sid)
                return None
            state.absolute_expires = absolute
        if DEVICE_KEY in data:
            # Kept aside whether or not this process records devices: its writes keep the record.
            state.device = data.pop(DEVICE_KEY)
        return data, cookie

    async def destroy(self, sid: str) -> None:
        await self.store.destroy(sid)

    async def rename(self, sid: str, new_sid: str) -> bool:
        return await self.store.rename(sid, new_sid)

    async def save(self, session: Session) -> bool:
        """Write `session` now: an INSERT for a new one, an UPDATE for a loaded one.

        Returns False when a loaded session's row is gone (destroyed or pruned meanwhile): it is not
        brought back.
        """
        now = utcnow()
        state = state_of(session)
        cookie = session.cookie
        if not cookie.fixed:
            cookie.reset(now)
        if self.absolute_timeout is not None and state.absolute_expires is None:
            # New, regenerated, or stored before absolute_timeout was set: it counts from now.
            state.absolute_expires = now + self.absolute_timeout
        if state.absolute_expires is not None:
            cookie.cap(state.absolute_expires)
        data = data_of(session)
        if session.is_new:
            state.device = None  # a new session (or a new id after a log-in) is a new device record
        payload = self._payload(data, state, cookie, now)
        sid = session.id  # a new session's id is made here, on first asking
        expires_at = self._row_expiry(sid, state, payload, cookie.expires, now)
        if session.is_new:
            await self.store.create(sid, payload, expires_at=expires_at)
            logger.debug("created session %s", redact(sid))
            stored = True
        else:
            # With resave, an unchanged session still writes only what it owns (cookie, expiry): the
            # other keys stay as any concurrent request left them.
            changed, removed = state.changes(data)
            if self.devices is not None:
                changed.add(DEVICE_KEY)
            stored = await self.store.update(
                sid,
                payload,
                changed=changed,
                removed=removed,
                expected=state.loaded_text,
                expires_at=expires_at,
            )
        mark_saved(session, stored=stored)
        return stored

    def _row_expiry(
        self,
        sid: str,
        state: SessionState,
        for_ttl: dict[str, Any],
        cookie_expires: datetime | None,
        now: datetime,
    ) -> datetime:
        """When the row ends: after the store's `ttl`, else with its cookie; never past absolute_timeout."""
        expires_at = self.store.rows.expiry(sid, for_ttl, cookie_expires, now)
        absolute = state.absolute_expires
        return expires_at if absolute is None else min(expires_at, absolute)

    def _payload(
        self, data: dict[str, Any], state: SessionState, cookie: SessionCookie, now: datetime
    ) -> dict[str, Any]:
        """What is stored: express-session's cookie object, the data, the absolute timeout and the device
        record if any (the record seen `now`, when devices are recorded)."""
        payload = {COOKIE_KEY: self.cookie.to_json(cookie, state.secure), **data}
        if state.absolute_expires is not None:
            payload[ABSOLUTE_KEY] = iso_utc(state.absolute_expires)
        if self.devices is not None:
            state.device = self.devices.stamp(state.device, state.request_scope, now)
        if state.device is not None:
            payload[DEVICE_KEY] = state.device
        return payload

    # -- a request's session -------------------------------------------------------------------------

    def new(self, secure: bool, scope: Scope | None = None) -> Session:
        return Session(self, None, secure, True, scope)

    async def load(self, sid: str, secure: bool, scope: Scope | None = None) -> Session:
        """The stored session `sid`, loaded now, or a new one when it is missing, expired or unreadable.
        (The middleware makes the others itself, unloaded: `Session(lifecycle, sid, secure, False, scope)`,
        loaded on first use.)"""
        session = Session(self, sid, secure, False, scope)
        await session.load()
        return session

    def at_response(self, session: Session, kept: bool) -> int:
        """What the response must do for the session: PASS (nothing), HEADERS (Vary and Cache-Control
        only: a stored session the request read and left as it was) or COMMIT (`commit` first). The
        commonest responses, a new session nobody touched and a session the route never loaded, cost
        this one call."""
        if not session._loaded:
            # Unused: a new session is saved only uninitialized, a stored one refreshed only by rolling=True.
            # (_Exchange.http answers PASS itself, without this call, for one kept while commits_unused
            # is False: keep the two in step.)
            if not kept or (
                self.commits_unused and (self.save_uninitialized if session.is_new else self.rolls_every)
            ):
                return COMMIT
            return PASS
        state = state_of(session)
        if session.is_new:
            return COMMIT if state.accessed or self.save_uninitialized or not kept else PASS
        if (
            not kept
            or self.resave
            or self.devices is not None
            or state.modified
            or state.refresh
            or state.send_cookie
            or state.dropped
        ):
            return COMMIT
        cookie = session.cookie
        if cookie.changed or self.rolling or cookie.original_max_age is None:
            return COMMIT  # a touch may be due
        return HEADERS if state.accessed else PASS

    async def commit(self, session: Session, *, kept: bool, failed: bool = False) -> str | None:
        """Persist what the request did to the session; returns the Set-Cookie value, if any.

        `kept` is False when the app removed the session from the request. `failed` is True for a 5xx
        response: as in Django, a request that failed saves nothing (what it destroyed or regenerated is
        gone already: those take effect when called).
        """
        state = state_of(session)
        if failed:
            pass
        elif not kept:
            if self.unset == "destroy":
                await session.destroy()
        elif not session.loaded:
            if session.is_new:
                if not self.save_uninitialized:
                    return None  # the route never used the session: nothing to write, not even a touch
                await session.load()  # a request without a cookie, saved uninitialized: no query
                await self.save(session)
            elif not self.rolls_every or not await self._roll_unused(session, state):
                return None
        elif session.is_new:
            if state.modified or (self.save_uninitialized and not state.dropped):
                await self.save(session)
        # Keys changed, touch() was called, or the cookie got a new max_age; or resave.
        elif state.modified or state.refresh or session.cookie.changed or self.resave:
            changed = state.modified
            # As express-session, resave alone rewrites the row but does not re-send the cookie.
            resend = changed or state.refresh or session.cookie.changed or self.rolling or state.send_cookie
            if not await self.save(session) and changed:
                logger.warning(
                    "session %s was ended by another request (a logout?) while this one changed it; "
                    "its changes were dropped",
                    redact(session.id),
                )
            state.send_cookie = state.send_cookie and resend
        elif self.rolling or session.cookie.original_max_age is None:
            await self._touch_if_due(session, state)
        elif self.devices is not None and self.devices.due(state.device, utcnow()):
            await self._record_sighting(session, state)

        secure = state.secure
        if self.cookie.secure is True and not secure:
            return None  # a Secure cookie would be dropped by the browser on http
        if state.send_cookie:
            return self.cookie.set_cookie(
                self.signer.cookie_value(session.id), session.cookie.expires, secure
            )
        if state.dropped:
            return self.cookie.clear_cookie(secure)
        return None

    async def _roll_unused(self, session: Session, state: SessionState) -> bool:
        """rolling=True, for a route that never used the session its cookie names: load it and move its
        expiry, as express-session would. False when that fails (the database unreachable, its row
        locked past the deadline, the table gone): the route's response goes out as it is, without the
        refresh (logged), since the route itself needed no session."""
        try:
            await session.load()
            if not session.is_new:
                await self._touch_if_due(session, state)
        except (StoreUnavailableError, StoreSetupError, TableMissingError) as error:
            logger.warning("%r was not refreshed (rolling): %s", session, error)  # repr: its redacted id
            return False
        return True

    async def _touch_if_due(self, session: Session, state: SessionState) -> None:
        """Refresh an unchanged session's expiry: on every response with rolling=True, else at most once
        per `touch_after`."""
        now = utcnow()
        cookie = SessionCookie(session.cookie.original_max_age, started=False)
        cookie.reset(now)
        if state.absolute_expires is not None:
            cookie.cap(state.absolute_expires)
        patch: dict[str, Any] = {COOKIE_KEY: self.cookie.to_json(cookie, state.secure)}
        # Only a ttl function looks at the user's data: a touch that is not due copies none of it.
        for_ttl = {**patch, **data_of(session)} if self.store.rows.ttl_reads_session else patch
        sid = session.id
        expires_at = self._row_expiry(sid, state, for_ttl, cookie.expires, now)
        row_expires = state.row_expires
        if not self.rolls_every and row_expires is not None:
            touch_after = self.touch_after
            if touch_after is None:
                touch_after = (expires_at - now).total_seconds() * DEFAULT_TOUCH_FRACTION
            if (expires_at - row_expires).total_seconds() < touch_after:
                return
        # One statement while the row is as loaded; else only the cookie is applied to what is stored.
        payload = self._payload(data_of(session), state, cookie, now)
        expected = state.loaded_text
        changed = () if self.devices is None else (DEVICE_KEY,)
        if await self.store.update(sid, payload, changed=changed, expected=expected, expires_at=expires_at):
            session.cookie.moved_to(cookie.expires)  # the stored expiry moved: the cookie's moves with it
            state.send_cookie = self.rolling

    async def _record_sighting(self, session: Session, state: SessionState) -> None:
        """Write an unchanged session's device record, seen now, leaving its cookie and expiry as they
        are: a session whose expiry does not roll is written at most once per `touch_after` for it. Only
        over the row as loaded: a request that wrote it meanwhile recorded its sighting."""
        expires_at, expected = state.row_expires, state.loaded_text
        if expires_at is None or expected is None:
            return
        payload = self._payload(data_of(session), state, session.cookie, utcnow())
        await self.store.update(
            session.id, payload, changed=(), expected=expected, expires_at=expires_at, merge=False
        )

    def cookie_value(self, sid: str) -> str:
        """The signed, URL-encoded cookie value that names session `sid`."""
        return self.signer.cookie_value(sid)
