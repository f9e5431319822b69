"""The `user_key` option: a user's sessions found through an index on `data`, with the same answers as
reading every row, on rows of any content (issue 16, item 1), on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import delete, func, insert, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from fastapi_prisma_session import PrismaSessionStore
from fastapi_prisma_session.durations import utcnow
from fastapi_prisma_session.exceptions import ConfigurationError
from fastapi_prisma_session.models import session_table
from tests.helpers import alembic, insert_row, prismas_mysql_table, rows, run_module, set_data

MakeStore = Callable[..., PrismaSessionStore]


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
    # Strings that an index may cut short, fold or decode: equal only where Python says so.
    "long_a": with_cookie('"user_id":"' + "x" * 300 + 'a"'),
    "long_b": with_cookie('"user_id":"' + "x" * 300 + 'b"'),
    "escaped": with_cookie('"user_id":"\\u00e9t\\u00e9"'),
    "raw": with_cookie('"user_id":"été"'),
    "capital": with_cookie('"user_id":"Été"'),
    "spaced": with_cookie('"user_id":"été "'),
}
# Text no index may refuse to write: not JSON to some database, or JSON one of its JSON functions
# chokes on (MariaDB's JSON_VALID takes `1e-` and `-`, and JSON_EXTRACT then warns, which in strict
# mode fails the write), nested past MariaDB's depth of 32, or a value longer than an index entry.
HOSTILE: list[str] = [
    *(with_cookie(f'"user_id":{number}') for number in ("1e-", "-", "1e", "1E+", "1.", "1.e5", "0e-")),
    with_cookie('"user_id":[1e-]'),
    with_cookie('"x":1e-,"user_id":1'),
    with_cookie('"user_id":1e400'),
    with_cookie('"user_id":' + "9" * 5000),
    with_cookie('"user_id":"\\q"'),
    with_cookie('"user_id":"\\ud800"'),
    with_cookie('"user_id":"\\udc00\\ud800x"'),
    with_cookie('"user_id":"a\\u0000b"'),
    with_cookie('"user_id":"' + "é" * 100_000 + '"'),
    with_cookie('"user_id":1,"x":' + "[" * 40 + "]" * 40),
    with_cookie('"user_id":' + "[" * 40 + "]" * 40),
    with_cookie('"user_id":{"id":[1,{"user_id":1}]}'),
    with_cookie('"user_id":tru'),
    with_cookie('"user_id":NaN'),
    "\ufeff" + with_cookie('"user_id":1'),
    '{"user_id":1',
    '"user_id"',
    "",
]
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
    "x" * 300 + "a",
    "été",
    "Été",
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
    assert set(await indexed.matching(user_id="x" * 300 + "a")) == {"long_a"}
    assert set(await indexed.matching(user_id="été")) == {"escaped", "raw"}

    deleted_plain, deleted_indexed = [], []
    for store, deleted in ((plain, deleted_plain), (indexed, deleted_indexed)):
        async with engine.begin() as conn:
            await conn.execute(delete(session_table()))
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


async def test_hostile_text_is_written_rewritten_and_deleted_with_the_index(
    make_store: MakeStore, engine: AsyncEngine
) -> None:
    plain = make_store()
    store = make_store(user_key="user_id")
    await store.create_table()
    hostile = {f"h{n}": data for n, data in enumerate(HOSTILE)}
    for sid, data in hostile.items():  # as Node or a hand would write them: each insert succeeds
        await insert_row(engine, sid, data)
    rewritten = {sid: HOSTILE[(n + 1) % len(HOSTILE)] for n, sid in enumerate(hostile)}
    for sid, data in rewritten.items():  # and each update of one into another
        await set_data(engine, sid, data)
    for value in (1, "q", None, [], {"id": [1, {"user_id": 1}]}, float("nan"), 10**400, float("inf")):
        assert await sids_matching(store, value) == await sids_matching(plain, value), value
    # Python reads two of them as JSON with a user_id: the one nested 40 deep, and the object.
    [deep] = [sid for sid, data in rewritten.items() if data == HOSTILE[16]]
    [object_id] = [sid for sid, data in rewritten.items() if data == HOSTILE[18]]
    assert set(await store.matching(user_id={"id": [1, {"user_id": 1}]})) == {object_id}
    assert await store.destroy_all(user_id=1) == 1
    assert deep not in await rows(engine)
    await store.destroy(list(hostile))  # a delete takes each row's entry out of the index
    assert await rows(engine) == {}


async def sids_matching(store: PrismaSessionStore, value: Any) -> set[str] | str:
    """The sids `matching(user_id=value)` finds, or the error it raises (PostgreSQL's jsonb comparison
    refuses NaN, which is not JSON, with or without the index)."""
    try:
        return set(await store.matching(user_id=value))
    except ValueError as error:
        return str(error)


async def test_the_json_the_readme_says_sqlite_and_mariadb_read_differently(
    make_store: MakeStore, engine: AsyncEngine
) -> None:
    """A key written twice (Python reads the last; SQLite's and MariaDB's index the first), and a key name
    written with an escape, which only PostgreSQL finds (elsewhere, with or without the index, the rows
    are first narrowed by their text). JSON.stringify writes neither."""
    plain = make_store()
    store = make_store(user_key="user_id")
    await store.create_table()
    await insert_row(engine, "twice", '{"user_id":1,"user_id":2}')
    await insert_row(engine, "escaped", '{"user\\u005fid":3}')
    on_postgresql = engine.dialect.name == "postgresql"
    assert set(await plain.matching(user_id=2)) == {"twice"}
    assert set(await store.matching(user_id=2)) == ({"twice"} if on_postgresql else set())
    assert await store.matching(user_id=1) == {}  # found through the index, then refused by Python
    assert set(await plain.matching(user_id=3)) == ({"escaped"} if on_postgresql else set())
    assert set(await store.matching(user_id=3)) == set(await plain.matching(user_id=3))


# What each database's user-key index holds for {"user_id": 1}: the parameter its lookups bind.
LOOKUP_OF_ONE = {"sqlite": 1, "postgresql": "[1]", "mysql": "1"}
EXPLAIN = {"sqlite": "EXPLAIN QUERY PLAN ", "postgresql": "EXPLAIN ", "mysql": "EXPLAIN "}


async def test_a_user_is_found_through_the_index(make_store: MakeStore, engine: AsyncEngine) -> None:
    store = make_store(user_key="user_id")
    await store.create_table()
    for n in range(200):
        await insert_row(engine, f"s{n}", json.dumps({"user_id": n % 50}))
    matcher = store._matcher._index
    assert matcher is not None
    name = engine.dialect.name
    async with engine.connect() as conn:
        if name == "postgresql":
            await conn.execute(text('ANALYZE "Session"'))
            await conn.execute(text("SET enable_seqscan = off"))  # a 200-row table is cheaper to scan
        if name == "mysql":
            await conn.execute(text("ANALYZE TABLE `Session`"))
        # Where the index is the match itself, destroy_all is its one DELETE; else a SELECT of candidates.
        deletes = matcher.delete if store.executor.sql.user_key_exact else matcher.candidates
        for statement in (matcher.live_candidates, deletes, matcher.unreadable):
            compiled = statement.compile(engine.sync_engine)
            params = compiled.construct_params({"user_key_value": LOOKUP_OF_ONE[name], "now": utcnow()})
            plan = (
                await conn.exec_driver_sql(EXPLAIN[name] + str(compiled), _positional(compiled, params))
            ).all()
            assert "Session_data_user_id_idx" in " ".join(str(row) for row in plan), plan
        await conn.rollback()
    assert set(await store.matching(user_id=1)) == {f"s{n}" for n in range(1, 200, 50)}


def _positional(compiled: Any, params: dict[str, Any]) -> Any:
    if compiled.positiontup is None:
        return params
    return tuple(params[name] for name in compiled.positiontup)


async def index_names(engine: AsyncEngine) -> set[str]:
    queries = {
        "postgresql": "SELECT indexname FROM pg_indexes WHERE tablename = 'Session'",
        "sqlite": "SELECT name FROM sqlite_master WHERE type = 'index' AND name NOT LIKE 'sqlite_autoindex%'",
        "mysql": "SELECT DISTINCT index_name FROM information_schema.statistics "
        "WHERE table_schema = DATABASE() AND table_name = 'Session'",
    }
    async with engine.connect() as conn:
        return set((await conn.execute(text(queries[engine.dialect.name]))).scalars())


async def show_create(engine: AsyncEngine) -> str:
    async with engine.connect() as conn:
        return str((await conn.execute(text("SHOW CREATE TABLE `Session`"))).one()[1])


async def test_without_the_option_the_schema_and_statements_stay_as_they_were(
    make_store: MakeStore, engine: AsyncEngine
) -> None:
    store = make_store()
    await store.create_table()
    assert await index_names(engine) == {
        {"postgresql": "Session_pkey", "mysql": "PRIMARY"}.get(engine.dialect.name, "Session_sid_key"),
        "Session_sid_key",
        "Session_expiresAt_idx",
    }
    if engine.dialect.name == "mysql":
        assert await show_create(engine) == await prismas_mysql_table()
    assert store._matcher._index is None


async def test_with_the_option_the_store_uses_a_table_with_the_index(
    make_store: MakeStore, engine: AsyncEngine
) -> None:
    """The store's own statements (its look at the columns, its INSERT, upsert and UPDATE) work on the
    table with what the index adds: on MySQL a column more."""
    await make_store(user_key="user_id").create_table()
    store = make_store(user_key="user_id")
    await store.check_table()  # SELECT * ... LIMIT 0 lists the generated column too
    await store.create("a", {"cookie": {"originalMaxAge": None, "expires": None}, "user_id": 1})
    await store.set("b", {"cookie": {"originalMaxAge": None, "expires": None}, "user_id": 1})
    await store.set("b", {"cookie": {"originalMaxAge": None, "expires": None}, "user_id": 2})
    assert await store.rename("a", "c")
    assert set(await store.matching(user_id=1)) == {"c"}
    assert set(await store.matching(user_id=2)) == {"b"}
    if engine.dialect.name == "mysql":
        created = await show_create(engine)
        assert "`data_user_id_key` varbinary(255) GENERATED ALWAYS AS (" in created
        assert "KEY `Session_data_user_id_idx` (`data_user_id_key`)" in created


async def test_a_missing_index_says_how_to_add_it(make_store: MakeStore, engine: AsyncEngine) -> None:
    await make_store().create_table()
    await insert_row(engine, "a", '{"user_id":1}')
    store = make_store(user_key="user_id")
    if engine.dialect.name == "sqlite":
        # SQLite evaluates the expression on every row instead: right answers, slowly.
        assert set(await store.matching(user_id=1)) == {"a"}
        return
    if engine.dialect.name == "postgresql":  # the function outlives the tables other tests dropped
        async with engine.begin() as conn:
            await conn.execute(text('DROP FUNCTION IF EXISTS "Session_json_value"(text, text)'))
    # PostgreSQL finds no function of the index, MySQL no column.
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


def plain_url(url: str) -> str:
    """The test's URL as Prisma and cron jobs give it: postgresql://, sqlite:// or mysql://."""
    parsed = make_url(url)
    return parsed.set(drivername=parsed.get_backend_name()).render_as_string(hide_password=False)


