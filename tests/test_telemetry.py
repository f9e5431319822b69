"""The `telemetry` extra: spans and metrics, read from the OpenTelemetry SDK's in-memory exporter and
reader, for requests sent through the app over HTTP on SQLite, PostgreSQL and MariaDB; and a serving
process that does not ask for it imports nothing of OpenTelemetry, and serves without it installed."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from fastapi_prisma_session import ConfigurationError, PrismaSessionStore, SessionMiddleware
from fastapi_prisma_session.durations import utcnow
from fastapi_prisma_session.signing import Signer
from fastapi_prisma_session.telemetry import Telemetry
from tests.helpers import (
    SECRET,
    client_for,
    free_port,
    insert_row,
    make_app,
    wait_until,
    websocket_that_loads,
)

UNAVAILABLE = "fastapi_prisma_session.exceptions.StoreUnavailableError"


@pytest.fixture
def spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.fixture
def telemetry(spans: InMemorySpanExporter, reader: InMemoryMetricReader) -> Iterator[Telemetry]:
    tracer_provider = TracerProvider(shutdown_on_exit=False)
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    meter_provider = MeterProvider([reader], shutdown_on_exit=False)
    yield Telemetry(tracer_provider, meter_provider)
    tracer_provider.shutdown()
    meter_provider.shutdown()


@pytest.fixture
def store_options(telemetry: Telemetry) -> dict[str, Any]:
    """Every store of this module's `store` and `make_store` reports to the test's exporter and reader."""
    return {"telemetry": telemetry}


def points(reader: InMemoryMetricReader, name: str) -> list[Any]:
    """The data points of the metric `name`, as the reader has them now."""
    data = reader.get_metrics_data()
    found: list[Any] = []
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    found.extend(metric.data.data_points)
    return found


def one_point(reader: InMemoryMetricReader, name: str) -> Any:
    found = points(reader, name)
    assert len(found) == 1, found
    return found[0]


def app_with_log_out_everywhere(store: PrismaSessionStore) -> FastAPI:
    app = make_app(store, secure=False)

    @app.post("/log-out-everywhere")
    async def log_out_everywhere(value: str) -> dict[str, int]:
        return {"ended": await store.destroy_all(value=value)}

    return app


def system_of(store: PrismaSessionStore) -> str:
    """OpenTelemetry's name for the store's database (MariaDB's URLs are mysql:// ones)."""
    return store.engine.url.get_backend_name()


async def test_each_operation_is_a_client_span_named_as_the_conventions_say(
    store: PrismaSessionStore, engine: AsyncEngine, spans: InMemorySpanExporter
) -> None:
    sids: list[str] = []
    async with client_for(app_with_log_out_everywhere(store)) as client:
        sids.append((await client.post("/write", params={"value": "a"})).json()["id"])  # save (insert)
        await client.get("/read")  # load
        await client.post("/touch")  # load, touch: only the cookie and the expiry written
        await client.post("/write", params={"value": "b"})  # load, save (update)
        await client.delete("/session")  # load, destroy
        sids.append((await client.post("/write", params={"value": "b"})).json()["id"])  # save (insert)
        assert (await client.post("/log-out-everywhere", params={"value": "b"})).json() == {"ended": 1}
    await insert_row(engine, "expired", {"cookie": {}}, utcnow() - timedelta(minutes=1))
    assert await store.prune() == 1

    finished: list[ReadableSpan] = list(spans.get_finished_spans())
    assert [span.name for span in finished] == [
        "save Session",
        "load Session",
        "load Session",
        "touch Session",
        "load Session",
        "save Session",
        "load Session",
        "destroy Session",
        "save Session",
        "destroy_all Session",
        "prune Session",
    ]
    url = make_url(str(store.engine.url))
    for span in finished:
        attributes = dict(span.attributes or {})
        assert span.kind is SpanKind.CLIENT
        assert span.status.status_code is StatusCode.UNSET
        assert attributes["db.system.name"] == system_of(store)
        assert attributes["db.collection.name"] == "Session"
        assert span.name == f"{attributes['db.operation.name']} Session"
        if url.host:
            assert attributes["server.address"] == url.host
            assert attributes["server.port"] == url.port
            assert attributes["db.namespace"] == url.database
        # A session id is a secret, and its data the user's: neither is ever an attribute.
        for sid in sids:
            assert not any(sid in str(value) for value in attributes.values())
        assert not any(str(value) in ("a", "b") for value in attributes.values())
    by_name = {span.name: dict(span.attributes or {}) for span in finished}
    assert by_name["load Session"]["db.response.returned_rows"] == 1
    assert by_name["touch Session"]["prisma_session.written"] is True
    assert by_name["destroy_all Session"]["prisma_session.rows_deleted"] == 1
    assert by_name["destroy_all Session"]["prisma_session.match.keys"] == ("value",)
    assert by_name["prune Session"]["prisma_session.rows_deleted"] == 1
    assert by_name["prune Session"]["prisma_session.prune.skipped"] is False


@pytest.mark.parametrize("options", [{"rolling": True}, {"resave": True}], ids=str)
async def test_with_devices_a_write_of_only_the_device_record_is_a_touch(
    make_store: Callable[..., PrismaSessionStore], spans: InMemorySpanExporter, options: dict[str, Any]
) -> None:
    """With `devices`, every write of a loaded session names the device record as changed: one that
    changes nothing else (a rolling refresh, resave) is still a touch."""
    store = make_store(user_key="user", devices=True)
    await store.create_table()
    async with client_for(make_app(store, secure=False, **options)) as client:
        await client.post("/write", params={"value": "a"})  # save (insert)
        await client.get("/read")  # load, touch: the device record, the cookie and the expiry
        await client.post("/write", params={"value": "b"})  # load, save: a key of the app's
    assert [span.name for span in spans.get_finished_spans()] == [
        "save Session",
        "load Session",
        "touch Session",
        "load Session",
        "save Session",
    ]


@pytest.mark.parametrize(
    ("url", "port"),
    [
        ("postgresql://app@db.example/app", 5432),
        ("postgresql://app@db.example:6432/app", 6432),
        ("mysql://app@db.example/app", 3306),
        ("mysql://app@db.example:3307/app", 3307),
    ],
)
def test_server_port_is_the_urls_or_the_databases_default(telemetry: Telemetry, url: str, port: int) -> None:
    store = PrismaSessionStore(url, telemetry=telemetry)  # built, never connected
    assert store.telemetry is not None
    assert store.telemetry.attributes["server.address"] == "db.example"
    assert store.telemetry.attributes["server.port"] == port


async def test_each_requests_statements_are_recorded(
    store: PrismaSessionStore, reader: InMemoryMetricReader
) -> None:
    requests = [
        ("GET", "/noop"),  # never uses its session: no statement
        ("POST", "/write"),  # a new session: its INSERT
        ("GET", "/read"),  # its SELECT
        ("POST", "/write"),  # SELECT, then the write back
        ("GET", "/noop"),
    ]
    sent = []
    async with client_for(make_app(store, secure=False)) as client:
        for method, path in requests:
            before = store.statistics.statements
            assert (await client.request(method, path)).status_code == 200
            sent.append(store.statistics.statements - before)
    assert sent[:3] == [0, 1, 1]

    point = one_point(reader, "prisma_session.request.statements")
    assert point.count == len(requests)
    assert point.sum == sum(sent)
    # The buckets are whole numbers of statements: each count is how many requests sent that many.
    by_value = dict(zip([0, *point.explicit_bounds[1:]], point.bucket_counts, strict=False))
    assert {value: count for value, count in by_value.items() if count} == {
        value: sent.count(value) for value in set(sent)
    }
    assert point.attributes["db.system.name"] == system_of(store)


async def test_telemetry_screens_no_path_out(store: PrismaSessionStore, reader: InMemoryMetricReader) -> None:
    """With telemetry, as without, a cookie path of "/" gives every request its session and its record:
    `OPTIONS *` too, whose path is "*" (telemetry must not bring in the cookie-path test)."""
    seen: list[bool] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append("session" in scope and scope["state"]["session"] is scope["session"])
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def ignore(message: Any) -> None:
        pass

    middleware = SessionMiddleware(app, store=store, secret=SECRET)
    for path in ("*", "/noop"):
        scope = {"type": "http", "method": "OPTIONS", "path": path, "headers": [], "state": {}}
        await middleware(scope, None, ignore)  # type: ignore[arg-type]
    assert seen == [True, True]
    assert one_point(reader, "prisma_session.request.statements").count == 2


async def test_the_wait_for_a_connection_is_recorded(
    make_store: Callable[..., PrismaSessionStore], reader: InMemoryMetricReader
) -> None:
    store = make_store(request_connections=1)
    await store.create_table()
    await store.check_table()
    pool = store.executor.pool
    held, release = asyncio.Event(), asyncio.Event()

    async def hold(connection: object) -> None:
        held.set()
        await release.wait()

    async with client_for(make_app(store, secure=False)) as client:
        await client.post("/write")  # a session to load, on the one connection, found idle
        holder = asyncio.create_task(pool.using(hold))
        await held.wait()
        read = asyncio.create_task(client.get("/read"))
        await wait_until(lambda: pool.saturated and bool(pool._waiters))  # queued for the connection
        await asyncio.sleep(0.05)
        release.set()
        await holder
        assert (await read).status_code == 200

    point = one_point(reader, "db.client.connection.wait_time")
    assert point.attributes["db.system.name"] == system_of(store)
    assert point.count == 4  # the look at the table, the write's statement, the holder, the read's
    assert point.min == 0.0  # found a connection idle
    assert point.max >= 0.05  # the read waited at least as long as the connection was held


async def test_a_503_is_counted_and_its_span_failed(
    database_url: str,
    telemetry: Telemetry,
    reader: InMemoryMetricReader,
    spans: InMemorySpanExporter,
    tmp_path: Path,
) -> None:
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        down = f"sqlite+aiosqlite:///{tmp_path / 'no such folder' / 'sessions.db'}"  # cannot be opened
    else:
        down = url.set(host="127.0.0.1", port=free_port()).render_as_string(hide_password=False)
    store = PrismaSessionStore(down, telemetry=telemetry, operation_timeout=2)
    try:
        async with client_for(make_app(store, secure=False)) as client:
            assert (await client.get("/noop")).status_code == 200
            assert (await client.post("/write")).status_code == 503
        # A websocket that needs its session is closed with 1011: a refusal without an HTTP status.
        sent = await websocket_that_loads(store, "connect.sid=" + Signer([SECRET]).cookie_value("someone"))
        assert sent[-1]["code"] == 1011
    finally:
        await store.shutdown()

    refused = {
        p.attributes.get("http.response.status_code"): p
        for p in points(reader, "prisma_session.requests.refused")
    }
    assert {status: p.value for status, p in refused.items()} == {503: 1, None: 1}
    assert {p.attributes["error.type"] for p in refused.values()} == {UNAVAILABLE}
    span, _ = spans.get_finished_spans()  # the save, then the websocket's load
    assert span.name == "save Session"
    assert span.status.status_code is StatusCode.ERROR
    assert (span.attributes or {})["error.type"] == UNAVAILABLE
    assert span.events == ()  # no exception recorded: its message could quote a session's data
    failed = [p for p in points(reader, "db.client.operation.duration") if "error.type" in p.attributes]
    assert sorted(p.attributes["db.operation.name"] for p in failed) == ["load", "save"]


async def test_what_pruning_removes_is_counted_with_its_rate(
    store: PrismaSessionStore, engine: AsyncEngine, reader: InMemoryMetricReader, spans: InMemorySpanExporter
) -> None:
    for number in range(5):
        await insert_row(engine, f"expired-{number}", {"cookie": {}}, utcnow() - timedelta(minutes=1))
    await insert_row(engine, "live", {"cookie": {}})
    assert await store.prune() == 5
    assert await store.prune() == 0

    assert one_point(reader, "prisma_session.prune.rows").value == 5
    rate = one_point(reader, "prisma_session.prune.rate")
    assert rate.count == 1  # only the run that removed rows has a rate
    assert rate.sum > 0
    durations = [
        p
        for p in points(reader, "db.client.operation.duration")
        if p.attributes.get("db.operation.name") == "prune"
    ]
    assert [p.count for p in durations] == [2]
    assert [
        dict(span.attributes or {})["prisma_session.rows_deleted"] for span in spans.get_finished_spans()
    ] == [
        5,
        0,
    ]


def test_telemetry_takes_true_false_or_a_telemetry(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"telemetry must be True, False or a Telemetry\(\.\.\.\)"):
        PrismaSessionStore(f"sqlite:///{tmp_path / 's.db'}", telemetry="console")  # type: ignore[arg-type]
    assert PrismaSessionStore(f"sqlite:///{tmp_path / 's.db'}").telemetry is None


SERVER = """
import asyncio, json, sys

if sys.argv[2] == "not installed":
    sys.modules["opentelemetry"] = None  # every import of it fails, as without the extra

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from fastapi_prisma_session import ConfigurationError, PrismaSessionStore, SessionMiddleware, load_session

telemetry = sys.argv[2] == "global"
if telemetry:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    trace.set_tracer_provider(provider)
store = PrismaSessionStore(sys.argv[1], telemetry=telemetry)


async def count(request: Request) -> JSONResponse:
    session = await load_session(request)
    session["n"] = session.get("n", 0) + 1
    return JSONResponse({"n": session["n"]})


app = Starlette(
    routes=[Route("/count", count)],
    middleware=[Middleware(SessionMiddleware, store=store, secret="a" * 32, secure=False)],
)


async def main() -> dict[str, object]:
    await store.create_table()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://x") as client:
        counts = [(await client.get("/count")).json()["n"] for _ in range(2)]
    await store.shutdown()
    loaded = sorted(name for name, module in sys.modules.items() if "opentelemetry" in name and module)
    report = {"counts": counts, "loaded": loaded, "ours": "fastapi_prisma_session.telemetry" in sys.modules}
    if telemetry:
        report["spans"] = [span.name for span in spans.get_finished_spans()]
    try:
        PrismaSessionStore(sys.argv[1], telemetry=True)
    except ConfigurationError as error:
        report["refused"] = str(error)
    return report


print(json.dumps(asyncio.run(main())))
"""


def serve_once(tmp_path: Path, mode: str) -> dict[str, Any]:
    script = tmp_path / "server.py"
    script.write_text(SERVER)
    url = f"sqlite:///{tmp_path / f'{mode}.db'}"
    done = subprocess.run(
        [sys.executable, str(script), url, mode], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["counts"] == [1, 2]
    return report


def test_a_serving_process_without_telemetry_imports_none_of_opentelemetry(tmp_path: Path) -> None:
    report = serve_once(tmp_path, "off")
    assert report["loaded"] == []
    assert report["ours"] is False
    assert "refused" not in report  # installed (the tests' environment): turning it on works


def test_the_package_serves_without_opentelemetry_installed(tmp_path: Path) -> None:
    report = serve_once(tmp_path, "not installed")
    assert report["loaded"] == []
    assert report["refused"] == (
        "telemetry needs OpenTelemetry's API: pip install 'fastapi-prisma-session[telemetry]'"
    )


def test_telemetry_true_reports_to_the_global_provider(tmp_path: Path) -> None:
    report = serve_once(tmp_path, "global")
    assert report["spans"] == ["save Session", "load Session", "save Session"]
