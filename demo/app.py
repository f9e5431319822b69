"""The demo: a visit counter with log in and log out, on SQLite unless DATABASE_URL says otherwise.

The session's data is a typed model (`TypedSession[Visit]`), and every form carries the session's CSRF
token (`csrf_token`), which the POST routes check (`CsrfDep`). A logged-in user sees their devices (the
store's `devices`: each session's browser, address and last visit) at /devices, and logs any of them out.

make demo                                   # http://127.0.0.1:8000
DATABASE_URL=postgresql://postgres@127.0.0.1/test make demo
SESSION_ENCRYPTION_KEYS=<key from fastapi_prisma_session.encryption.new_key()> make demo  # encrypted at rest
SESSION_TELEMETRY=console make demo         # the store's OpenTelemetry spans and metrics, printed
"""

from __future__ import annotations

import hashlib
import hmac
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from html import escape
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import BaseModel, Field

from fastapi_prisma_session import (
    CsrfDep,
    PrismaSessionStore,
    SessionDep,
    SessionMiddleware,
    TypedSession,
    csrf_token,
    list_devices,
    revoke_device,
    revoke_other_devices,
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


# With SESSION_ENCRYPTION_KEYS (base64 keys, newest first), the session data is encrypted at rest (the
# device records too), all but the key that finds a user's sessions through its index (user_key): an
# account id, not the user's name. With SESSION_TELEMETRY=console, what the store does is printed as
# OpenTelemetry spans and metrics.
store = PrismaSessionStore(
    DATABASE_URL,
    check_period=300,
    user_key="account",
    devices=True,
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
DEVICES_LINK = """<p><a id="devices-link" href="/devices">Your devices ({count})</a></p>"""
DEVICES_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Your devices</title>
<style>body{{font-family:system-ui,sans-serif;max-width:48rem;margin:3rem auto;line-height:1.5}}
td,th{{text-align:left;padding:.2em .8em .2em 0;vertical-align:top}}</style></head>
<body>
<h1>Your devices</h1>
<p>The browsers logged in as <strong>{user}</strong>. Log out any you do not recognise.</p>
<table id="devices"><tr><th>Browser</th><th>Address</th><th>First seen</th><th>Last seen</th><th></th></tr>
{rows}</table>
{others}
<p><a href="/">Back</a></p>
</body></html>"""
DEVICE_ROW = """<tr class="device{mine}"><td title="{agent}">{browser}</td><td>{ip}</td><td>{created}</td>
<td>{seen}</td><td>{action}</td></tr>"""
REVOKE_FORM = """<form method="post" action="/devices/revoke">{csrf}
<input type="hidden" name="handle" value="{handle}"><button>Log out</button></form>"""
OTHERS_FORM = """<form method="post" action="/devices/revoke-others">{csrf}
<button>Log out all other devices</button></form>"""
# The first name found in a User-Agent header, checked in this order (Edge and Chrome say Safari too).
BROWSERS = (("Edg/", "Edge"), ("Firefox/", "Firefox"), ("Chrome/", "Chrome"), ("Safari/", "Safari"))
SYSTEMS = (("iPhone", "iPhone"), ("Android", "Android"), ("Windows", "Windows"), ("Mac OS X", "macOS"))


def account_of(username: str) -> str:
    """The demo has no user table: an account's id is a keyed hash of its name."""
    return hmac.new(SECRET.encode(), username.encode(), hashlib.sha256).hexdigest()[:20]


def when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else "with the browser session"


def browser_name(agent: str | None) -> str:
    """A User-Agent header as a person reads it: "Firefox on Android", or "Unknown browser"."""
    if not agent:
        return "Unknown browser"
    browser = next((name for mark, name in BROWSERS if mark in agent), "A browser")
    system = next((name for mark, name in SYSTEMS if mark in agent), "Linux" if "Linux" in agent else "")
    return f"{browser} on {system}" if system else browser


@app.get("/", response_class=HTMLResponse)
async def index(request: Request, visit: TypedSession[Visit], session: SessionDep, token: CsrfToken) -> str:
    visit.visits += 1  # saved when the route returns
    user = visit.user
    csrf = CSRF_FIELD.format(token=escape(token))
    others = DEVICES_LINK.format(count=len(await list_devices(request))) if user else ""
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
    # A demo: there are no passwords, and anyone who types a name is that account, its devices included.
    # A new id on login: a session id planted before login is worthless after it.
    await session.regenerate(keep_data=True)
    session["user"] = username
    session["account"] = account_of(username)
    return RedirectResponse("/", status_code=303)


@app.post("/logout")
async def logout(_: CsrfDep, session: SessionDep) -> RedirectResponse:
    await session.destroy()
    return RedirectResponse("/", status_code=303)


@app.get("/devices", response_class=HTMLResponse, response_model=None)
async def devices(request: Request, session: SessionDep, token: CsrfToken) -> str | RedirectResponse:
    user = session.get("user")
    if not user:
        return RedirectResponse("/", status_code=303)
    csrf = CSRF_FIELD.format(token=escape(token))
    mine = await list_devices(request)
    rows = "".join(
        DEVICE_ROW.format(
            mine=" this-device" if device.current else "",
            agent=escape(device.user_agent or ""),
            browser=escape(browser_name(device.user_agent)),
            ip=escape(device.ip or "unknown"),
            created=when(device.created) if device.created else "unknown",
            seen=when(device.last_seen) if device.last_seen else "unknown",
            action="<strong>This device</strong>"
            if device.current
            else REVOKE_FORM.format(csrf=csrf, handle=escape(device.handle)),
        )
        for device in mine
    )
    others = OTHERS_FORM.format(csrf=csrf) if len(mine) > 1 else ""
    return DEVICES_PAGE.format(user=escape(user), rows=rows, others=others)


@app.post("/devices/revoke")
async def revoke(_: CsrfDep, request: Request, handle: str = Form(max_length=200)) -> RedirectResponse:
    # Only this user's sessions can be named: revoke_device looks among them, by their handles.
    await revoke_device(request, handle)
    return RedirectResponse("/devices", status_code=303)


@app.post("/devices/revoke-others")
async def revoke_others(_: CsrfDep, request: Request) -> RedirectResponse:
    await revoke_other_devices(request)
    return RedirectResponse("/devices", status_code=303)