async def test_migrate_adds_and_drops_the_index(database_url: str, engine: AsyncEngine) -> None:
    plain = plain_url(database_url)
    for _ in range(2):  # the second run finds it there and does nothing
        done = run_module(
            "fastapi_prisma_session", "migrate", "--database-url", plain, "--user-key", "user_id"
        )
        assert done.returncode == 0, done.stderr
        assert 'the index of user key "user_id" is there' in done.stdout
    store = PrismaSessionStore(engine, user_key="user_id")
    quote = engine.dialect.identifier_preparer.quote
    try:
        assert "Session_data_user_id_idx" in await index_names(engine)
        await insert_row(engine, "bad", '{"user_id":1,"x":"\\u0000"')
        await insert_row(engine, "good", '{"user_id":1}')
        assert set(await store.matching(user_id=1)) == {"good"}
        checked = alembic(plain, "check")  # the index (and MySQL's column) is not a difference from the model
        assert checked.returncode == 0, checked.stderr
        assert "No new upgrade operations detected" in checked.stdout + checked.stderr
        for _ in range(2):
            done = run_module(
                "fastapi_prisma_session", "migrate", "--database-url", plain, "--drop-user-key", "user_id"
            )
            assert done.returncode == 0, done.stderr
        assert "Session_data_user_id_idx" not in await index_names(engine)
        if engine.dialect.name == "mysql":
            assert await show_create(engine) == await prismas_mysql_table()  # Prisma's table again
    finally:
        await store.shutdown()
        async with engine.begin() as conn:
            for name in ("Session", "alembic_version_fastapi_prisma_session"):
                await conn.execute(text(f"DROP TABLE IF EXISTS {quote(name)}"))


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "postgresql://u@h/db",
            [
                'CREATE OR REPLACE FUNCTION "Session_json_value"(data text, key text)',
                'CREATE INDEX "Session_data_uid_idx" ON "Session" ("Session_json_value"(data, \'uid\'))',
            ],
        ),
        (
            "mysql://u@h/db",
            [
                "ALTER TABLE `Session` ADD COLUMN `data_uid_key` VARBINARY(255) AS (CASE WHEN (NOT "
                "(/*M! length(json_query(`data`, '$')) <=> length(`data`) OR (FALSE AND */ "
                "json_valid(`data`) /*M! ) */)) THEN '!' ELSE CASE "
                "substring(json_extract(`data`, '$.uid', '$.uid'), 2, 1)",
                "CREATE INDEX `Session_data_uid_idx` ON `Session` (`data_uid_key`)",
            ],
        ),
    ],
)
def test_migrate_sql_prints_what_the_index_needs(url: str, expected: list[str]) -> None:
    done = run_module(
        "fastapi_prisma_session", "migrate", "--sql", "--database-url", url, "--user-key", "uid"
    )
    assert done.returncode == 0, done.stderr
    for statement in expected:
        assert statement in done.stdout
    assert "PREPARE" not in done.stdout  # offline, the plain statements: to run once, or paste into Prisma's


