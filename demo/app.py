"""The demo: a visit counter with log in and log out, on SQLite unless DATABASE_URL says otherwise.

The session's data is a typed model (`TypedSession[Visit]`), and every form carries the session's CSRF
token (`csrf_token`), which the POST routes check (`CsrfDep`).

make demo                                   # http://127.0.0.1:8000
DATABASE_URL=postgresql://postgres@127.0.0.1/test make demo
SESSION_ENCRYPTION_KEYS=<key from fastapi_prisma_session.encryption.new_key()> make demo  # encrypted at rest
SESSION_TELEMETRY=console make demo         # the store's OpenTelemetry spans and metrics, printed
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from html import escape
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, FastAPI, Form
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import BaseModel, Field

from fastapi_prisma_session import (
    CsrfDep,
    PrismaSessionStore,
    SessionDep,
    SessionMiddleware,
    TypedSession,
    csrf_token,
)
from fastapi_prisma_session.encryption import keys_from_environment

if TYPE_CHECKING:
    from fastapi_prisma_session.telemetry import Telemetry

DATABASE_URL = os.environ.get("DATABASE_URL", "sqlite:///demo.db")
SECRET = os.environ.get("SESSION_SECRET", "the demo secret: set SESSION_SECRET to your own")


def console_telemetry() -> Telemetry:
    """The store's spans printed as each ends, its metrics every minute and as the process exits. An app
    of yours would export them instead (OTLP, through the global providers: `telemetry=True`)."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, PeriodicExportingMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

    from fastapi_prisma_session.telemetry import Telemetry

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(out=sys.stdout)))
    reader = PeriodicExportingMetricReader(
        ConsoleMetricExporter(out=sys.stdout), export_interval_millis=60_000
    )
    return Telemetry(tracer_provider, MeterProvider([reader]))


# With SESSION_ENCRYPTION_KEYS (base64 keys, newest first), the session data is encrypted at rest; with
# SESSION_TELEMETRY=console, what the store does is printed as OpenTelemetry spans and metrics.
store = PrismaSessionStore(
    DATABASE_URL,
    check_period=300,
    encryption_keys=keys_from_environment("SESSION_ENCRYPTION_KEYS") or None,
    telemetry=console_telemetry() if os.environ.get("SESSION_TELEMETRY") == "console" else False,
)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # A demo convenience: production databases get the table from `alembic upgrade head`.
    await store.create_table()
    yield


class Visit(BaseModel):
    """What the demo keeps in a session, checked on load: a row that does not fit starts afresh."""

    visits: int = Field(default=0, ge=0)
    user: str | None = Field(default=None, max_length=64)


CsrfToken = Annotated[str, Depends(csrf_token)]

app = FastAPI(title="fastapi_prisma_session demo", lifespan=lifespan)
app.add_middleware(SessionMiddleware, store=store, secret=SECRET, max_age=7 * 24 * 3600)

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Session demo</title>
<style>body{{font-family:system-ui,sans-serif;max-width:36rem;margin:3rem auto;line-height:1.5}}
code{{background:#f3f3f3;padding:0 .3em}}</style></head>
<body>
<h1>Session demo</h1>
<p id="visits">Visits in this session: <strong>{visits}</strong></p>
<p id="user">{who}</p>
<p id="session">Session <code>{sid}…</code>, expires <code>{expires}</code></p>
{form}
{others}
</body></html>"""

CSRF_FIELD = """<input type="hidden" name="csrf_token" value="{token}">"""
LOGIN_FORM = """<form method="post" action="/login">{csrf}
<label>Name <input name="username" required></label> <button>Log in</button></form>"""
LOGOUT_FORM = """<form method="post" action="/logout">{csrf}<button>Log out</button></form>"""
OTHERS = """<h2>Your other sessions</h2>
<ul id="others">{items}</ul>
<form method="post" action="/logout-others">{csrf}<button>Log out the other sessions</button></form>"""


def when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else "with the browser session"


@app.get("/", response_class=HTMLResponse)
async def index(visit: TypedSession[Visit], session: SessionDep, token: CsrfToken) -> str:
    visit.visits += 1  # saved when the route returns
    user = visit.user
    csrf = CSRF_FIELD.format(token=escape(token))
    others = ""
    if user:
        mine = await store.matching(user=user)
        items = "".join(
            f"<li><code>{escape(sid[:8])}…</code>, expires <code>{when(row.expires_at)}</code></li>"
            for sid, row in mine.items()
            if sid != session.id
        )
        others = OTHERS.format(items=items or "<li>none</li>", csrf=csrf)
    return PAGE.format(
        visits=visit.visits,
        who=f"Logged in as <strong>{escape(user)}</strong>" if user else "Not logged in",
        sid=escape(session.id[:8]),
        expires=when(session.cookie.expires),
        form=(LOGOUT_FORM if user else LOGIN_FORM).format(csrf=csrf),
        others=others,
    )


@app.post("/login")
async def login(_: CsrfDep, session: SessionDep, username: str = Form(max_length=64)) -> RedirectResponse:
    # A new id on login: a session id planted before login is worthless after it.
    await session.regenerate(keep_data=True)
    session["user"] = username
    return RedirectResponse("/", status_code=303)


@app.post("/logout")
async def logout(_: CsrfDep, session: SessionDep) -> RedirectResponse:
    await session.destroy()
    return RedirectResponse("/", status_code=303)


@app.post("/logout-others")
async def logout_others(_: CsrfDep, session: SessionDep) -> RedirectResponse:
    # "Log out everywhere else": every session of this user but the current one.
    user = session.get("user")
    if user:
        await store.destroy([sid for sid in await store.matching(user=user) if sid != session.id])
    return RedirectResponse("/", status_code=303)
