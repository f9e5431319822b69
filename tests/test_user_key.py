"""The `user_key` option: a user's sessions found through an index on `data`, with the same answers as
reading every row, on rows of any content (issue 16, item 1)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from fastapi_prisma_session import PrismaSessionStore
from fastapi_prisma_session.durations import utcnow
from fastapi_prisma_session.exceptions import ConfigurationError
from tests.helpers import alembic, insert_row, rows, run_module

MakeStore = Callable[..., PrismaSessionStore]


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The databases with a user-key index; MySQL and MariaDB refuse the option (the last test)."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'sessions.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


COOKIE = '"cookie":{"originalMaxAge":null,"expires":null}'


def with_cookie(rest: str) -> str:
    return "{" + COOKIE + "," + rest + "}"


# Rows as Node, Python or a hand in psql may have written them: the text of `data`, by sid.
ROWS: dict[str, str] = {
    "number": with_cookie('"user_id":4242'),
    "number_again": '{"user_id":4242,' + COOKIE + "}",
    "text": with_cookie('"user_id":"4242"'),
    "float": with_cookie('"user_id":4242.0'),
    "exponent": with_cookie('"user_id":4.242e3'),
    "true": with_cookie('"user_id":true'),
    "one": with_cookie('"user_id":1'),
    "json_null": with_cookie('"user_id":null'),
    "list": with_cookie('"user_id":[4242]'),
    "object": with_cookie('"user_id":{"id":4242}'),
    "object_text": with_cookie('"user_id":"{\\"id\\":4242}"'),
    "big": with_cookie('"user_id":18446744073709551617'),
    "big_neighbour": with_cookie('"user_id":18446744073709551616'),
    "no_key": with_cookie('"other":4242'),
    "nested": with_cookie('"profile":{"user_id":4242}'),
    "tenant": with_cookie('"user_id":4242,"tenant":"a"'),
    # jsonb cannot hold these, and the index must not make their writes fail:
    "nul": with_cookie('"user_id":4242,"name":"a\\u0000b"'),
    "surrogate": with_cookie('"user_id":4242,"name":"\\ud800"'),
    "nul_other_user": with_cookie('"user_id":7,"name":"\\u0000"'),
    "invalid": with_cookie('"user_id":4242')[:-1],
    "nan": with_cookie('"user_id":4242,"x":NaN'),
    "empty": "",
    "array": "[4242]",
    "string": '"4242"',
}
VALUES: list[Any] = [
    4242,
    "4242",
    4242.0,
    True,
    1,
    None,
    [4242],
    {"id": 4242},
    '{"id":4242}',
    2**64 + 1,
    7,
    0,
]


async def fill(engine: AsyncEngine) -> None:
    for sid, data in ROWS.items():
        await insert_row(engine, sid, data)
    # An expired session of the user: matching() leaves it out, destroy_all() deletes it.
    await insert_row(engine, "expired", with_cookie('"user_id":4242'), utcnow() - timedelta(hours=1))


async def test_matching_and_destroy_all_give_the_same_answers_with_the_index(
    make_store: MakeStore, engine: AsyncEngine
) -> None:
    plain = make_store()
    indexed = make_store(user_key="user_id")
    await indexed.create_table()
    await fill(engine)  # every one of these rows was writable with the index in place

    for value in VALUES:
        expected = set(await plain.matching(user_id=value))
        assert set(await indexed.matching(user_id=value)) == expected, value
        assert set(await indexed.matching(user_id=value, tenant="a")) == set(
            await plain.matching(user_id=value, tenant="a")
        )
    # What the unindexed path answers, written out: 4242 is not "4242", nor true, nor [4242].
    assert set(await indexed.matching(user_id=4242)) == {
        "number", "number_again", "float", "exponent", "tenant", "nul", "surrogate", "nan"
    }  # fmt: skip
    assert set(await indexed.matching(user_id="4242")) == {"text"}
    assert set(await indexed.matching(user_id=True)) == {"true"}
    assert set(await indexed.matching(user_id=1)) == {"one"}

    deleted_plain, deleted_indexed = [], []
    for store, deleted in ((plain, deleted_plain), (indexed, deleted_indexed)):
        async with engine.begin() as conn:
            await conn.execute(text('DELETE FROM "Session"'))
        await fill(engine)
        for value in VALUES:
            before = set(await rows(engine))
            count = await store.destroy_all(user_id=value)
            gone = before - set(await rows(engine))
            assert count == len(gone)
            deleted.append((repr(value), sorted(gone)))
    assert deleted_indexed == deleted_plain
    assert dict(deleted_indexed)["4242"] == sorted(
        ["number", "number_again", "float", "exponent", "tenant", "nul", "surrogate", "nan", "expired"]
    )


async def test_writes_of_any_data_succeed_with_the_index(make_store: MakeStore, engine: AsyncEngine) -> None:
    store = make_store(user_key="user_id")
    await store.create_table()
    await store.set("a", {"cookie": {"originalMaxAge": None, "expires": None}, "user_id": 1, "x": "\u0000"})
    loaded = await store.load("a")
    assert loaded is not None
    assert await store.update("a", {**loaded.data, "y": "\u0000"}, changed={"y"}, expected=loaded.text)
    await insert_row(engine, "b", '{"user_id":1,"x":"\\udfff"}')
    await insert_row(engine, "c", "not json at all")
    assert set(await store.matching(user_id=1)) == {"a", "b"}
    assert await store.destroy_all(user_id=1) == 2
    assert set(await rows(engine)) == {"c"}


async def test_a_user_is_found_through_the_index(make_store: MakeStore, engine: AsyncEngine) -> None:
    store = make_store(user_key="user_id")
    await store.create_table()
    for n in range(200):
        await insert_row(engine, f"s{n}", json.dumps({"user_id": n % 50}))
    matcher = store._matcher._index
    assert matcher is not None
    async with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            await conn.execute(text('ANALYZE "Session"'))
            await conn.execute(text("SET enable_seqscan = off"))  # a 200-row table is cheaper to scan
            explain = "EXPLAIN "
        else:
            explain = "EXPLAIN QUERY PLAN "
        for statement in (matcher.live_candidates, matcher.delete, matcher.unreadable):
            compiled = statement.compile(engine.sync_engine, compile_kwargs={"literal_binds": False})
            params = {"user_key_value": 1 if engine.dialect.name == "sqlite" else "[1]", "now": utcnow()}
            plan = (await conn.exec_driver_sql(explain + str(compiled), _positional(compiled, params))).all()
            assert "Session_data_user_id_idx" in " ".join(str(row) for row in plan), plan
        await conn.rollback()


def _positional(compiled: Any, params: dict[str, Any]) -> Any:
    if compiled.positiontup is None:
        return {name: params[name] for name in compiled.params}
    return tuple(params[name] for name in compiled.positiontup)


async def test_without_the_option_the_schema_and_statements_stay_as_they_were(
    make_store: MakeStore, engine: AsyncEngine
) -> None:
    store = make_store()
    await store.create_table()
    async with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            names = (
                await conn.execute(text("SELECT indexname FROM pg_indexes WHERE tablename='Session'"))
            ).all()
        else:
            names = (await conn.execute(text("SELECT name FROM sqlite_master WHERE type='index'"))).all()
    assert {name for (name,) in names if not name.startswith("sqlite_autoindex")} == {
        "Session_pkey" if engine.dialect.name == "postgresql" else "Session_sid_key",
        "Session_sid_key",
        "Session_expiresAt_idx",
    }
    assert store._matcher._index is None


async def test_a_missing_index_on_postgresql_says_how_to_add_it(
    make_store: MakeStore, engine: AsyncEngine
) -> None:
    await make_store().create_table()
    await insert_row(engine, "a", '{"user_id":1}')
    store = make_store(user_key="user_id")
    if engine.dialect.name == "sqlite":
        # SQLite evaluates the expression on every row instead: right answers, slowly.
        assert set(await store.matching(user_id=1)) == {"a"}
        return
    async with engine.begin() as conn:
        await conn.execute(text('DROP FUNCTION IF EXISTS "Session_json_value"(text, text)'))
    with pytest.raises(ConfigurationError, match="migrate --user-key user_id"):
        await store.matching(user_id=1)
    with pytest.raises(ConfigurationError, match="migrate --user-key user_id"):
        await store.destroy_all(user_id=1)


@pytest.mark.parametrize("key", ["", "user id", "1st", "a" * 30, "user_id'); DROP TABLE x; --", 7])
def test_a_user_key_must_be_a_plain_name(key: Any) -> None:
    with pytest.raises(ConfigurationError, match="user_key must be"):
        PrismaSessionStore("sqlite:///unused.db", user_key=key)


def test_a_user_key_needs_the_json_serializer() -> None:
    class Opaque:
        def dumps(self, obj: Any) -> str:
            return repr(obj)

        def loads(self, text: str) -> Any:
            return {}

    with pytest.raises(ConfigurationError, match="JSON serializer"):
        PrismaSessionStore("sqlite:///unused.db", user_key="user_id", serializer=Opaque())


async def test_migrate_adds_and_drops_the_index(database_url: str, engine: AsyncEngine) -> None:
    plain = database_url.replace("+asyncpg", "").replace("+aiosqlite", "")
    for _ in range(2):  # the second run finds it there and does nothing
        done = run_module(
            "fastapi_prisma_session", "migrate", "--database-url", plain, "--user-key", "user_id"
        )
        assert done.returncode == 0, done.stderr
        assert 'the index of user key "user_id" is there' in done.stdout
    store = PrismaSessionStore(engine, user_key="user_id")
    try:
        await insert_row(engine, "bad", '{"user_id":1,"x":"\\u0000"')
        await insert_row(engine, "good", '{"user_id":1}')
        assert set(await store.matching(user_id=1)) == {"good"}
        checked = alembic(plain, "check")  # the index is not a difference from the model
        assert checked.returncode == 0, checked.stderr
        assert "No new upgrade operations detected" in checked.stdout + checked.stderr
        done = run_module(
            "fastapi_prisma_session", "migrate", "--database-url", plain, "--drop-user-key", "user_id"
        )
        assert done.returncode == 0, done.stderr
        async with engine.connect() as conn:
            if engine.dialect.name == "postgresql":
                query = "SELECT count(*) FROM pg_indexes WHERE indexname = 'Session_data_user_id_idx'"
            else:
                query = "SELECT count(*) FROM sqlite_master WHERE name = 'Session_data_user_id_idx'"
            assert (await conn.execute(text(query))).scalar_one() == 0
    finally:
        await store.shutdown()
        async with engine.begin() as conn:
            await conn.execute(text('DROP TABLE IF EXISTS "Session"'))
            await conn.execute(text("DROP TABLE IF EXISTS alembic_version_fastapi_prisma_session"))


def test_migrate_sql_prints_the_index_and_its_function() -> None:
    done = run_module(
        "fastapi_prisma_session",
        "migrate",
        "--sql",
        "--database-url",
        "postgresql://u@h/db",
        "--user-key",
        "uid",
    )
    assert done.returncode == 0, done.stderr
    assert 'CREATE OR REPLACE FUNCTION "Session_json_value"(data text, key text)' in done.stdout
    assert 'ON "Session" ("Session_json_value"(data, \'uid\'))' in done.stdout
    refused = run_module(
        "fastapi_prisma_session",
        "migrate",
        "--database-url",
        "sqlite:///x.db",
        "--downgrade",
        "--user-key",
        "u",
    )
    assert refused.returncode == 2
    assert "--downgrade drops the table" in refused.stderr


async def test_destroy_all_through_the_index_disposes_each_session(
    make_store: MakeStore, engine: AsyncEngine
) -> None:
    disposed: list[tuple[str, Any]] = []
    store = make_store(user_key="user_id", dispose=lambda sid, data: disposed.append((sid, data)))
    await store.create_table()
    await insert_row(engine, "a", '{"user_id":5}')
    await insert_row(engine, "b", '{"user_id":5,"x":"\\u0000"}')  # unreadable as jsonb
    await insert_row(engine, "c", '{"user_id":6}')
    assert await store.destroy_all(user_id=5) == 2
    assert sorted(disposed) == [("a", {"user_id": 5}), ("b", {"user_id": 5, "x": "\u0000"})]
    assert set(await rows(engine)) == {"c"}


async def test_mysql_refuses_the_option_with_a_clear_error(mariadb_url: str) -> None:
    with pytest.raises(ConfigurationError, match="user_key option is not supported on mysql"):
        PrismaSessionStore(mariadb_url, user_key="user_id")
    done = run_module(
        "fastapi_prisma_session", "migrate", "--sql", "--database-url", "mysql://u@h/db", "--user-key", "u"
    )
    assert done.returncode == 2
    assert "not supported on mysql" in done.stderr
