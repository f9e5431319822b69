"""How session data becomes the text in the `data` column, and back."""

from __future__ import annotations

import json
from collections.abc import Callable
from json.scanner import make_scanner
from typing import Any, Protocol, cast, runtime_checkable

from .exceptions import ConfigurationError


@runtime_checkable
class Serializer(Protocol):
    """Anything with json-module style `dumps`/`loads`. `dumps` must not change what it is given (the
    store hands it the session's own dict, not a copy)."""

    def dumps(self, obj: Any, /) -> str: ...

    def loads(self, s: str, /) -> Any: ...


class JSONSerializer:
    """The default: compact JSON with the key order kept, as `JSON.stringify` writes it."""

    def dumps(self, obj: Any, /) -> str:
        # NaN and Infinity are not JSON: JSON.parse, jsonb and SQLite all refuse the text.
        text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        if not text.isascii():
            try:
                text.encode()
            except UnicodeEncodeError:
                # A lone surrogate ("\ud800") cannot be stored as UTF-8: escape it, as JSON.stringify does.
                return json.dumps(obj, separators=(",", ":"), allow_nan=False)
        return text

    def loads(self, s: str, /) -> Any:
        # The decoder's scanner straight away: what json.loads runs after two Python-level calls, on
        # every load. Text it does not read whole (leading or trailing space, bytes, an error) goes
        # through json.loads, which accepts or refuses it as it always has.
        if isinstance(s, str):
            try:
                value, end = _scan(s, 0)
            except (StopIteration, ValueError):
                pass
            else:
                if end == len(s):
                    return value
        return json.loads(s)


_scan: Callable[[str, int], tuple[Any, int]] = make_scanner(cast(Any, json.JSONDecoder()))


class _JSStyleSerializer:
    """Adapts an object with `stringify`/`parse` (the seed's naming) to `dumps`/`loads`."""

    def __init__(self, stringify: Callable[[Any], str], parse: Callable[[str], Any]) -> None:
        self.dumps = stringify
        self.loads = parse


def resolve_serializer(serializer: object | None) -> Serializer:
    if serializer is None:
        return JSONSerializer()
    if isinstance(serializer, Serializer):
        return serializer
    stringify, parse = getattr(serializer, "stringify", None), getattr(serializer, "parse", None)
    if callable(stringify) and callable(parse):
        return _JSStyleSerializer(stringify, parse)
    raise ConfigurationError(
        "serializer must have dumps() and loads() (like the json module) or stringify() and parse()"
    )
