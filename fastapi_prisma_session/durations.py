"""Time: durations are seconds (int or float) or `datetime.timedelta`, and the clock is naive UTC.

Node's options count milliseconds (express-session's `cookie.maxAge`, prisma-session-store's `ttl` and
`checkPeriod`), and a value copied from there reads here as a thousand times longer. So a bare number of
seconds that is both absurd as seconds and a plain number of milliseconds is refused, with the value it
probably meant: a whole multiple of 1000 above its option's ceiling. The ceilings:

- a lifetime (`max_age`, `ttl`, `absolute_timeout`): 400 days, the most a browser keeps a cookie
  (RFC 6265bis asks browsers to cap `Max-Age` and `Expires` there);
- `check_period`: one day. The prune it times runs in the app's process, which rarely lives for days
  (a cron job's `prune` suits rarer runs), and Node's figures (120000 for two minutes) land far above it;
- `touch_after`: the session's `max_age` (400 days without one): a session left untouched for longer
  than it lives has ended before its touch is due.

A `datetime.timedelta` names its unit, so it is taken as it is: the way to ask for a longer duration.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from .exceptions import ConfigurationError

Duration = int | float | timedelta

ONE_DAY = 24 * 3600.0
ONE_YEAR = 365 * ONE_DAY
#: The ceilings above which a bare whole number of thousands of seconds is taken for milliseconds.
LIFETIME_CEILING = 400 * ONE_DAY
PERIOD_CEILING = ONE_DAY
# About 300 years: longer durations are mistakes, and would overflow a datetime.
MAX_SECONDS = 10**10


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAIVE_EPOCH = datetime(1970, 1, 1)


def utcnow() -> datetime:
    """Now as a naive UTC datetime, the way Prisma stores `DateTime`."""
    # The same instant as `datetime.now(UTC).replace(tzinfo=None)`, exactly, at a third of its cost:
    # replace() parses eight keyword arguments, and every request that loads or saves reads the clock.
    return _NAIVE_EPOCH + (datetime.now(UTC) - _EPOCH)


def naive_utc(moment: datetime) -> datetime:
    """`moment` as the naive UTC datetime the columns hold (a naive one is taken to be UTC already)."""
    return moment if moment.tzinfo is None else moment.astimezone(UTC).replace(tzinfo=None)


def to_seconds(
    value: Duration | None, option: str, *, allow_zero: bool = True, ceiling: float | None = None
) -> float | None:
    """Normalise a duration option to float seconds, or None when it is unset.

    With a `ceiling` (LIFETIME_CEILING or PERIOD_CEILING), a number above it that reads as milliseconds
    is refused (see the module's docstring)."""
    if value is None:
        return None
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
        if ceiling is not None and _reads_as_milliseconds(seconds, ceiling):
            raise ConfigurationError(in_milliseconds(option, int(seconds)))
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


def _reads_as_milliseconds(seconds: float, ceiling: float) -> bool:
    """Above `ceiling`, a whole number of thousands, and a thousandth of it a duration that passes."""
    meant = seconds / 1000
    return (
        ceiling < seconds <= 1000 * MAX_SECONDS
        and seconds % 1000 == 0
        and not (meant > ceiling and meant % 1000 == 0)
    )


def in_milliseconds(option: str, seconds: int) -> str:
    """Why `seconds` looks like milliseconds given to `option`, with the value meant and the way to keep
    it: "max_age is in seconds; 604800000 s is 19 years; did you mean 604800? ..."."""
    meant = f"{option} is in seconds; {seconds} s is {how_long(seconds)}; did you mean {seconds // 1000}?"
    if seconds > MAX_SECONDS:
        return meant
    return f"{meant} (to mean {seconds} s, pass datetime.timedelta(seconds={seconds}))"


def how_long(seconds: float) -> str:
    """`seconds` in years, days or hours, as a person says it: "19 years", "2.7 years", "1.4 days"."""
    if seconds >= ONE_YEAR:
        amount, unit = seconds / ONE_YEAR, "year"
    elif seconds >= ONE_DAY:
        amount, unit = seconds / ONE_DAY, "day"
    else:
        amount, unit = seconds / 3600, "hour"
    figure = f"{amount:.0f}" if amount >= 10 else f"{amount:.1f}".removesuffix(".0")
    return f"{figure} {unit}{'' if figure == '1' else 's'}"
