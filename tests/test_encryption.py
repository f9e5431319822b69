"""Encryption at rest (`encryption_keys`, issue 27 item 2) on SQLite, PostgreSQL and MariaDB: sealed rows
hide every session value, keep the cookie and the user key readable, rotate keys, load rows written
before, and start afresh (with one warning) on a row no key opens."""

from __future__ import annotations

import base64
import json
import logging
import sys
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from fastapi_prisma_session import PrismaSessionStore, SessionDep
from fastapi_prisma_session.encryption import ENVELOPE_KEY, key_id, keys_from_environment, new_key
from fastapi_prisma_session.exceptions import ConfigurationError, SessionDataError
from tests.helpers import client_for, insert_row, make_app, rows, set_data

MakeStore = Callable[..., PrismaSessionStore]
# Fixed keys: xdist's workers must collect the same parameters.
OLD, NEW = (base64.urlsafe_b64encode(bytes(range(i, i + 32))).decode() for i in (0, 100))
SECRET_VALUE = "card-4111-1111-1111-1111"
COOKIE = {"originalMaxAge": 3_600_000, "expires": None, "httpOnly": True, "path": "/"}


def kid_of(text: str) -> str | None:
    token = json.loads(text).get(ENVELOPE_KEY)
    return None if token is None else token.split(".")[1]


async def test_an_encrypted_row_holds_no_session_value_in_plain_text(
    make_store: MakeStore, engine: AsyncEngine
) -> None:
    store = make_store(encryption_keys=[NEW], user_key="user_id")
    await store.create_table()
    app = make_app(store)
    async with client_for(app) as client:
        for _ in range(3):
            assert (await client.post("/increment")).status_code == 200
        response = await client.post("/write", params={"key": "card", "value": SECRET_VALUE})
        assert response.status_code == 200
        assert (await client.get("/dump")).json() == {"n": 3, "card": SECRET_VALUE}
    await store.set("u1", {"cookie": COOKIE, "user_id": 7, "email": "ann@example.com", "été": "çà"})
    stored = await rows(engine)
    assert len(stored) == 2
    for row in stored.values():
        text = row["data"]
        for plain in (SECRET_VALUE, "card", '"n"', "ann@example", "email", "été", "\\u00e9t\\u00e9"):
            assert plain not in text, text
        data = json.loads(text)
        assert data["cookie"]["originalMaxAge"] == 3_600_000 or data["cookie"]["httpOnly"] is True
        assert kid_of(text) == key_id(base64.urlsafe_b64decode(NEW))
    assert json.loads(stored["u1"]["data"])["user_id"] == 7  # the user key stays readable
    assert set(json.loads(stored["u1"]["data"])) == {"cookie", "user_id", ENVELOPE_KEY}
    assert await store.get("u1") == {"cookie": COOKIE, "user_id": 7, "email": "ann@example.com", "été": "çà"}


async def test_rows_written_before_encryption_load_and_are_sealed_on_their_next_write(
    make_store: MakeStore, engine: AsyncEngine
) -> None:
    plain = make_store()
    await plain.create_table()
    await plain.set("old", {"cookie": COOKIE, "cart": ["apple"]})
    assert '"cart":["apple"]' in (await rows(engine))["old"]["data"]
    store = make_store(encryption_keys=[NEW])
    assert await store.get("old") == {"cookie": COOKIE, "cart": ["apple"]}
    async with client_for(make_app(store)) as client:
        assert (await client.post("/increment")).json() == {"n": 1}
    sid = next(s for s in await store.ids() if s != "old")
    assert kid_of((await rows(engine))[sid]["data"]) is not None
    await store.set("old", {"cookie": COOKIE, "cart": ["apple", "pear"]})
    text = (await rows(engine))["old"]["data"]
    assert "apple" not in text
    assert await store.get("old") == {"cookie": COOKIE, "cart": ["apple", "pear"]}


