"""A Signer remembers the cookie values and Cookie headers it verified: the same answers as checking them
again, and a forged or moved value is never taken for a remembered one."""

from __future__ import annotations

import hmac
from typing import Any

import pytest

from fastapi_prisma_session import signing
from fastapi_prisma_session.signing import Signer

NAME = "connect.sid"


def header(*values: str) -> bytes:
    return "; ".join(values).encode("latin-1")


def counting_hmacs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = hmac.compare_digest

    def counting(a: Any, b: Any) -> bool:
        calls.append(1)
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting)
    return calls


def test_a_verified_value_is_not_verified_again(monkeypatch: pytest.MonkeyPatch) -> None:
    signer = Signer(["k" * 32])
    value = signer.cookie_value("sid-1")
    calls = counting_hmacs(monkeypatch)
    assert signer.session_id(value) == "sid-1"
    assert signer.session_id(value) == "sid-1"
    assert len(calls) == 1


def test_a_tampered_copy_of_a_verified_value_is_still_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    signer = Signer(["k" * 32])
    value = signer.cookie_value("sid-1")
    assert signer.session_id(value) == "sid-1"
    calls = counting_hmacs(monkeypatch)
    tampered = value[:-1] + ("A" if value[-1] != "A" else "B")
    other_sid = value.replace("sid-1", "sid-2")
    for forged in (tampered, other_sid, value + "x"):
        assert signer.session_id(forged) is None
    assert len(calls) == 3  # each one checked in full, and remembered by none
    assert signer.session_id(tampered) is None
    assert len(calls) == 4


def test_a_remembered_header_answers_as_a_full_parse_would() -> None:
    signer = Signer(["k" * 32])
    one, two = signer.cookie_value("one"), signer.cookie_value("two")
    first = header("theme=dark", f"{NAME}={one}", f"{NAME}={two}")
    for _ in range(2):  # parsed, then remembered
        assert signer.find_session_id([(b"cookie", first)], NAME) == ("one", 0)
    # Under another cookie name the same header names no session.
    assert signer.find_session_id([(b"cookie", first)], "other.sid") == (None, 0)


def test_a_header_with_a_rejected_value_first_is_not_remembered() -> None:
    signer = Signer(["k" * 32])
    good = signer.cookie_value("good")
    forged = Signer(["another secret"]).cookie_value("evil")
    mixed = header(f"{NAME}={forged}", f"{NAME}={good}")
    for _ in range(2):
        assert signer.find_session_id([(b"cookie", mixed)], NAME) == ("good", 1)  # the rejection counted
    assert mixed not in signer._headers.get(NAME, {})


def test_a_sid_found_in_a_later_header_is_not_given_to_the_first() -> None:
    signer = Signer(["k" * 32])
    good = signer.cookie_value("good")
    headers = [(b"cookie", header("theme=dark")), (b"cookie", header(f"{NAME}={good}"))]
    assert signer.find_session_id(headers, NAME) == ("good", 0)
    # A request with only the first of those headers carries no session.
    assert signer.find_session_id(headers[:1], NAME) == (None, 0)
    # The header that held it is remembered as what it is.
    assert signer.find_session_id(headers[1:], NAME) == ("good", 0)


def test_what_is_remembered_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(signing, "VERIFIED_LIMIT", 8)
    signer = Signer(["k" * 32])
    for number in range(50):
        value = signer.cookie_value(f"sid-{number}")
        assert signer.find_session_id([(b"cookie", header(f"{NAME}={value}"))], NAME) == (f"sid-{number}", 0)
        assert len(signer._verified) <= 8
        assert all(len(known) <= 8 for known in signer._headers.values())
    long_header = header("x=" + "y" * signing.MAX_REMEMBERED_HEADER, f"{NAME}={signer.cookie_value('long')}")
    assert signer.find_session_id([(b"cookie", long_header)], NAME) == ("long", 0)
    assert long_header not in signer._headers[NAME]
