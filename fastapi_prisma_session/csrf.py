"""Session-bound CSRF tokens: `csrf_token` for a page's forms, `require_csrf` (`CsrfDep`) on unsafe methods.

OWASP's CSRF Prevention Cheat Sheet, its synchronizer token with the HMAC of its "signed double-submit
cookie": each session keeps a random secret (`csrfSecret`, server-side, as csurf names it), and a token
is the HMAC, keyed by the middleware's secret, of the session id and that secret. A token is good for one
session only: `regenerate` (a new id) and `destroy` make every earlier token worthless. The check is
constant time, and it accepts a token signed with any of the middleware's secrets (their rotation).
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection, Request

from .dependencies import load_session
from .signing import Signer

if TYPE_CHECKING:
    from .session import Session

__all__ = ["CSRF_FIELD", "CSRF_HEADER", "CSRF_KEY", "CsrfDep", "csrf_token", "require_csrf"]

#: The session key of the per-session random secret (csurf's name for it).
CSRF_KEY = "csrfSecret"
#: Where `require_csrf` looks for the token: this header first, then this form field.
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
# RFC 9110's safe methods: they must not change anything, so they are not checked.
SAFE_METHODS = frozenset(("GET", "HEAD", "OPTIONS", "TRACE"))
FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")
# A token is 43 base64 characters; anything much longer is not one and is not worth an HMAC.
MAX_TOKEN_LENGTH = 200
MISSING = f"CSRF token missing: send it in the {CSRF_HEADER} header or the {CSRF_FIELD} form field"
INVALID = "CSRF token invalid: it is not this session's (reload the page for a new one)"


def _signer(session: Session) -> Signer:
    # The middleware's signer, held by its lifecycle (the session's backend): the same secrets sign the
    # cookie and the tokens.
    signer = getattr(session._backend, "signer", None)
    if not isinstance(signer, Signer):
        raise RuntimeError("CSRF tokens need the session of fastapi_prisma_session's SessionMiddleware")
    return signer


# Tokens are sent in base64url, which forms and URLs carry as they are ("+" in a form body reads as a
# space); the signer's signatures are standard base64.
_TO_URLSAFE = str.maketrans("+/", "-_")
_FROM_URLSAFE = str.maketrans("-_", "+/")


def _message(sid: str, secret: str) -> str:
    # OWASP's message: the id's length first, so that no (id, secret) pair reads as another.
    return f"{len(sid)}!{sid}!{secret}"


async def csrf_token(connection: HTTPConnection) -> str:
    """The CSRF token of the request's session, for a form's hidden `csrf_token` field or the
    `X-CSRF-Token` header. The first call of a session gives it its random secret (and so saves it)."""
    session = await load_session(connection)
    secret = session.get(CSRF_KEY)
    if not isinstance(secret, str):
        secret = session[CSRF_KEY] = secrets.token_urlsafe(32)
    return _signer(session).signature(_message(session.id, secret)).translate(_TO_URLSAFE)


async def _given_token(request: Request) -> str | None:
    token = request.headers.get(CSRF_HEADER)
    if token is None and request.headers.get("content-type", "").startswith(FORMS):
        value = (await request.form()).get(CSRF_FIELD)  # cached: the route's own Form fields read it again
        token = value if isinstance(value, str) else None
    return token


async def require_csrf(request: Request) -> None:
    """Refuse (403) an unsafe request (POST, PUT, PATCH, DELETE, …) without the token of its session in
    the `X-CSRF-Token` header or the `csrf_token` form field. Safe methods pass unchecked."""
    if request.method in SAFE_METHODS:
        return
    given = await _given_token(request)
    if not given:
        raise HTTPException(403, MISSING)
    session = await load_session(request)
    secret = session.get(CSRF_KEY)
    if session.is_new or not isinstance(secret, str) or len(given) > MAX_TOKEN_LENGTH or "." in given:
        raise HTTPException(403, INVALID)
    message = _message(session.id, secret)
    # unsign compares with hmac.compare_digest, against the signature of each of the secrets.
    if _signer(session).unsign(f"{message}.{given.translate(_FROM_URLSAFE)}") != message:
        raise HTTPException(403, INVALID)


#: FastAPI's dependency for `require_csrf`, on a route (`_: CsrfDep`) or a router
#: (`dependencies=[Depends(require_csrf)]`).
CsrfDep = Annotated[None, Depends(require_csrf)]