def test_migrate_refuses_the_user_key_options_with_downgrade() -> None:
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


def hostile_corpus() -> list[str]:
    """About 12,000 texts of `data` that JSON parsers disagree on: every string of up to four of
    `01-+.eE` as the user key's value, in an array and before it (MariaDB's JSON_VALID takes many that
    its JSON_EXTRACT refuses), escapes good and bad in values and in the key's name, literals, junk
    around the object, nesting past MariaDB's depth of 32, and random JSON-like text."""
    numbers = ["".join(chars) for size in range(1, 5) for chars in itertools.product("01-+.eE", repeat=size)]
    corpus = [
        text
        for number in numbers
        for text in (
            f'{{"user_id":{number}}}',
            f'{{"user_id":[{number}]}}',
            f'{{"x":{number},"user_id":1}}',
        )
    ]
    escapes = ['\\"', "\\\\", "\\/", "\\b", "\\n", "\\u0000", "\\u001f", "\\u00e9", "\\ud83d\\ude00"]
    escapes += ["\\ud800", "\\udc00", "\\uffff", "\\q", "\\x", "\\u12", "\\u", "\\", "\\U0041", "'"]
    for escape in escapes:
        corpus += [
            f'{{"user_id":"a{escape}b"}}',
            f'{{"user{escape}_id":1}}',
            f'{{"x":"{escape}","user_id":2}}',
        ]
    literals = ["true", "false", "null", "tru", "nul", "TRUE", "NaN", "Infinity", "-Infinity", "'a'", '"a']
    corpus += [f'{{"user_id":{literal}}}' for literal in [*literals, "[", "{", "{}", "[]", "", " "]]
    for junk in ["", " ", "\ufeff", "\n", "x", "[", "{", "}", ",", "\t"]:
        corpus += [junk + '{"user_id":1}', '{"user_id":1}' + junk]
    for depth in (32, 33, 300):
        corpus += [
            '{"user_id":1,"x":' + "[" * depth + "]" * depth + "}",
            '{"user_id":' + "[" * depth + "]" * depth + "}",
        ]
    corpus += [
        '{"user_id":"' + "é" * 70_000 + '"}',
        '{"user_id":' + "9" * 5000 + "}",
        '{"user_id":1,"user_id":2}',
    ]
    rng = random.Random(16)
    alphabet = '{}[]":,0123456789-+.eEtrufalsn\\ u' + "é"
    for _ in range(2000):
        corpus.append('{"user_id":' + "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12))) + "}")
    return corpus


