"""OpenTelemetry for one store: a span for each thing it does to sessions, and metrics for its pool's
waits, the requests it could not serve, the statements each request costs and what pruning removes.

Off unless asked for, and then nothing imports this module or OpenTelemetry. `PrismaSessionStore(url,
telemetry=True)` reports to the global providers, `telemetry=Telemetry(...)` to the ones it names. On,
it hooks into that one store as it is built, so that a store without it runs exactly as before:

- the store's methods that reach its table are replaced, on that store alone, by traced ones (a span
  and `db.client.operation.duration` each);
- the pool is handed `StoreTelemetry.waited`, told how long each call waited for its connection;
- a query logger counts each statement into the record of the request being served (a context
  variable), and the middleware serves each request within such a record (`request`), which
  `responses.refuse` also tells of the 503 (or 500) it answers.

Attributes follow OpenTelemetry's database semantic conventions; the package's own are under
`prisma_session.`. No session id, no session data and no matched value is ever an attribute.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from importlib.metadata import version
from typing import TYPE_CHECKING, Any, Protocol

from .devices import DEVICE_KEY
from .exceptions import ConfigurationError
from .responses import TELEMETRY_KEY

try:
    from opentelemetry import metrics, trace
    from opentelemetry.trace import SpanKind, StatusCode
except ImportError:  # pragma: no cover - tests/test_telemetry.py runs it in a process without it
    raise ConfigurationError(
        "telemetry needs OpenTelemetry's API: pip install 'fastapi-prisma-session[telemetry]'"
    ) from None

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider
    from starlette.types import ASGIApp, Receive, Scope, Send

    from .dburl import DatabaseURL
    from .executor import Executor, LoggedQuery

SCOPE = "fastapi_prisma_session"
# The store's methods that are traced, and the operation each is (`db.operation.name`). An `update`
# that writes no key of the app's (only the cookie, the expiry and the device record: a rolling
# session's refresh, `resave`, a sighting) is a touch.
TRACED = {
    "load": "load",
    "create": "save",
    "update": "save",
    "set": "save",
    "touch": "touch",
    "rename": "rename",
    "destroy": "destroy",
    "destroy_all": "destroy_all",
    "matching": "matching",
    "prune": "prune",
}
# The histograms: the unit, description and bucket boundaries of each.
HISTOGRAMS: dict[str, tuple[str, str, tuple[float, ...]]] = {
    "db.client.operation.duration": (
        "s",
        "How long each operation of the session store took, its statements and waits included.",
        (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    ),
    "db.client.connection.wait_time": (
        "s",
        "How long each statement (or transaction) waited for a connection of the store's pool.",
        (0.0, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0),
    ),
    "prisma_session.request.statements": (
        "{statement}",
        "Statements the session store sent for each request the middleware served.",
        (0, 1, 2, 3, 4, 5, 6, 8, 10, 15, 20, 50),
    ),
    "prisma_session.prune.rate": (
        "{row}/s",
        "Rows deleted per second by each prune() that deleted any.",
        (100, 1_000, 10_000, 100_000, 1_000_000),
    ),
}

Attributes = dict[str, Any]


class Instrumented(Protocol):
    """What telemetry uses of a store (`PrismaSessionStore`), besides the methods it traces."""

    executor: Executor
    table_name: str

    @property
    def last_prune_skipped(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class Telemetry:
    """Where a store's spans and metrics go: `PrismaSessionStore(url, telemetry=Telemetry(...))`.

    Args:
        tracer_provider: the spans' provider. Default: the global one (`trace.set_tracer_provider`,
            or what `opentelemetry-instrument` sets up).
        meter_provider: the metrics' provider. Default: the global one.
    """

    tracer_provider: TracerProvider | None = None
    meter_provider: MeterProvider | None = None


class RequestRecord:
    """One request served by the middleware while telemetry is on: its statements, counted as sent."""

    __slots__ = ("statements", "telemetry")

    def __init__(self, telemetry: StoreTelemetry) -> None:
        self.telemetry = telemetry
        self.statements = 0

    def refused(self, error: Exception, status: int | None) -> None:
        """The middleware answered `status` (None: closed a websocket with 1011) instead of the app."""
        self.telemetry.refused(error, status)


# The record of the request being served, for the query logger: statements are sent in its task.
CURRENT: ContextVar[RequestRecord | None] = ContextVar("fastapi_prisma_session_request", default=None)


def instrument(store: Instrumented, telemetry: object, url: DatabaseURL) -> StoreTelemetry:
    """Turn on `store`'s telemetry (`telemetry`: True, or a `Telemetry`); called as the store is built."""
    if telemetry is True:
        telemetry = Telemetry()
    if not isinstance(telemetry, Telemetry):
        raise ConfigurationError(
            f"telemetry must be True, False or a Telemetry(...), not {type(telemetry).__name__}"
        )
    return StoreTelemetry(store, telemetry, url)


