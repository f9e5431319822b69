"""`destroy_all` and `matching` on the `user_key` with a value the index cannot hold: a string with a NUL
(which SQLite's json_extract cuts short and jsonb refuses) or a lone surrogate (which jsonb refuses). A
session can hold either: the JSON serializer writes them as the escapes `\\u0000` and `\\ud800`. The
answers are those of a store without the index: the sessions holding exactly that value, found and
deleted, and no error."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from fastapi_prisma_session import PrismaSessionStore
from fastapi_prisma_session.durations import utcnow
from fastapi_prisma_session.serializers import JSONSerializer
from tests.helpers import insert_row, rows

MakeStore = Callable[..., PrismaSessionStore]
COOKIE = {"originalMaxAge": None, "expires": None}
# Beside the session holding the value: what a NUL may be cut to, another user, and another value that
# no index can hold either.
NEIGHBOURS = {"prefix": "a", "other": "b", "other_nul": "c\x00", "other_surrogate": "\udfff"}


@pytest.mark.parametrize("value", ["a\x00b", "\ud800"], ids=["nul", "lone surrogate"])
async def test_a_value_the_index_cannot_hold_is_found_and_deleted_as_without_the_index(
    make_store: MakeStore, engine: AsyncEngine, value: str
) -> None:
    """With `user_key="user_id"` (its index made by `create_table()`), `matching(user_id=value)` finds
    exactly the live session holding `value`, and `destroy_all(user_id=value)` deletes it and the
    expired one holding it, and only those, counting 2: no raw database error (a 500), no other session
    taken for it, none missed."""
    plain = make_store()
    store = make_store(user_key="user_id")
    await store.create_table()
    for sid, held in {"holder": value, **NEIGHBOURS}.items():
        await store.set(sid, {"cookie": COOKIE, "user_id": held})
    # An expired session holding it too: matching() leaves it out, destroy_all() deletes it.
    text = JSONSerializer().dumps({"cookie": COOKIE, "user_id": value})
    await insert_row(engine, "expired", text, utcnow() - timedelta(hours=1))
    assert set(await plain.matching(user_id=value)) == {"holder"}  # what the answer is without the index

    found = await store.matching(user_id=value)
    assert set(found) == {"holder"}
    assert found["holder"].data["user_id"] == value
    assert set(await store.matching(user_id=value, cookie=COOKIE)) == {"holder"}
    assert await store.destroy_all(user_id=value) == 2
    assert set(await rows(engine)) == set(NEIGHBOURS)
    assert await store.destroy_all(user_id=value) == 0
    assert await store.matching(user_id=value) == {}
