"""`StoreOptions`: what `PrismaSessionStore(...)` is told besides where the database is, checked once."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from .devices import DeviceOptions, device_options
from .dialects.common import check_user_key
from .durations import PERIOD_CEILING, Duration, to_seconds
from .exceptions import ConfigurationError
from .logs import LevelName
from .rows import DisposeFunction, TTLFunction
from .serializers import JSONSerializer, resolve_serializer
from .sqltext import DEFAULT_TABLE_NAME
from .urls import DEADLINE

if TYPE_CHECKING:
    from .telemetry import Telemetry


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreOptions:
    """What `PrismaSessionStore(engine_or_url, **options)` is told: invalid options raise
    ConfigurationError here, with what to do instead.

    Args:
        check_period: seconds between automatic prunes of expired rows; None or 0 turns pruning off.
        ttl: row lifetime in seconds, or `callable(options, session, sid) -> seconds`. Default: the
            session cookie's remaining max age, else one day.

            Both count seconds where prisma-session-store counts milliseconds: a number that is absurd
            as seconds and a plain figure in milliseconds (`check_period=120000`, `ttl=86_400_000`)
            raises ConfigurationError with the value it probably meant; a `datetime.timedelta` is
            taken as it is.
        db_record_id_is_session_id: use the session id as the row's `id`.
        db_record_id_function: `callable(sid) -> str` that makes the row's `id`. Default: a new cuid2.
        serializer: an object with `dumps`/`loads` (or `stringify`/`parse`). Default: compact JSON, as
            express-session writes it.
        dispose: `callable(sid, session)`, sync or async, called for every session that is dropped:
            destroyed, expired on `get`, pruned, cleared, and overwritten by `set` unless
            `no_dispose_on_set`.
        stale: `get` of an expired session returns it one last time (and deletes it) instead of None.
        no_dispose_on_set: do not call `dispose` when `set` overwrites a session.
        logger: a `logging.Logger` (default: the `fastapi_prisma_session` logger), or False for silence.
        logger_level: the level, or list of levels, that the store emits: "debug", "info" (or "log"),
            "warn", "error", or `logging` constants. Default: errors only.
        table_name: the session table's name.
        expires_column: the table's expiry column: "expiresAt" (prisma-session-store 3.x's model) or
            "expires" (2.x's, the seed README's). Default None: the store looks at the table the first
            time it reaches it and takes whichever of the two it has.
        prune_batch_size: rows deleted per statement by `prune()`. Default: each batch sized to take
            about 50 ms, between 50 and 20,000 rows.
        prune_pause: seconds `prune()` rests between batches, to leave the database to requests.
            Default: a rest that grows when batches slow down (the database is busy) and shrinks when it
            is idle again.
        max_data_size: the largest serialized session, in bytes, that a write accepts; a larger one
            raises `SessionTooLargeError` and the stored session stays as it was. Default: no limit
            (on MySQL, 16 MiB less 64 KiB: what MEDIUMTEXT and MariaDB's default max_allowed_packet take).
        request_connections: the most connections the store opens (default 10, or the URL's
            `connection_limit`); they are opened as concurrent calls need them and closed after a minute
            idle. Every statement the store sends runs on them; the engine serves only the schema.
        operation_timeout: seconds within which every operation ends (waiting for a connection, opening
            one, looking at the table the first time, its statements), in `StoreUnavailableError` (a 503)
            if need be; the server is told to give up on a statement, or a row lock, a little earlier.
            `prune()` gives each of its batches this long.
        pgbouncer: a transaction pooler (PgBouncer, Supabase's or Neon's pooler) is between the store and
            PostgreSQL: every statement is one the pooler can hand to any server connection, and nothing
            is SET on the server connections it shares. Default: what the URL says (Prisma's
            `?pgbouncer=true`); with an engine of your own, build it with
            `connect_args=pooler_connect_args()` too.
        user_key: the top-level data key that names a session's user (such as "user_id"), when the
            database has the index `migrate --user-key` adds for it: `destroy_all` and `matching` on that
            key then look it up in the index instead of reading every row. Default: None (no index).
        encryption_keys: keys (32 bytes, or their urlsafe base64 text), newest first, to encrypt the
            session data at rest with AES-256-GCM; the cookie and the `user_key` field stay readable.
            Every write encrypts with the first; the others still read rows written with them. Rows
            written before still load. Needs the `encryption` extra (the cryptography package).
        telemetry: True for OpenTelemetry spans and metrics through the global providers, or a
            `telemetry.Telemetry` naming its own (docs/telemetry.md). Needs the `telemetry` extra.
        devices: record in each session when it was created and last seen (at most once per the
            middleware's `touch_after`), the client's IP address and its user agent, for `list_devices`
            and revoking a user's other sessions (docs/devices.md): True, or `DeviceOptions(ip=False,
            user_agent=False)` to leave either out. Needs `user_key`. Default: False.
    """

    check_period: Duration | None = None
    ttl: Duration | TTLFunction | None = None
    db_record_id_is_session_id: bool = False
    db_record_id_function: Callable[[str], str] | None = None
    serializer: object | None = None
    dispose: DisposeFunction | None = None
    stale: bool = False
    no_dispose_on_set: bool = False
    logger: logging.Logger | bool | None = None
    logger_level: LevelName | Sequence[LevelName] = "error"
    table_name: str = DEFAULT_TABLE_NAME
    expires_column: str | None = None
    prune_batch_size: int | None = None
    prune_pause: Duration | None = None
    max_data_size: int | None = None
    request_connections: int | None = None
    operation_timeout: Duration = DEADLINE
    pgbouncer: bool | None = None
    user_key: str | None = None
    encryption_keys: Sequence[bytes | str] | None = field(default=None, repr=False)
    telemetry: bool | Telemetry = False
    devices: bool | DeviceOptions = False
    #: `devices` as what each session records, or None when it is off
    device_options: DeviceOptions | None = field(init=False)
    #: `operation_timeout`, `check_period` and `prune_pause` in seconds (None: off, or learned).
    deadline: float = field(init=False)
    period: float | None = field(init=False)
    pause: float | None = field(init=False)

    def __post_init__(self) -> None:
        if self.dispose is not None and not callable(self.dispose):
            raise ConfigurationError("dispose must be a callable taking (sid, session)")
        if self.user_key is not None:
            check_user_key(self.user_key)
            if not isinstance(resolve_serializer(self.serializer), JSONSerializer):
                raise ConfigurationError("user_key needs the JSON serializer: the index reads data as JSON")
        object.__setattr__(self, "device_options", device_options(self.devices, self.user_key))
        deadline = to_seconds(self.operation_timeout, "operation_timeout", allow_zero=False) or DEADLINE
        object.__setattr__(self, "deadline", deadline)
        period = to_seconds(self.check_period, "check_period", ceiling=PERIOD_CEILING)
        object.__setattr__(self, "period", period or None)
        pause = None if self.prune_pause is None else to_seconds(self.prune_pause, "prune_pause") or 0.0
        object.__setattr__(self, "pause", pause)

    def as_mapping(self) -> Mapping[str, Any]:
        """The options as given, by name (what a `ttl` function receives, and what builds the same
        store again: `PrismaSessionStore(url, **store.options)`)."""
        return MappingProxyType({f.name: getattr(self, f.name) for f in fields(self) if f.init})
