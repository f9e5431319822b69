"""Time: durations are seconds (int or float) or `datetime.timedelta`, and the clock is naive UTC."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from .exceptions import ConfigurationError

Duration = int | float | timedelta

ONE_DAY = 24 * 3600.0
# About 300 years: longer durations are mistakes, and would overflow a datetime.
MAX_SECONDS = 10**10


def utcnow() -> datetime:
    """Now as a naive UTC datetime, the way Prisma stores `DateTime`."""
    return datetime.now(UTC).replace(tzinfo=None)


def naive_utc(moment: datetime) -> datetime:
    """`moment` as the naive UTC datetime the columns hold (a naive one is taken to be UTC already)."""
    return moment if moment.tzinfo is None else moment.astimezone(UTC).replace(tzinfo=None)


def to_seconds(value: Duration | None, option: str, *, allow_zero: bool = True) -> float | None:
    """Normalise a duration option to float seconds, or None when it is unset."""
    if value is None:
        return None
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise ConfigurationError(
            f"{option} must be a number of seconds or a datetime.timedelta, not {type(value).__name__}"
        )
    if not math.isfinite(seconds) or seconds > MAX_SECONDS:
        raise ConfigurationError(
            f"{option} must be a finite number of seconds up to {MAX_SECONDS:.0f}, got {seconds}"
        )
    if seconds < 0 or (seconds == 0 and not allow_zero):
        bound = "zero or more" if allow_zero else "more than zero"
        raise ConfigurationError(f"{option} must be {bound} seconds, got {seconds}")
    return seconds