class StoreTelemetry:
    """One store's tracer and instruments, and the hooks that feed them (`store.telemetry`)."""

    def __init__(self, store: Instrumented, telemetry: Telemetry, url: DatabaseURL) -> None:
        package = version("fastapi-prisma-session")
        self.tracer = trace.get_tracer(SCOPE, package, tracer_provider=telemetry.tracer_provider)
        meter = metrics.get_meter(SCOPE, package, meter_provider=telemetry.meter_provider)
        system = store.executor.sql.database
        table = store.table_name
        #: what every span and measurement of the store carries: the database, never its credentials
        self.attributes: Attributes = {"db.system.name": system, "db.collection.name": table}
        if system != "sqlite" and url.database:
            self.attributes["db.namespace"] = url.database
        port = url.port or store.executor.driver.default_port  # the one connected to, named or not
        if url.host:
            self.attributes["server.address"] = url.host
            if port:
                self.attributes["server.port"] = port
        where = f"{url.host}:{port or ''}/{url.database}" if url.host else f"{system}:{url.database}"
        self._pool = {"db.system.name": system, "db.client.connection.pool.name": where}
        self._operations = {
            name: {**self.attributes, "db.operation.name": name} for name in set(TRACED.values())
        }
        self._spans = {name: f"{name} {table}" for name in self._operations}
        histograms = {
            name: meter.create_histogram(name, unit, about, explicit_bucket_boundaries_advisory=buckets)
            for name, (unit, about, buckets) in HISTOGRAMS.items()
        }
        self._duration = histograms["db.client.operation.duration"]
        self._wait_time = histograms["db.client.connection.wait_time"]
        self._statements = histograms["prisma_session.request.statements"]
        self._prune_rate = histograms["prisma_session.prune.rate"]
        self._refused = meter.create_counter(
            "prisma_session.requests.refused",
            "{request}",
            "Requests the session middleware answered itself: 503 (the database is unreachable) or 500.",
        )
        self._pruned = meter.create_counter(
            "prisma_session.prune.rows", "{row}", "Expired sessions deleted by prune()."
        )
        self._store = store
        for name in TRACED:
            setattr(store, name, self._traced(name, getattr(store, name)))
        store.executor.pool.waited = self.waited
        store.executor.add_query_logger(self.counted)

    # -- the hooks ---------------------------------------------------------------------------------------

    async def request(self, app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve `scope` through `app` (the middleware, again) within a record of its statements."""
        record = scope[TELEMETRY_KEY] = RequestRecord(self)
        token = CURRENT.set(record)
        try:
            await app(scope, receive, send)
        finally:
            CURRENT.reset(token)
            self._statements.record(record.statements, self.attributes)

    def counted(self, logged: LoggedQuery) -> None:
        """A statement was sent: one more for the request it was sent for, if any."""
        record = CURRENT.get()
        if record is not None:
            record.statements += 1

    def waited(self, seconds: float) -> None:
        self._wait_time.record(seconds, self._pool)

    def refused(self, error: Exception, status: int | None) -> None:
        attributes: Attributes = {**self.attributes, "error.type": error_type(error)}
        if status is not None:
            attributes["http.response.status_code"] = status
        self._refused.add(1, attributes)

    # -- spans -------------------------------------------------------------------------------------------

    def _traced(self, method: str, call: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        """`call`, the store's bound method `method`, in a span and a measurement of its operation."""
        operation = TRACED[method]
        tracer, duration = self.tracer, self._duration

        async def traced(*args: Any, **kwargs: Any) -> Any:
            name = "touch" if method == "update" and _writes_no_key(kwargs) else operation
            attributes = self._operations[name]
            started = time.perf_counter()
            with tracer.start_as_current_span(
                self._spans[name],
                kind=SpanKind.CLIENT,
                attributes=attributes,
                record_exception=False,  # an error's message may quote a session's data
                set_status_on_exception=False,
            ) as span:
                try:
                    result = await call(*args, **kwargs)
                except BaseException as error:
                    kind = error_type(error)
                    span.set_attribute("error.type", kind)
                    span.set_status(StatusCode.ERROR, kind)
                    duration.record(time.perf_counter() - started, {**attributes, "error.type": kind})
                    raise
                elapsed = time.perf_counter() - started
                span.set_attributes(self._outcome(name, result, kwargs, elapsed))
                duration.record(elapsed, attributes)
                return result

        return traced

    def _outcome(self, name: str, result: Any, kwargs: Mapping[str, Any], elapsed: float) -> Attributes:
        """What a span says of how its operation went: rows, never their ids or data."""
        if name == "load":
            return {"db.response.returned_rows": int(result is not None)}
        if name == "matching":
            return {"db.response.returned_rows": len(result), "prisma_session.match.keys": sorted(kwargs)}
        if name == "destroy_all":
            return {"prisma_session.rows_deleted": result, "prisma_session.match.keys": sorted(kwargs)}
        if name == "prune":
            skipped = self._store.last_prune_skipped
            self._pruned.add(result, self.attributes)
            if result:
                self._prune_rate.record(result / elapsed, self.attributes)
            return {"prisma_session.rows_deleted": result, "prisma_session.prune.skipped": skipped}
        if isinstance(result, bool):  # update, touch, rename: False when the row was gone
            return {"prisma_session.written": result}
        return {}


def _writes_no_key(kwargs: Mapping[str, Any]) -> bool:
    """Whether an `update` writes none of the app's keys (the lifecycle's touch): `changed` empty, or
    only the device record, which the lifecycle names on every write while `devices` is on."""
    changed = kwargs.get("changed")
    return (
        isinstance(changed, (set, frozenset, list, tuple))
        and all(key == DEVICE_KEY for key in changed)
        and not kwargs.get("removed")
    )


def error_type(error: BaseException) -> str:
    """`error.type`: the exception's class, by its full name outside the builtins."""
    kind = type(error)
    return kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
