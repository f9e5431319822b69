"""How a session becomes a row and back: the `data` text, the row's `id`, and when the row expires.

Nothing here touches the database; the store runs the statements.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cuid2 import create_id

from .cookies import COOKIE_KEY, MOVED_KEY, cookie_expiry
from .durations import LIFETIME_CEILING, ONE_DAY, Duration, to_seconds, utcnow
from .encryption import ENVELOPE_KEY, Encryption, UnreadableEnvelope
from .exceptions import ConfigurationError, SessionDataError, SessionTooLargeError
from .logs import StoreLog, redact
from .serializers import JSONSerializer, resolve_serializer
from .signing import is_valid_session_id

SessionData = dict[str, Any]
# The marker `regenerate(keep_data=True)` leaves under the old id (cookies.MOVED_KEY) is written expired
# (nothing reads it as a session; the next prune deletes it), with express-session's empty cookie.
MOVED_COOKIE = {"originalMaxAge": None, "expires": None, "httpOnly": True, "path": "/"}
MARKER_PREFIX = "regenerated:"
TTLFunction = Callable[[Mapping[str, Any], Mapping[str, Any], str], float | timedelta]
DisposeFunction = Callable[[str, SessionData], Awaitable[None] | None]


@dataclass(frozen=True, slots=True)
class DataLimit:
    """The most bytes of data one statement of a database's driver carries, counted as it sends them."""

    most: int
    #: Characters the driver sends with a backslash before them (the data is a string literal in the
    #: statement, as in MySQL's text protocol): each takes two bytes.
    escaped: str = ""

    def size(self, payload: str) -> int:
        """The bytes `payload` takes in a statement."""
        size = len(payload.encode())
        for char in self.escaped:
            size += payload.count(char)
        return size


