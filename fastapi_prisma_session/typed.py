"""Typed sessions: `TypedSession[Model]`, the session's data as a pydantic model, for FastAPI routes.

The model is validated from the session's data when a route asks for it. Data that does not fit (a
value of the wrong type, a row written by an older release) starts a fresh session, with one warning in
the log, never a 500. When the route returns, what the model dumps (`model_dump(mode="json")`, by
alias) is compared with what it dumped on load, and only the fields that changed are written into the
session, before the response starts and saves it. Keys the model does not name stay in the session as
they were, so plain `SessionDep` routes and the Node side keep theirs.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Annotated, Any, TypeAlias, TypeVar

from fastapi import Depends
from pydantic import BaseModel, ValidationError
from starlette.requests import HTTPConnection

from .dependencies import load_session
from .exceptions import ConfigurationError
from .logs import redact
from .session_data import RESERVED

__all__ = ["TypedSession", "session_model"]

logger = logging.getLogger("fastapi_prisma_session.typed")

Model = TypeVar("Model", bound=BaseModel)

# FastAPI's "function" scope ends the dependency when the route returns, before the response starts:
# the moment the middleware saves the session.
_SCOPED = "scope" in inspect.signature(Depends).parameters


def _stored_names(model: type[BaseModel]) -> set[str]:
    return {field.serialization_alias or field.alias or name for name, field in model.model_fields.items()}


def _checked(model: object) -> type[BaseModel]:
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise ConfigurationError(f"TypedSession[...] takes a pydantic model class, not {model!r}")
    if not _SCOPED:
        raise ConfigurationError("TypedSession needs FastAPI 0.121 or later (Depends' scope='function')")
    reserved = sorted(_stored_names(model) & RESERVED)
    if reserved:
        raise ConfigurationError(f"{model.__name__}: {reserved} are reserved for the store; rename the field")
    try:
        model()
    except ValidationError as error:
        raise ConfigurationError(
            f"{model.__name__} must be valid with no data (a new session has none): give every field a "
            f"default ({error.error_count()} field(s) without one)"
        ) from None
    return model


@functools.cache
def session_model(model: type[Model]) -> Any:
    """The `Depends(...)` behind `TypedSession[model]`, for `Annotated[model, session_model(model)]`.
    One per model, so that FastAPI hands every parameter of a request typed by it the same instance."""
    checked = _checked(model)

    async def dependency(connection: HTTPConnection) -> AsyncIterator[BaseModel]:
        session = await load_session(connection)
        try:
            value = checked.model_validate(dict(session))
        except ValidationError as error:
            logger.warning(
                "session %s does not fit %s (%d error(s), first at %s): starting a fresh session",
                redact(session.id),
                checked.__name__,
                error.error_count(),
                ".".join(map(str, error.errors()[0]["loc"])) or "the top",
            )
            await session.regenerate()
            value = checked()
        before = value.model_dump(mode="json", by_alias=True)
        yield value
        after = value.model_dump(mode="json", by_alias=True)
        for key in before.keys() - after.keys():
            session.pop(key, None)
        changed = {key: item for key, item in after.items() if key not in before or before[key] != item}
        if changed:
            session.update(changed)

    return Depends(dependency, scope="function")


if TYPE_CHECKING:
    #: To mypy and IDEs, `TypedSession[Cart]` is `Cart`.
    TypedSession: TypeAlias = Annotated[Model, "the session's data"]
else:

    class TypedSession:
        """`TypedSession[Model]`: a route parameter of this type is the session's data as a `Model`
        (`Annotated[Model, session_model(Model)]`)."""

        def __class_getitem__(cls, model: type[BaseModel]) -> Any:
            return Annotated[model, session_model(model)]
