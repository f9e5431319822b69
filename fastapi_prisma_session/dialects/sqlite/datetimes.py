"""Prisma's DateTime on SQLite, both ways, without SQLAlchemy: what the store's statements bind and read
(the `sqlite_datetime` conversion of their compiled form), and what models.py's column type applies."""

from __future__ import annotations

from datetime import datetime, timedelta

from ...durations import naive_utc

EPOCH = datetime(1970, 1, 1)


def sqlite_datetime_text(moment: datetime) -> str:
    """`moment` as @prisma/adapter-better-sqlite3 stores a DateTime by default: `Date.toISOString()`
    with `+00:00` for `Z`, to the millisecond (a naive `moment` is UTC)."""
    moment = naive_utc(moment)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}+00:00"


def parse_sqlite_datetime(value: object) -> datetime | None:
    """A naive UTC datetime from any DateTime Prisma or this package has stored on SQLite: integer
    milliseconds since the epoch (Prisma's Rust engine, the adapter's `unixepoch-ms`), ISO-8601 text
    with `+00:00` or `Z` (the adapters), or naive text (this package before 0.2). None for anything
    else, which no reader can place in time."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return EPOCH + timedelta(milliseconds=value)
        except OverflowError:
            return None
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
        # An offset can take a date past year 9999 or before year 1 (OverflowError).
        return naive_utc(parsed)
    except (ValueError, OverflowError):
        return None
