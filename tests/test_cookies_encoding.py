"""The cookie value's URL encoding matches urllib's quote with encodeURIComponent's safe set."""

from __future__ import annotations

from urllib.parse import quote

from hypothesis import given
from hypothesis import strategies as st

from fastapi_prisma_session.signing import Signer

VISIBLE_ASCII = "".join(chr(c) for c in range(0x21, 0x7F))


@given(sid=st.text(alphabet=VISIBLE_ASCII, min_size=1, max_size=255), secret=st.text(min_size=1))
def test_encoding_matches_encode_uri_component(sid: str, secret: str) -> None:
    signer = Signer([secret])
    expected = quote("s:" + signer.sign(sid), safe="-_.!~*'()")
    assert signer.cookie_value(sid) == expected
    assert signer.session_id(expected) == sid


def test_lowercase_escapes_from_other_clients_still_decode() -> None:
    signer = Signer(["k"])
    value = signer.cookie_value("abc").replace("%3A", "%3a")
    assert signer.session_id(value) == "abc"
