"""The Node serializer of docs/encryption.md in the real Node system (express-session +
prisma-session-store, tests/interop/recorder/read.mjs), on SQLite, PostgreSQL and MariaDB: Node opens
the rows Python sealed (with an older key, and a row written before encryption), seals them again with
the newest key, and Python opens what Node wrote."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from fastapi_prisma_session import PrismaSessionStore
from fastapi_prisma_session.encryption import ENVELOPE_KEY, key_id
from tests.helpers import DOCS, client_for, doc_blocks, make_app, rows
from tests.node_recorder import read_sessions, reader_database, recordings, require_node
from tests.test_interop_node import node_options

MakeStore = Callable[..., PrismaSessionStore]
OLD, NEW = (base64.urlsafe_b64encode(bytes(range(i, i + 32))).decode() for i in (0, 100))
SECRET_VALUE = "card-4111-1111"


def node_serializer(folder: Path) -> Path:
    """The page's Node serializer (its first js block), as a module file."""
    code = next(code for language, code in doc_blocks(DOCS / "encryption.md") if language == "js")
    path = folder / "session-serializer.mjs"
    path.write_text(code)
    return path


def kid(key: str) -> str:
    return key_id(base64.urlsafe_b64decode(key))


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql", "mariadb"], indirect=True)
async def test_node_and_python_share_encrypted_rows(
    database_url: str, engine: AsyncEngine, make_store: MakeStore, tmp_path: Path
) -> None:
    require_node()
    options = node_options(next(iter(recordings(reader_database(database_url)).values())))
    old = make_store(encryption_keys=[OLD], user_key="user_id")
    await old.create_table()
    plain = make_store()
    cookies = []
    for store in (old, plain):  # one row sealed with the older key, one written before encryption
        async with client_for(make_app(store, **options)) as client:
            for _ in range(2):
                assert (await client.post("/increment")).status_code == 200
            await client.post("/write", params={"key": "card", "value": SECRET_VALUE})
            await client.post("/write", params={"key": "user_id", "value": "u7"})
            cookies.append(f"{options['cookie_name']}={client.cookies[options['cookie_name']]}")
    before = await rows(engine)
    sealed = [row["data"] for row in before.values() if ENVELOPE_KEY in row["data"]]
    assert len(sealed) == 1
    assert SECRET_VALUE not in sealed[0]

    status, found = read_sessions(
        database_url,
        cookies,
        "--increment",
        "--serializer",
        str(node_serializer(tmp_path)),
        "--plain",
        "user_id",
        env={"SESSION_ENCRYPTION_KEYS": f"{NEW},{OLD}"},
    )
    assert status == 0, found
    for node in found:
        assert node["row_error"] is None
        assert node["data"] == {"n": 2, "card": SECRET_VALUE, "user_id": "u7"}
        assert node["data_after_request"] == {"n": 3, "card": SECRET_VALUE, "user_id": "u7"}

    # Node sealed both rows with the newest key, the user key and the cookie left readable.
    after = await rows(engine)
    assert set(after) == set(before)
    for row in after.values():
        data = json.loads(row["data"])
        assert set(data) == {"cookie", "user_id", ENVELOPE_KEY}
        assert data["user_id"] == "u7"
        assert data[ENVELOPE_KEY].startswith(f"v1.{kid(NEW)}.")
        assert SECRET_VALUE not in row["data"]
        assert '"n"' not in row["data"]
    # Python opens them with the newest key alone, and finds the user's sessions through the index.
    newest = make_store(encryption_keys=[NEW], user_key="user_id")
    async with client_for(make_app(newest, **options)) as client:
        for cookie in cookies:
            response = await client.get("/dump", headers={"cookie": cookie})
            assert response.json() == {"n": 3, "card": SECRET_VALUE, "user_id": "u7"}
    assert sorted(await newest.matching(user_id="u7")) == sorted(after)
    assert await newest.destroy_all(user_id="u7") == 2
