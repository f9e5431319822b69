"""The test app: one tiny route per behaviour."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from fastapi_prisma_session import PrismaSessionStore, SessionDep, SessionMiddleware, SessionNotFoundError


def build_app(store: PrismaSessionStore, **options: Any) -> FastAPI:
    app = FastAPI()
    app.add_middleware(SessionMiddleware, store=store, **options)
    app.state.gate = None  # an asyncio.Event that /slow-write waits on
    app.state.store = store

    @app.get("/noop")
    async def noop() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/read")
    async def read(session: SessionDep) -> dict[str, Any]:
        return {"value": session.get("value"), "keys": sorted(session)}

    @app.post("/write")
    @app.put("/write")
    async def write(session: SessionDep, value: str = "x", key: str = "value") -> dict[str, str]:
        session[key] = value
        return {"id": session.id}

    @app.post("/slow-write")
    async def slow_write(request: Request, session: SessionDep, value: str = "late") -> dict[str, str]:
        await request.app.state.gate.wait()
        session["value"] = value
        return {"id": session.id}

    @app.delete("/session")
    async def destroy(session: SessionDep) -> dict[str, bool]:
        await session.destroy()
        return {"ok": True}

    @app.post("/login")
    async def login(session: SessionDep, user: str = "alice") -> dict[str, str]:
        await session.regenerate()
        session["user"] = user
        return {"id": session.id}

    @app.get("/same")
    async def same(request: Request, session: SessionDep) -> dict[str, bool]:
        return {"same": request.state.session is request.session is session}

    @app.post("/unset")
    async def unset(request: Request) -> dict[str, bool]:
        request.scope.pop("session")
        return {"ok": True}

    @app.post("/max-age")
    async def max_age(session: SessionDep, seconds: float) -> dict[str, bool]:
        session.cookie.max_age = seconds
        return {"ok": True}

    @app.post("/touch")
    async def touch(session: SessionDep) -> dict[str, bool]:
        session.touch()
        return {"ok": True}

    @app.post("/save-now")
    async def save_now(session: SessionDep) -> dict[str, bool]:
        session["value"] = "saved"
        await session.save()
        await session.reload()
        return {"modified": session.modified}

    @app.post("/nested")
    async def nested(session: SessionDep) -> dict[str, Any]:
        cart = session.setdefault("cart", [])
        cart.append(len(cart))
        session["cart"] = cart
        return {"cart": cart}

    add_dump_route(app)
    return app


def add_dump_route(app: FastAPI) -> None:
    @app.post("/login-keep")
    async def login_keep(session: SessionDep) -> dict[str, Any]:
        old = session.id
        await session.regenerate(keep_data=True)
        return {"old": old, "new": session.id, "data": dict(session)}

    @app.post("/reload-gone")
    async def reload_gone(request: Request, session: SessionDep) -> dict[str, str]:
        await request.app.state.store.destroy(session.id)  # another request logged it out
        try:
            await session.reload()
        except SessionNotFoundError as error:
            return {"error": str(error)}
        return {"error": ""}

    @app.post("/slow-login-keep")
    async def slow_login_keep(request: Request, session: SessionDep) -> dict[str, str]:
        session.get("user_id")
        await request.app.state.gate.wait()
        await session.regenerate(keep_data=True)
        return {"id": session.id}

    @app.post("/slow-read")
    async def slow_read(request: Request, session: SessionDep) -> dict[str, Any]:
        data = dict(session)
        await request.app.state.gate.wait()
        return data

    @app.get("/cached")
    async def cached(session: SessionDep) -> JSONResponse:
        session["seen"] = True
        return JSONResponse({}, headers={"cache-control": "no-store", "vary": "Accept-Encoding"})

    @app.get("/flags")
    async def flags(session: SessionDep) -> dict[str, bool]:
        before = {"is_new": session.is_new, "modified": session.modified}
        session["seen"] = True
        return {**before, "modified_after": session.modified}

    @app.get("/dump")
    async def dump(session: SessionDep) -> dict[str, Any]:
        return dict(session)

    @app.post("/increment")
    async def increment(session: SessionDep) -> dict[str, Any]:
        session["n"] = session.get("n", 0) + 1
        return dict(session)