async def test_rotation_reads_older_keys_and_seals_with_the_newest(
    make_store: MakeStore, engine: AsyncEngine
) -> None:
    old_store = make_store(encryption_keys=[OLD])
    await old_store.create_table()
    await old_store.set("s", {"cookie": COOKIE, "n": 1})
    assert kid_of((await rows(engine))["s"]["data"]) == key_id(base64.urlsafe_b64decode(OLD))
    rotated = make_store(encryption_keys=[NEW, OLD])
    stored = await rotated.load("s")
    assert stored is not None
    assert stored.data == {"cookie": COOKIE, "n": 1}
    # The middleware's write back of a changed key (compare-and-set on the loaded text) re-seals it.
    assert await rotated.sessions.update("s", {**stored.data, "n": 2}, changed={"n"}, expected=stored.text)
    assert kid_of((await rows(engine))["s"]["data"]) == key_id(base64.urlsafe_b64decode(NEW))
    assert await make_store(encryption_keys=[NEW]).get("s") == {"cookie": COOKIE, "n": 2}


async def test_a_merge_after_a_concurrent_write_decrypts_and_keeps_both_changes(
    make_store: MakeStore,
) -> None:
    store = make_store(encryption_keys=[NEW])
    await store.create_table()
    await store.set("s", {"cookie": COOKIE, "a": 1})
    first = await store.load("s")
    assert first is not None
    await store.set("s", {"cookie": COOKIE, "a": 1, "b": 2})  # another request, meanwhile
    assert await store.sessions.update("s", {**first.data, "c": 3}, changed={"c"}, expected=first.text)
    assert await store.get("s") == {"cookie": COOKIE, "a": 1, "b": 2, "c": 3}
    assert await store.touch("s", {"cookie": {**COOKIE, "originalMaxAge": 60_000}})
    assert (await store.get("s") or {})["b"] == 2


async def test_regenerate_keeping_the_data_moves_an_encrypted_session(make_store: MakeStore) -> None:
    store = make_store(encryption_keys=[NEW])
    await store.create_table()
    async with client_for(make_app(store)) as client:
        await client.post("/write", params={"value": SECRET_VALUE})
        moved = (await client.post("/login-keep")).json()
        assert moved["data"] == {"value": SECRET_VALUE}
        assert (await client.get("/dump")).json() == {"value": SECRET_VALUE}
    assert await store.get(moved["new"]) is not None
    assert await store.get(moved["old"]) is None


@pytest.mark.parametrize("damage", ["unknown key", "tampered", "broken token", "no keys"])
async def test_a_row_no_key_opens_is_a_fresh_session_and_one_warning(
    make_store: MakeStore, engine: AsyncEngine, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    store = make_store(encryption_keys=[NEW], logger_level="warn")
    await store.create_table()
    async with client_for(make_app(store)) as client:
        await client.post("/write", params={"value": SECRET_VALUE})
        sid = (await store.ids())[0]
        text = (await rows(engine))[sid]["data"]
        data = json.loads(text)
        token: str = data[ENVELOPE_KEY]
        if damage == "unknown key":
            reader = make_store(encryption_keys=[OLD], logger_level="warn")
        elif damage == "no keys":
            reader = make_store(logger_level="warn")
        else:
            reader = store
            body = token.split(".")[2]
            flipped = body[:20] + ("A" if body[20] != "A" else "B") + body[21:]
            data[ENVELOPE_KEY] = token.replace(body, flipped) if damage == "tampered" else "v1.x"
            await set_data(engine, sid, json.dumps(data))
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="fastapi_prisma_session"):
            app = make_app(reader)
            async with client_for(app) as other:
                other.cookies = client.cookies
                response = await other.get("/dump")
        assert response.status_code == 200
        assert response.json() == {}
        warnings = [r for r in caplog.records if r.name == "fastapi_prisma_session"]
        assert len(warnings) == 1, caplog.text
        assert "encrypted" in warnings[0].getMessage() or "decrypted" in warnings[0].getMessage()
        assert SECRET_VALUE not in caplog.text


async def test_readable_keys_written_beside_the_envelope_are_not_the_sessions(
    make_store: MakeStore, engine: AsyncEngine
) -> None:
    """Whoever can write to the table cannot change whose session it is, nor add values to it."""
    store = make_store(encryption_keys=[NEW], user_key="user_id")
    await store.create_table()
    await store.set("s", {"cookie": COOKIE, "user_id": 9, "role": "user"})
    data = json.loads((await rows(engine))["s"]["data"])
    data.update({"user_id": 1, "is_admin": True, "role": "admin"})
    await set_data(engine, "s", json.dumps(data))
    assert await store.get("s") == {"cookie": COOKIE, "user_id": 9, "role": "user"}