@pytest.mark.parametrize(
    "sql_mode",
    [None, "TRADITIONAL", "ANSI,TRADITIONAL,NO_BACKSLASH_ESCAPES", ""],
    ids=["server", "traditional", "ansi", "none"],
)
async def test_no_text_fails_a_write_on_mysql(mariadb_url: str, sql_mode: str | None) -> None:
    """In strict mode MySQL and MariaDB fail a write on any warning, so the generated column's expression
    may never warn, whatever `data` holds: every text of the corpus is inserted, rewritten and deleted."""
    options = (
        {} if sql_mode is None else {"connect_args": {"init_command": f"SET SESSION sql_mode = '{sql_mode}'"}}
    )
    engine = create_async_engine(mariadb_url, **options)
    table = session_table()
    store = PrismaSessionStore(engine, user_key="user_id")
    corpus = hostile_corpus()
    try:
        async with engine.begin() as conn:
            await conn.run_sync(table.drop, checkfirst=True)
        await store.create_table()
        expires = utcnow() + timedelta(days=1)
        async with engine.begin() as conn:
            for start in range(0, len(corpus), 500):
                batch = corpus[start : start + 500]
                rows_ = [
                    {"id": f"r{start + n}", "sid": f"r{start + n}", "data": text, "expiresAt": expires}
                    for n, text in enumerate(batch)
                ]
                await conn.execute(insert(table), rows_)
            await conn.execute(update(table).values(data=func.concat(table.c.data, " ")))
            count = (await conn.execute(select(func.count()).select_from(table))).scalar_one()
            await conn.execute(delete(table))
        assert count == len(corpus) > 10_000
    finally:
        await store.shutdown()
        async with engine.begin() as conn:
            await conn.run_sync(table.drop, checkfirst=True)
        await engine.dispose()


