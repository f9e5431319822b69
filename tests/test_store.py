"""The store contract, on SQLite and PostgreSQL: every upstream unit case, and the upstream bugs fixed.

Each test's name says which case of docs/upstream-case-list.md it ports.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from datetime import UTC, timedelta, timezone
from typing import Any

import asyncpg
import pytest
from cuid2 import is_cuid
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from fastapi_prisma_session import ConfigurationError, PrismaSessionStore, SessionDataError, TableMissingError
from fastapi_prisma_session.durations import utcnow
from fastapi_prisma_session.models import session_table
from fastapi_prisma_session.pruning import START_BATCH
from tests.helpers import ADMIN_URL, StatementLog, close_to, insert_row, no_rows, rows, wait_until

MakeStore = Callable[..., PrismaSessionStore]
PAST = timedelta(seconds=-1)


def cookie(max_age_ms: int | None = 60_000) -> dict[str, Any]:
    expires = (
        None if max_age_ms is None else (utcnow() + timedelta(milliseconds=max_age_ms)).isoformat() + "Z"
    )
    return {"originalMaxAge": max_age_ms, "expires": expires, "httpOnly": True, "path": "/"}


# -- length ------------------------------------------------------------------------------------------


async def test_length_is_zero_without_rows(store: PrismaSessionStore) -> None:
    assert await store.length() == 0


async def test_length_counts_ten_rows_with_one_count_statement(
    store: PrismaSessionStore, statements: StatementLog
) -> None:
    for n in range(10):
        await store.set(f"sid-{n}", {"n": n})
    statements.clear()
    assert await store.length() == 10
    assert statements.statements == ["SELECT"]


async def test_length_does_not_count_expired_rows(store: PrismaSessionStore, engine: AsyncEngine) -> None:
    await store.set("live", {"n": 1})
    await insert_row(engine, "expired", {"n": 2}, utcnow() + PAST)
    assert await store.length() == 1


async def test_length_error_surfaces_and_names_the_migration(make_store: MakeStore) -> None:
    store = make_store(table_name="custom_sessions")
    with pytest.raises(TableMissingError, match="alembic upgrade head"):
        await store.length()


# -- get ---------------------------------------------------------------------------------------------


async def test_get_returns_the_stored_dict(store: PrismaSessionStore) -> None:
    await store.set("abc", {"sample": True})
    assert await store.get("abc") == {"sample": True}


async def test_get_of_a_missing_sid_is_none(store: PrismaSessionStore) -> None:
    assert await store.get("nope") is None


async def test_get_of_an_expired_row_is_none_and_deletes_it(
    store: PrismaSessionStore, engine: AsyncEngine
) -> None:
    await insert_row(engine, "old", {"n": 1}, utcnow() + PAST)
    assert await store.get("old") is None
    assert await rows(engine) == {}


async def test_get_of_invalid_json_is_logged_and_treated_as_absent(
    store: PrismaSessionStore, engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    """Upstream raised SyntaxError here, and the app then failed on every request of that user."""
    await insert_row(engine, "bad", '{"truncated": "jso')
    with caplog.at_level(logging.ERROR, logger="fastapi_prisma_session"):
        assert await store.get("bad") is None
    assert "unreadable data" in caplog.text
    assert "bad" in await rows(engine)  # nothing is lost: the row stays for inspection


async def test_get_of_empty_data_is_an_empty_session(store: PrismaSessionStore, engine: AsyncEngine) -> None:
    await insert_row(engine, "empty", "")
    assert await store.get("empty") == {}


# -- destroy -----------------------------------------------------------------------------------------


async def test_destroy_deletes_by_sid(store: PrismaSessionStore, engine: AsyncEngine) -> None:
    await store.set("a", {"n": 1})
    await store.set("b", {"n": 2})
    await store.destroy("a")
    assert set(await rows(engine)) == {"b"}


async def test_destroy_of_a_missing_sid_is_a_no_op(store: PrismaSessionStore) -> None:
    """Upstream bug: destroying a missing session raised (logout sent twice, regenerate after prune)."""
    await store.destroy("never-existed")
    await store.destroy("never-existed")
    assert await store.length() == 0


async def test_destroy_of_a_list_deletes_all_in_one_statement(
    store: PrismaSessionStore, engine: AsyncEngine, statements: StatementLog
) -> None:
    for sid in ("a", "b", "c", "keep"):
        await store.set(sid, {})
    statements.clear()
    await store.destroy(["a", "b", "c"])
    assert statements.statements == ["DELETE"]
    assert set(await rows(engine)) == {"keep"}


async def test_destroy_error_surfaces(make_store: MakeStore) -> None:
    with pytest.raises(TableMissingError):
        await make_store(table_name="custom_sessions").destroy("a")


# -- touch -------------------------------------------------------------------------------------------


async def test_touch_moves_the_expiry_and_refreshes_the_cookie(
    store: PrismaSessionStore, engine: AsyncEngine
) -> None:
    await store.set("t", {"cookie": cookie(60_000), "user": "ann"})
    fresh = cookie(3_600_000)
    assert await store.touch("t", {"cookie": fresh, "user": "ann"}) is True
    row = (await rows(engine))["t"]
    assert close_to(row["expires_at"], utcnow() + timedelta(hours=1))
    stored = json.loads(row["data"])
    assert stored["cookie"] == fresh
    assert stored["user"] == "ann"


async def test_touch_of_a_missing_row_does_not_create_it(
    store: PrismaSessionStore, engine: AsyncEngine
) -> None:
    assert await store.touch("ghost", {"cookie": cookie()}) is False
    assert await rows(engine) == {}


async def test_touch_error_surfaces(make_store: MakeStore) -> None:
    with pytest.raises(TableMissingError):
        await make_store(table_name="custom_sessions").touch("a", {"cookie": cookie()})


async def test_touch_keeps_user_keys_written_by_a_concurrent_set(
    store: PrismaSessionStore, engine: AsyncEngine
) -> None:
    """Corrected: upstream touch rewrote the whole session from a stale copy (a lost update)."""
    await store.set("s", {"cookie": cookie(), "cart": 1})
    stale_copy = {"cookie": cookie(120_000), "cart": 1}
    await store.set("s", {"cookie": cookie(), "cart": 2})  # another request's write lands first
    await store.touch("s", stale_copy)
    stored = json.loads((await rows(engine))["s"]["data"])
    assert stored["cart"] == 2
    assert stored["cookie"]["originalMaxAge"] == 120_000


async def test_touch_with_a_custom_serializer_moves_only_the_expiry(
    make_store: MakeStore, engine: AsyncEngine
) -> None:
    store = make_store(serializer=ReversingSerializer(), ttl=600)
    await store.create_table()
    await store.set("s", {"n": 1})
    before = (await rows(engine))["s"]
    store_later = make_store(serializer=ReversingSerializer(), ttl=7200)
    assert await store_later.touch("s", {"cookie": cookie(), "n": 99}) is True
    after = (await rows(engine))["s"]
    assert after["data"] == before["data"]
    assert after["expires_at"] > before["expires_at"] + timedelta(minutes=90)


# -- set ---------------------------------------------------------------------------------------------


async def test_set_creates_a_missing_row_with_the_sid_as_id(
    store: PrismaSessionStore, engine: AsyncEngine
) -> None:
    await store.set("new-sid", {"a": 1})
    row = (await rows(engine))["new-sid"]
    assert row["id"] == "new-sid"
    assert json.loads(row["data"]) == {"a": 1}


async def test_set_updates_an_existing_row_in_place(store: PrismaSessionStore, engine: AsyncEngine) -> None:
    await store.set("s", {"a": 1})
    await store.set("s", {"a": 2})
    stored = await rows(engine)
    assert len(stored) == 1
    assert json.loads(stored["s"]["data"]) == {"a": 2}


async def test_set_with_a_cookie_max_age_expires_with_the_cookie(
    store: PrismaSessionStore, engine: AsyncEngine
) -> None:
    await store.set("s", {"cookie": cookie(3_600_000)})
    assert close_to((await rows(engine))["s"]["expires_at"], utcnow() + timedelta(hours=1))


async def test_set_without_cookie_or_ttl_lives_one_day(
    store: PrismaSessionStore, engine: AsyncEngine
) -> None:
    await store.set("s", {"a": 1})
    assert close_to((await rows(engine))["s"]["expires_at"], utcnow() + timedelta(days=1))


async def test_set_with_a_failing_serializer_raises_and_writes_nothing(
    make_store: MakeStore, engine: AsyncEngine
) -> None:
    class Broken:
        def dumps(self, obj: Any) -> str:
            raise TypeError("cannot serialize")

        def loads(self, text: str) -> Any:
            return {}

    store = make_store(serializer=Broken())
    await store.create_table()
    with pytest.raises(SessionDataError, match="cannot be saved: cannot serialize"):
        await store.set("s", {"a": object()})
    assert await rows(engine) == {}


async def test_set_uses_db_record_id_function(make_store: MakeStore, engine: AsyncEngine) -> None:
    store = make_store(db_record_id_function=lambda sid: f"id-{sid}")
    await store.create_table()
    await store.set("s", {})
    assert (await rows(engine))["s"]["id"] == "id-s"


async def test_set_without_id_options_uses_a_cuid2(make_store: MakeStore, engine: AsyncEngine) -> None:
    store = make_store()
    await store.create_table()
    await store.set("s", {})
    record_id = (await rows(engine))["s"]["id"]
    assert record_id != "s"
    assert is_cuid(record_id)


async def test_set_is_one_statement(store: PrismaSessionStore, statements: StatementLog) -> None:
    statements.clear()
    await store.set("s", {"a": 1})
    await store.set("s", {"a": 2})
    assert statements.statements == ["INSERT", "INSERT"]  # INSERT … ON CONFLICT DO UPDATE


async def test_concurrent_sets_of_one_sid_all_succeed(store: PrismaSessionStore, engine: AsyncEngine) -> None:
    """Upstream bug: racing creates gave P2025 "Record to update not found" and unique-key errors."""
    await asyncio.gather(*(store.set("hot", {"n": n}) for n in range(100)))
    stored = await rows(engine)
    assert list(stored) == ["hot"]
    assert json.loads(stored["hot"]["data"])["n"] in range(100)


async def test_concurrent_sets_of_many_sids_are_never_dropped(
    store: PrismaSessionStore, engine: AsyncEngine
) -> None:
    """Upstream bug: a per-process "already setting" flag silently dropped writes."""
    await asyncio.gather(*(store.set(f"s{n}", {"n": n}) for n in range(50)))
    await asyncio.gather(*(store.set(f"s{n}", {"n": n + 100}) for n in range(50)))
    stored = await rows(engine)
    assert {sid: json.loads(row["data"])["n"] for sid, row in stored.items()} == {
        f"s{n}": n + 100 for n in range(50)
    }


# -- prune -------------------------------------------------------------------------------------------


async def test_prune_deletes_expired_rows_and_keeps_live_ones(
    store: PrismaSessionStore, engine: AsyncEngine
) -> None:
    await insert_row(engine, "expired-0ms", {}, utcnow())
    await insert_row(engine, "left-500ms", {}, utcnow() + timedelta(milliseconds=500))
    assert await store.prune() == 1
    assert set(await rows(engine)) == {"left-500ms"}


async def test_prune_works_in_bounded_batches(make_store: MakeStore, engine: AsyncEngine) -> None:
    store = make_store(prune_batch_size=3)
    await store.create_table()
    for n in range(10):
        await insert_row(engine, f"old{n}", {}, utcnow() + PAST)
    await insert_row(engine, "live", {})
    log = StatementLog(engine, store)
    assert await store.prune() == 10
    assert log.count("DELETE") == 4  # 3 + 3 + 3 + 1
    assert set(await rows(engine)) == {"live"}


async def test_a_default_prune_paces_its_batches(make_store: MakeStore, engine: AsyncEngine) -> None:
    store = make_store()
    await store.create_table()
    async with engine.begin() as conn:
        table = session_table()
        rows_ = [
            {"id": f"old{n}", "sid": f"old{n}", "data": "{}", "expiresAt": utcnow() + PAST}
            for n in range(1200)
        ]
        await conn.execute(table.insert(), rows_)
    await insert_row(engine, "live", {})
    seen: list[int] = []
    assert await store.prune(progress=seen.append) == 1200
    assert seen[0] == START_BATCH  # then sized by how long each batch took
    assert set(await rows(engine)) == {"live"}


# -- ids, all, clear ---------------------------------------------------------------------------------


async def test_ids_lists_live_sids_only(store: PrismaSessionStore, engine: AsyncEngine) -> None:
    await store.set("a", {})
    await store.set("b", {})
    await insert_row(engine, "expired", {}, utcnow() + PAST)
    assert sorted(await store.ids()) == ["a", "b"]


async def test_all_maps_sids_to_sessions(store: PrismaSessionStore, engine: AsyncEngine) -> None:
    await store.set("a", {"n": 1})
    await insert_row(engine, "empty", "")
    await insert_row(engine, "expired", {"n": 3}, utcnow() + PAST)
    assert await store.all() == {"a": {"n": 1}, "empty": {}}


async def test_all_skips_a_corrupt_row_instead_of_failing(
    store: PrismaSessionStore, engine: AsyncEngine
) -> None:
    await store.set("good", {"n": 1})
    await insert_row(engine, "bad", "{not json")
    await insert_row(engine, "list", "[1, 2]")
    assert await store.all() == {"good": {"n": 1}}


async def test_clear_deletes_every_row(store: PrismaSessionStore, engine: AsyncEngine) -> None:
    for sid in "abc":
        await store.set(sid, {})
    await store.clear()
    assert await rows(engine) == {}


# -- shutdown ----------------------------------------------------------------------------------------


async def test_shutdown_stops_the_loop_and_keeps_a_callers_engine(
    make_store: MakeStore, engine: AsyncEngine
) -> None:
    disposed: list[bool] = []
    event.listen(engine.sync_engine, "engine_disposed", lambda _: disposed.append(True))
    store = make_store(check_period=60)
    store.start_interval()
    assert store.interval_running
    await store.shutdown()
    assert not store.interval_running
    assert disposed == []


async def test_shutdown_disposes_an_engine_the_store_created(database_url: str) -> None:
    store = PrismaSessionStore(database_url, check_period=60)
    disposed: list[bool] = []
    event.listen(store.engine.sync_engine, "engine_disposed", lambda _: disposed.append(True))
    async with store:
        assert store.interval_running
    assert not store.interval_running
    assert disposed == [True]


# -- serializer --------------------------------------------------------------------------------------


class ReversingSerializer:
    """Not JSON on disk, to prove the store reads and writes through the serializer."""

    def dumps(self, obj: Any) -> str:
        return json.dumps(obj)[::-1]

    def loads(self, text: str) -> Any:
        return json.loads(text[::-1])


class JSStyleSerializer:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def stringify(self, obj: Any) -> str:
        self.calls.append("stringify")
        return json.dumps(obj)

    def parse(self, text: str) -> Any:
        self.calls.append("parse")
        return json.loads(text)


async def test_custom_serializer_is_used_for_reading_and_writing(
    make_store: MakeStore, engine: AsyncEngine
) -> None:
    store = make_store(serializer=ReversingSerializer())
    await store.create_table()
    await store.set("s", {"a": 1})
    assert (await rows(engine))["s"]["data"] == '{"a": 1}'[::-1]
    assert await store.get("s") == {"a": 1}


async def test_stringify_parse_serializer_is_accepted(make_store: MakeStore) -> None:
    serializer = JSStyleSerializer()
    store = make_store(serializer=serializer)
    await store.create_table()
    await store.set("s", {"a": 1})
    assert await store.get("s") == {"a": 1}
    assert serializer.calls == ["stringify", "parse"]


def test_a_serializer_without_methods_is_rejected(engine: AsyncEngine) -> None:
    with pytest.raises(ConfigurationError, match="dumps"):
        PrismaSessionStore(engine, serializer=object())


# -- logger ------------------------------------------------------------------------------------------


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def injected_logger(name: str) -> tuple[logging.Logger, ListHandler]:
    log = logging.getLogger(f"tests.{name}")
    log.setLevel(logging.DEBUG)
    handler = ListHandler()
    log.handlers = [handler]
    log.propagate = False
    return log, handler


async def test_injected_logger_receives_prunes_info_line(make_store: MakeStore) -> None:
    log, handler = injected_logger("prune")
    store = make_store(logger=log, logger_level="info")
    await store.create_table()
    await store.prune()
    (message,) = [r.getMessage() for r in handler.records]
    assert message.startswith("pruned 0 expired sessions from Session in ")


async def test_logger_false_silences_everything(
    make_store: MakeStore, engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    store = make_store(logger=False, logger_level=["debug", "info", "warn", "error"])
    await store.create_table()
    await insert_row(engine, "bad", "{oops")
    with caplog.at_level(logging.DEBUG):
        assert await store.get("bad") is None
        await store.prune()
    assert [r for r in caplog.records if r.name.startswith("fastapi_prisma_session")] == []


@pytest.mark.parametrize(
    ("levels", "expected"),
    [
        ("error", ["ERROR"]),
        ("info", ["INFO"]),
        (["info", "error"], ["ERROR", "INFO"]),
        ([logging.INFO, "warn"], ["INFO"]),
    ],
)
async def test_logger_level_filters_levels(
    make_store: MakeStore, engine: AsyncEngine, levels: Any, expected: list[str]
) -> None:
    log, handler = injected_logger("levels")
    store = make_store(logger=log, logger_level=levels)
    await store.create_table()
    await insert_row(engine, "bad", "{oops")
    await store.get("bad")  # an error line
    await store.prune()  # an info line
    assert [r.levelname for r in handler.records] == expected


def test_unknown_logger_level_is_rejected(engine: AsyncEngine) -> None:
    with pytest.raises(ConfigurationError, match="logger_level"):
        PrismaSessionStore(engine, logger_level="loud")


# -- check_period ------------------------------------------------------------------------------------


async def test_a_small_check_period_prunes_without_a_manual_call(
    make_store: MakeStore, engine: AsyncEngine
) -> None:
    store = make_store(check_period=0.05)
    await store.create_table()
    await insert_row(engine, "old", {}, utcnow() + PAST)
    async with store:
        await wait_until(lambda: no_rows(engine))


@pytest.mark.parametrize("period", [None, 0])
async def test_check_period_off_never_starts_the_loop(make_store: MakeStore, period: int | None) -> None:
    store = make_store(check_period=period)
    store.start_interval()
    assert not store.interval_running


async def test_stop_then_start_interval_restarts_pruning(make_store: MakeStore, engine: AsyncEngine) -> None:
    """Upstream bug: after stopInterval() pruning never came back."""
    store = make_store(check_period=0.05)
    await store.create_table()
    store.start_interval()
    await store.stop_interval()
    assert not store.interval_running
    await insert_row(engine, "old", {}, utcnow() + PAST)
    store.start_interval()
    await wait_until(lambda: no_rows(engine))


async def test_a_failing_prune_run_does_not_stop_the_loop(make_store: MakeStore, engine: AsyncEngine) -> None:
    """Upstream bug: the loop crashed the app on a race, and stopped for good after a connection blip."""
    store = make_store(check_period=0.05, table_name="custom_sessions")
    store.start_interval()
    await asyncio.sleep(0.15)  # runs fail: the table does not exist yet
    assert store.interval_running
    await store.create_table()
    await insert_row(engine, "old", {}, utcnow() + PAST, table_name="custom_sessions")
    await wait_until(lambda: no_rows(engine, "custom_sessions"))


def test_start_interval_outside_an_event_loop_says_what_to_do(engine: AsyncEngine) -> None:
    store = PrismaSessionStore(engine, check_period=1)
    with pytest.raises(RuntimeError, match="running event loop"):
        store.start_interval()


# -- ttl ---------------------------------------------------------------------------------------------


async def test_ttl_number_sets_expiry_to_now_plus_ttl(make_store: MakeStore, engine: AsyncEngine) -> None:
    store = make_store(ttl=90)
    await store.create_table()
    await store.set("s", {})
    assert close_to((await rows(engine))["s"]["expires_at"], utcnow() + timedelta(seconds=90))


async def test_ttl_callable_gets_options_session_and_sid(make_store: MakeStore, engine: AsyncEngine) -> None:
    seen: list[tuple[Any, ...]] = []

    def ttl(options: Any, session: Any, sid: str) -> timedelta:
        seen.append((options["table_name"], dict(session), sid))
        return timedelta(minutes=30)

    store = make_store(ttl=ttl)
    await store.create_table()
    await store.set("s", {"a": 1})
    assert seen == [("Session", {"a": 1}, "s")]
    assert close_to((await rows(engine))["s"]["expires_at"], utcnow() + timedelta(minutes=30))


@pytest.mark.parametrize("bad", ["10", [10], -5, 0])
def test_ttl_that_is_not_a_positive_number_or_callable_raises(engine: AsyncEngine, bad: Any) -> None:
    with pytest.raises(ConfigurationError, match="ttl"):
        PrismaSessionStore(engine, ttl=bad)


async def test_ttl_unset_falls_back_to_the_cookie_max_age(
    store: PrismaSessionStore, engine: AsyncEngine
) -> None:
    await store.set("s", {"cookie": {"originalMaxAge": 120_000, "expires": None}})
    assert close_to((await rows(engine))["s"]["expires_at"], utcnow() + timedelta(minutes=2))


async def test_ttl_overrides_the_cookie_max_age(make_store: MakeStore, engine: AsyncEngine) -> None:
    store = make_store(ttl=timedelta(hours=3))
    await store.create_table()
    await store.set("s", {"cookie": cookie(60_000)})
    assert close_to((await rows(engine))["s"]["expires_at"], utcnow() + timedelta(hours=3))


# -- table_name --------------------------------------------------------------------------------------


async def test_a_custom_table_name_is_used(make_store: MakeStore, engine: AsyncEngine) -> None:
    store = make_store(table_name="custom_sessions", db_record_id_is_session_id=True)
    await store.create_table()
    await store.set("s", {"a": 1})
    assert list(await rows(engine, "custom_sessions")) == ["s"]
    assert await store.get("s") == {"a": 1}


# -- configuration -----------------------------------------------------------------------------------


def test_a_non_engine_non_url_is_rejected() -> None:
    with pytest.raises(ConfigurationError, match="AsyncEngine or a URL"):
        PrismaSessionStore(42)  # type: ignore[arg-type]


def test_an_unsupported_database_is_rejected() -> None:
    from fastapi_prisma_session.dialects import for_database
    from fastapi_prisma_session.models import session_table

    with pytest.raises(ConfigurationError, match=r"'oracle' database is not supported.*mysql://"):
        for_database("oracle", session_table(), prune_batch_size=10)
    # CockroachDB speaks PostgreSQL's protocol: refused with its own reason (issue 14, item 6).
    with pytest.raises(ConfigurationError, match=r"CockroachDB speaks PostgreSQL's protocol.*advisory locks"):
        for_database("cockroachdb", session_table(), prune_batch_size=10)


# -- destroy_all: "log out everywhere" (upstream feature request destroyUsersSessions) ---------------


async def test_destroy_all_ends_every_session_of_a_user_in_one_statement(
    store: PrismaSessionStore, engine: AsyncEngine, statements: StatementLog
) -> None:
    await store.set("phone", {"cookie": cookie(), "user_id": 42, "device": "phone"})
    await store.set("laptop", {"cookie": cookie(), "user_id": 42})
    await store.set("other", {"cookie": cookie(), "user_id": 7})
    await store.set("text-42", {"user_id": "42"})
    await store.set("anonymous", {})
    statements.clear()
    assert await store.destroy_all(user_id=42) == 2
    # PostgreSQL matches by jsonb in the DELETE. SQLite and MySQL compare values in Python, then delete
    # them, in one transaction that holds the rows it read (a session moved meanwhile is not missed). This
    # store's row ids are its sids, which a move changes: on MySQL a second look finds a row that moved
    # while the first waited for it.
    expected = {
        "postgresql": ["DELETE"],
        "sqlite": ["BEGIN", "SELECT", "DELETE", "COMMIT"],
        "mysql": ["START", "SELECT", "DELETE", "SELECT", "COMMIT"],
    }
    assert statements.statements == expected[store.engine.dialect.name]
    assert set(await rows(engine)) == {"other", "text-42", "anonymous"}


async def test_destroy_all_matches_every_given_pair(store: PrismaSessionStore, engine: AsyncEngine) -> None:
    await store.set("a", {"user_id": 1, "tenant": "x"})
    await store.set("b", {"user_id": 1, "tenant": "y"})
    assert await store.destroy_all(user_id=1, tenant="y") == 1
    assert set(await rows(engine)) == {"a"}


async def test_destroy_all_survives_a_corrupt_row(store: PrismaSessionStore, engine: AsyncEngine) -> None:
    await store.set("mine", {"user_id": 42})
    await insert_row(engine, "corrupt", '{"user_id": 42, "trunc')
    assert await store.destroy_all(user_id=42) == 1
    assert set(await rows(engine)) == {"corrupt"}


async def test_destroy_all_with_a_custom_serializer(make_store: MakeStore, engine: AsyncEngine) -> None:
    store = make_store(serializer=ReversingSerializer())
    await store.create_table()
    await store.set("a", {"user_id": 42})
    await store.set("b", {"user_id": 43})
    assert await store.destroy_all(user_id=42) == 1
    assert set(await rows(engine)) == {"b"}


async def test_destroy_all_without_a_match_is_refused(store: PrismaSessionStore) -> None:
    with pytest.raises(ValueError, match="at least one key"):
        await store.destroy_all()


# -- a dead pooled connection ------------------------------------------------------------------------


async def test_a_read_survives_a_killed_pooled_connection(postgres_url: str) -> None:
    """The request path uses the raw asyncpg connection: a dead one is discarded and the read retried."""
    async with PrismaSessionStore(postgres_url, table_name="custom_sessions") as store:
        await store.create_table()
        try:
            await store.set("s", {"n": 1})
            assert await store.get("s") == {"n": 1}  # the pool now holds a live connection
            admin = await asyncpg.connect(ADMIN_URL)
            try:
                killed = await admin.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = $1 AND pid <> pg_backend_pid()",
                    make_url(postgres_url).database,
                )
            finally:
                await admin.close()
            assert killed >= 1
            assert await store.get("s") == {"n": 1}
            await store.set("s", {"n": 2})  # the pool works again
            assert await store.get("s") == {"n": 2}
        finally:
            async with store.engine.begin() as conn:
                await conn.exec_driver_sql('DROP TABLE "custom_sessions"')


@pytest.mark.parametrize("sid", ["", "nul\x00byte", "space inside", "é", "x" * 256])
async def test_an_invalid_session_id_is_refused_before_any_write(
    store: PrismaSessionStore, engine: AsyncEngine, sid: str
) -> None:
    with pytest.raises(ValueError, match="visible ASCII"):
        await store.set(sid, {"a": 1})
    assert await rows(engine) == {}


async def test_matching_lists_a_users_live_sessions(store: PrismaSessionStore, engine: AsyncEngine) -> None:
    await store.set("phone", {"cookie": cookie(), "user": "ada"})
    await store.set("laptop", {"cookie": cookie(), "user": "ada", "theme": "dark"})
    await store.set("other", {"cookie": cookie(), "user": "bob"})
    await insert_row(engine, "expired", {"user": "ada"}, utcnow() + PAST)
    await insert_row(engine, "corrupt", '{"user": "ada", "tru')
    found = await store.matching(user="ada")
    assert sorted(found) == ["laptop", "phone"]
    assert found["laptop"].data["theme"] == "dark"
    assert close_to(found["phone"].expires_at, utcnow() + timedelta(minutes=1))


async def test_matching_with_a_custom_serializer(make_store: MakeStore) -> None:
    store = make_store(serializer=ReversingSerializer())
    await store.create_table()
    await store.set("a", {"user": "ada"})
    await store.set("b", {"user": "bob"})
    assert list(await store.matching(user="ada")) == ["a"]
    with pytest.raises(ValueError, match="at least one key"):
        await store.matching()


async def test_an_aware_expires_at_is_the_instant_it_names(store: PrismaSessionStore) -> None:
    """The columns hold naive UTC: an aware datetime was written as its wall time on MySQL (five hours
    late for +05:00) and refused by asyncpg on PostgreSQL."""
    plus5 = timezone(timedelta(hours=5))
    for hours, call in enumerate(
        (
            lambda when: store.create("abc", {"cookie": {}}, expires_at=when),
            lambda when: store.update("abc", {"cookie": {}, "n": 1}, expires_at=when),
            lambda when: store.touch("abc", {"cookie": {}, "n": 1}, expires_at=when),
        ),
        start=1,
    ):
        utc = (utcnow() + timedelta(hours=hours)).replace(microsecond=0)
        await call(utc.replace(tzinfo=UTC).astimezone(plus5))
        loaded = await store.load("abc")
        assert loaded is not None
        assert loaded.expires_at == utc


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_timestamptz_expiry_column_is_refused_clearly(
    make_store: Callable[..., PrismaSessionStore], engine: AsyncEngine
) -> None:
    """`expiresAt DateTime @db.Timestamptz(3)` in a Prisma schema: asyncpg reads aware datetimes, which
    were compared with naive ones (a TypeError on every load), and writes naive ones as the host's local
    time (a silently wrong expiry off UTC hosts)."""
    store = make_store()
    await store.create_table()
    column = '"Session" ALTER COLUMN "expiresAt" TYPE'
    async with engine.begin() as conn:
        await conn.exec_driver_sql(f"ALTER TABLE {column} TIMESTAMPTZ(3)")
    for _ in range(2):  # and again on the next call, as after every failed look
        with pytest.raises(ConfigurationError, match="TIMESTAMPTZ"):
            await store.load("abc")
    async with engine.begin() as conn:  # the advice
        await conn.exec_driver_sql(
            f"""ALTER TABLE {column} TIMESTAMP(3) USING "expiresAt" AT TIME ZONE 'UTC'"""
        )
    await engine.dispose()  # its connections prepared statements that describe the old column
    assert await make_store().load("abc") is None
