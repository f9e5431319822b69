"""The cookie's date formats, spelled out by hand for speed, match what the standard library writes
(and JavaScript's Date: toISOString() for the stored cookie, toUTCString() for Expires)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime

from hypothesis import given
from hypothesis import strategies as st

from fastapi_prisma_session.cookies import http_date, iso_utc, parse_iso_utc

MOMENTS = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59))


@given(MOMENTS)
def test_http_date_is_the_rfc_format(moment: datetime) -> None:
    assert http_date(moment) == format_datetime(moment.replace(microsecond=0, tzinfo=UTC), usegmt=True)


@given(MOMENTS)
def test_iso_utc_is_to_iso_string_and_reads_back(moment: datetime) -> None:
    text = iso_utc(moment)
    milliseconds = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
    assert text == f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z".rjust(24, "0")
    assert parse_iso_utc(text) == milliseconds


def test_years_before_1000_have_four_digits_as_in_javascript() -> None:
    assert iso_utc(datetime(999, 1, 2, 3, 4, 5, 6999)) == "0999-01-02T03:04:05.006Z"
    assert http_date(datetime(999, 1, 2)) == "Wed, 02 Jan 0999 00:00:00 GMT"


@given(MOMENTS, st.integers(min_value=-23 * 60, max_value=23 * 60))
def test_an_offset_is_turned_into_utc(moment: datetime, minutes: int) -> None:
    zone = timezone(timedelta(minutes=minutes))
    local = moment.replace(tzinfo=UTC).astimezone(zone) if 2 <= moment.year <= 9998 else None
    if local is not None:
        assert parse_iso_utc(local.isoformat()) == moment


# The last: an offset that takes it out of datetime's range in UTC.
UNREADABLE = [
    "",
    "Z",
    "2024-01-01Z",
    "2024-W01-1Z",
    "2020-13-01T00:00:00.000Z",
    "2020-01-01T00:00:00+01:00Z",
    "0001-01-01T00:00+01:00",
]


def test_unreadable_dates_are_none() -> None:
    for text in UNREADABLE:
        assert parse_iso_utc(text) is None, text


@given(MOMENTS, st.integers(min_value=-23 * 60, max_value=23 * 60))
def test_an_aware_datetime_is_written_as_utc(moment: datetime, minutes: int) -> None:
    if 2 <= moment.year <= 9998:
        aware = moment.replace(tzinfo=UTC).astimezone(timezone(timedelta(minutes=minutes)))
        assert iso_utc(aware) == iso_utc(moment)