async def test_log_out_everywhere_finds_a_users_encrypted_sessions(
    make_store: MakeStore, engine: AsyncEngine
) -> None:
    indexed = make_store(encryption_keys=[NEW], user_key="user_id")
    await indexed.create_table()
    for sid, user, role in (("a", 7, "admin"), ("b", 7, "staff"), ("c", 8, "admin")):
        await indexed.set(sid, {"cookie": COOKIE, "user_id": user, "role": role})
    await insert_row(engine, "legacy", {"cookie": COOKIE, "user_id": 7, "role": "staff"})  # pre-encryption
    assert "admin" not in str(await rows(engine))
    assert sorted(await indexed.matching(user_id=7)) == ["a", "b", "legacy"]
    # A key inside the sealed data: matched in Python, after decrypting.
    unindexed = make_store(encryption_keys=[NEW])
    assert sorted(await unindexed.matching(role="admin")) == ["a", "c"]
    assert await unindexed.destroy_all(role="staff", user_id=7) == 2
    assert await indexed.destroy_all(user_id=7) == 1
    assert sorted(await indexed.ids()) == ["c"]


async def test_the_reserved_key_is_refused(make_store: MakeStore) -> None:
    store = make_store(encryption_keys=[NEW])
    await store.create_table()
    with pytest.raises(SessionDataError, match=ENVELOPE_KEY):
        await store.set("s", {"cookie": COOKIE, ENVELOPE_KEY: "mine"})
    with pytest.raises(SessionDataError, match=ENVELOPE_KEY):
        await make_store().set("s", {"cookie": COOKIE, ENVELOPE_KEY: "mine"})
    app = make_app(store)

    @app.post("/reserved")
    async def reserved(session: SessionDep) -> dict[str, str]:
        try:
            session[ENVELOPE_KEY] = "mine"
        except KeyError as error:
            return {"refused": str(error)}
        return {"refused": ""}

    async with client_for(app) as client:
        assert "reserved for the store" in (await client.post("/reserved")).json()["refused"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ([], "non-empty list"),
        (NEW, "non-empty list"),
        ([b"short"], "must be 32 bytes"),
        (["not base64!"], "urlsafe base64"),
        ([base64.urlsafe_b64encode(b"x" * 16).decode()], "got 16"),
        ([NEW, NEW], "twice"),
        ([42], "got int"),
    ],
)
def test_bad_keys_are_refused_clearly(keys: Any, message: str, database_url: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        PrismaSessionStore(database_url, encryption_keys=keys)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_keys_are_given_as_bytes_or_text_and_never_shown(database_url: str) -> None:
    raw = base64.urlsafe_b64decode(NEW)
    store = PrismaSessionStore(database_url, encryption_keys=[raw, OLD.rstrip("=")])
    assert store.rows.encryption is not None
    assert store.rows.encryption.current == key_id(raw)
    assert NEW not in repr(store._options)
    assert OLD.rstrip("=") not in repr(store.rows.encryption)
    with pytest.raises(ConfigurationError, match="JSON serializer"):
        PrismaSessionStore(database_url, encryption_keys=[NEW], serializer=json_like())
    assert keys_from_environment("K", {"K": f" {NEW} , {OLD},"}) == [NEW, OLD]
    assert keys_from_environment("K", {}) == []
    assert len(base64.urlsafe_b64decode(new_key())) == 32


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_without_the_cryptography_package_the_option_says_what_to_install(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "cryptography.hazmat.primitives.ciphers.aead", None)
    with pytest.raises(ConfigurationError, match=r"fastapi-prisma-session\[encryption\]"):
        PrismaSessionStore(database_url, encryption_keys=[NEW])
    PrismaSessionStore(database_url)  # without the option, the package is not needed


class json_like:
    def dumps(self, obj: Any) -> str:
        return json.dumps(obj)

    def loads(self, text: str) -> Any:
        return json.loads(text)