async def test_the_simpler_expression_fails_a_write_that_the_column_takes(mariadb_url: str) -> None:
    """What the corpus guards against: JSON_EXTRACT of a number MariaDB's JSON_VALID takes warns, and
    strict mode turns the warning into a failed INSERT."""
    engine = create_async_engine(mariadb_url)
    table = session_table()
    naive = "IF(JSON_VALID(`data`), JSON_UNQUOTE(JSON_EXTRACT(`data`, '$.user_id')), '!')"
    row = {"id": "a", "sid": "a", "data": '{"user_id":1e-}', "expiresAt": utcnow()}
    try:
        async with engine.begin() as conn:
            await conn.run_sync(table.drop, checkfirst=True)
            await conn.run_sync(table.create)
            await conn.execute(
                text(f"ALTER TABLE `Session` ADD COLUMN naive VARCHAR(191) AS ({naive}) VIRTUAL")
            )
            await conn.execute(text("CREATE INDEX naive_idx ON `Session` (naive)"))
        with pytest.raises(DBAPIError, match="Syntax error in JSON text"):
            async with engine.begin() as conn:
                await conn.execute(insert(table), row)
        async with engine.begin() as conn:
            await conn.execute(text("ALTER TABLE `Session` DROP COLUMN naive"))
        store = PrismaSessionStore(engine, user_key="user_id")
        await store.create_table()
        async with engine.begin() as conn:
            await conn.execute(insert(table), row)
        assert await store.matching(user_id=1) == {}  # Python cannot read it either
        await store.shutdown()
    finally:
        async with engine.begin() as conn:
            await conn.run_sync(table.drop, checkfirst=True)
        await engine.dispose()