class RowFormat:
    """The store's options about rows (`ttl`, `serializer`, `encryption_keys`, `max_data_size`, the record
    id), checked once.

    `options` is the store's `options` mapping, which a `ttl` function also receives.
    """

    def __init__(self, options: Mapping[str, Any], log: StoreLog) -> None:
        ttl: Duration | TTLFunction | None = options["ttl"]
        record_id_function: Callable[[str], str] | None = options["db_record_id_function"]
        max_data_size: int | None = options["max_data_size"]
        if callable(ttl) and not isinstance(ttl, (int, float, timedelta)):
            self._ttl_function: TTLFunction | None = ttl
            self._ttl: float | None = None
        else:
            self._ttl_function = None
            self._ttl = to_seconds(ttl, "ttl", allow_zero=False, ceiling=LIFETIME_CEILING)
        if record_id_function is not None and not callable(record_id_function):
            raise ConfigurationError("db_record_id_function must be a callable taking the session id")
        if max_data_size is not None and (not isinstance(max_data_size, int) or max_data_size < 1):
            raise ConfigurationError("max_data_size must be a positive number of bytes, or None for no limit")
        self._options = options
        self._record_id_is_sid = bool(options["db_record_id_is_session_id"])
        self._record_id_function = record_id_function
        self.serializer = resolve_serializer(options["serializer"])
        #: Only JSON text can be merged in SQL: touch() and a write that lost a race patch keys in place.
        self.is_json = isinstance(self.serializer, JSONSerializer)
        keys = options.get("encryption_keys")
        if keys is not None and not self.is_json:
            raise ConfigurationError("encryption_keys needs the JSON serializer: the cookie stays JSON")
        user_key = options.get("user_key")
        #: Seals the data of every write, when the store has `encryption_keys`.
        self.encryption = None if keys is None else Encryption(keys, [user_key] if user_key else [])
        #: Whether SQL can match the data's keys (not when all but the cookie and user_key are sealed).
        self.matches_in_sql = self.is_json and self.encryption is None
        self._max_data_size = max_data_size
        #: The most characters a sid or row id may have on the store's database (its dialect sets it).
        self.longest_key: int | None = None
        #: The most bytes of data a statement may carry on the store's database (its dialect sets it).
        self.longest_data: DataLimit | None = None
        self._log = log

    @property
    def ttl_reads_session(self) -> bool:
        """The expiry depends on the session's data (a `ttl` function), not only on its cookie."""
        return self._ttl_function is not None

    def expiry(
        self, sid: str, session: Mapping[str, Any], cookie_expires: datetime | None, now: datetime
    ) -> datetime:
        """When the row of `session` written `now` expires: after `ttl`, else when its cookie does, else
        in one day."""
        if self._ttl is not None:
            return now + timedelta(seconds=self._ttl)
        if self._ttl_function is not None:
            given = self._ttl_function(self._options, session, sid)
            value = to_seconds(given, "the ttl function's result", ceiling=LIFETIME_CEILING)
            return now + timedelta(seconds=value if value is not None else ONE_DAY)
        return cookie_expires if cookie_expires is not None else now + timedelta(seconds=ONE_DAY)

    def expiry_from_cookie(self, sid: str, session: Mapping[str, Any]) -> datetime:
        """`expiry` for an express-style session, whose `cookie` object says when it ends."""
        now = utcnow()
        return self.expiry(sid, session, cookie_expiry(session.get(COOKIE_KEY), now), now)

    def params(self, sid: str, session: Mapping[str, Any], expires: datetime) -> dict[str, Any]:
        """The statement parameters of a row: `session_id`, `payload` and `expires`.

        Raises ValueError for an unusable sid, SessionDataError for data the serializer refuses (NaN, a
        set) and SessionTooLargeError over `max_data_size` or what the database takes in a statement
        (`longest_data`), before any statement runs."""
        check_sid(sid, self.longest_key)
        payload = self.payload(sid, session)
        if self._max_data_size is not None:
            size = len(payload.encode())
            if size > self._max_data_size:
                raise SessionTooLargeError(redact(sid), size, self._max_data_size)
        database = self.longest_data
        if database is not None:
            # As sent, escapes and all: a statement over the server's limit would cost the connection.
            size = database.size(payload)
            if size > database.most:
                raise SessionTooLargeError(redact(sid), size, database.most, as_sent=True)
        return {"session_id": sid, "payload": payload, "expires": expires}

    def payload(self, sid: str, session: Mapping[str, Any]) -> str:
        """The `data` text of `session`, sealed when the store encrypts. Raises SessionDataError."""
        for key in (MOVED_KEY, ENVELOPE_KEY):
            if key in session:
                raise SessionDataError(redact(sid), ValueError(f"the key {key!r} is the store's own"))
        # A plain dict (every session the middleware saves) is serialized as it is, not copied.
        data = session if type(session) is dict else dict(session)
        try:
            if self.encryption is not None:
                return self.serializer.dumps(self.encryption.seal(data, self.serializer.dumps))
            return self.serializer.dumps(data)
        except (TypeError, ValueError) as error:
            raise SessionDataError(redact(sid), error) from error

    def new_row(self, sid: str, session: Mapping[str, Any], expires: datetime) -> dict[str, Any]:
        """`params` plus the `record_id` of a row about to be inserted."""
        params = self.params(sid, session, expires)  # the sid is checked first
        record_id = self._record_id(sid)
        if self.longest_key is not None and len(record_id) > self.longest_key:
            raise ValueError(
                f"a row id on this database holds at most {self.longest_key} characters, got "
                f"{len(record_id)} from db_record_id_function"
            )
        return {**params, "record_id": record_id}

    def moved_marker(self, sid: str, new_sid: str, now: datetime) -> dict[str, Any]:
        """The row `regenerate(keep_data=True)` leaves when it moves session `sid` to `new_sid` (see
        MOVED_KEY): statement parameters, as `new_row`'s. Its sid is `marker_sid(sid)`, a key of its own:
        where the session's row was, the unique index keeps the old key until the move commits, and on
        MySQL a key inserted there must lock the next one, which may be another user's locked row."""
        payload = self.serializer.dumps({COOKIE_KEY: MOVED_COOKIE, MOVED_KEY: new_sid})
        marker = marker_sid(sid)
        return {
            "session_id": marker,
            "payload": payload,
            "expires": now,
            "record_id": self._record_id(marker),
        }

    @staticmethod
    def moved_to(data: SessionData) -> str | None:
        """Where the session a marker (see MOVED_KEY) names went, or None for anything but a marker as
        `moved_marker` writes it."""
        target = data.get(MOVED_KEY)
        if len(data) != 2 or data.get(COOKIE_KEY) != MOVED_COOKIE or not isinstance(target, str):
            return None
        return target

    def renamed_id(self, new_sid: str) -> str | None:
        """The row id after a move to `new_sid`, when it derives from the sid (`db_record_id_is_session_id`
        or `db_record_id_function`); None when it is a random cuid2, which stays."""
        if self._record_id_is_sid or self._record_id_function is not None:
            return self._record_id(new_sid)
        return None

    def _record_id(self, sid: str) -> str:
        if self._record_id_is_sid:
            return sid
        if self._record_id_function is not None:
            return self._record_id_function(sid)
        return create_id()

    def parse(self, sid: str, text: str) -> SessionData | None:
        """The session in a row's `data`, or None (logged) when it cannot be read."""
        if text == "":
            return {}
        try:
            data = self.serializer.loads(text)
        except Exception:
            self._log(logging.ERROR, "session %s has unreadable data; treating it as absent", redact(sid))
            return None
        if not isinstance(data, dict):
            self._log(logging.ERROR, "session %s does not hold an object; treating it as absent", redact(sid))
            return None
        if ENVELOPE_KEY not in data:
            return data  # a plain row: written before encryption was on, or a marker
        if self.encryption is None:
            self._log(logging.WARNING, "session %s is encrypted and the store has no keys", redact(sid))
            return None
        try:
            return self.encryption.open(data)
        except UnreadableEnvelope as error:
            self._log(logging.WARNING, "session %s cannot be decrypted: %s", redact(sid), error)
            return None


def marker_sid(sid: str) -> str:
    """The sid of the marker a move of session `sid` leaves (`RowFormat.moved_marker`): no cookie names
    it (a genid's sid never has the prefix's colon), and it fits the shortest key column (MySQL's 191)."""
    return MARKER_PREFIX + hashlib.sha256(sid.encode()).hexdigest()[:48]


def check_sid(sid: str, longest: int | None = None) -> None:
    """Refuse, before any statement runs, a session id that could not be stored or sent in a cookie;
    `longest` is the most characters the table's key columns hold (191 on MySQL), if fewer than 255."""
    if not is_valid_session_id(sid):
        raise ValueError(f"a session id must be 1 to 255 visible ASCII characters, got {sid!r:.80}")
    if longest is not None and len(sid) > longest:
        raise ValueError(
            f"a session id on this database holds at most {longest} characters, got {len(sid)}: {sid!r:.80}"
        )
    if sid.startswith(MARKER_PREFIX):
        raise ValueError(f"session ids starting with {MARKER_PREFIX!r} are the store's own: got {sid!r:.80}")
