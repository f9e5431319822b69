"""The request path's shortcuts answer as the general code does: the JSON reader and the clock."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import pytest

from fastapi_prisma_session.durations import utcnow
from fastapi_prisma_session.serializers import JSONSerializer


@pytest.mark.parametrize(
    "text",
    [
        '{"cookie":{"originalMaxAge":1000,"expires":"2030-01-01T00:00:00.000Z"},"n":1}',
        ' {"a": 1}',  # leading space: json.loads takes it
        '{"a": 1}\n',  # trailing space too
        '{"a": "\\ud800"}',  # a lone surrogate, as JSON.stringify escapes it
        '{"big": 123456789012345678901234567890}',
        "[1, 2]",
        '"text"',
        "null",
    ],
)
def test_the_json_reader_reads_what_json_loads_reads(text: str) -> None:
    assert JSONSerializer().loads(text) == json.loads(text)


def test_the_json_reader_keeps_json_loads_extensions() -> None:
    value = JSONSerializer().loads('{"x": NaN}')["x"]
    assert math.isnan(value)


@pytest.mark.parametrize("text", ['{"a": 1} {"b": 2}', '{"a": 1', "", "   ", "\ufeff{}", '{"a": 1}x'])
def test_the_json_reader_refuses_what_json_loads_refuses(text: str) -> None:
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)
    with pytest.raises(json.JSONDecodeError):
        JSONSerializer().loads(text)


def test_utcnow_is_naive_utc_now() -> None:
    before = datetime.now(UTC).replace(tzinfo=None)
    now = utcnow()
    after = datetime.now(UTC).replace(tzinfo=None)
    assert now.tzinfo is None
    assert before <= now <= after
    assert after - before < timedelta(seconds=1)
