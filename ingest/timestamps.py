"""Event timestamps: the grammar the contract accepts, and its canonical form.

An event's ``ts`` is an RFC 3339 date-time with ``Z`` or a numeric offset, or an integer of
Unix epoch milliseconds; ``received_at`` is the string form only. Both normalise to a tz-aware
UTC ``datetime`` with microsecond precision.

Strings are read by msgspec's RFC 3339 parser, the same code that decodes a whole batch on the
workers' fast path, so both paths accept exactly the same strings::

    YYYY-MM-DD ("T" / "t" / " ") hh:mm:ss [ "." 1*DIGIT ] ( "Z" / "z" / ("+" / "-") hh[":"]mm )

with a real calendar date (year 1-9999), hour 00-23, minute and second 00-59 (no leap second
``:60``), offset hour 00-23 and minute 00-59. The space separator and the offset without colon
are leniencies beyond RFC 3339. Fractional seconds may have any number of digits and are
rounded to the nearest microsecond (the seventh digit decides, 5 rounds up), so
``23:59:59.9999995Z`` is midnight of the next day. A date-time without offset is rejected: its
moment is unknown.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec

__all__ = [
    "RFC3339_PATTERN",
    "TimestampError",
    "format_ts",
    "parse_epoch_ms",
    "parse_rfc3339",
]

RFC3339_PATTERN = (
    r"^(?![^\n]*\n)(?!0000)[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt ]"
    r"([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]+)?"
    r"([Zz]|[+-]([01][0-9]|2[0-3]):?[0-5][0-9])$"
)
"""The grammar above as an ECMA 262 regular expression, for the JSON Schema. It cannot say
which days a month has, nor that the moment must fall in years 1-9999 once in UTC. (The
lookahead for a newline is there because Python's ``$`` also matches before a final newline.)"""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class TimestampError(ValueError):
    """A timestamp the contract refuses; ``problem`` says why, for a rejection message."""

    def __init__(self, problem: str) -> None:
        self.problem = problem
        super().__init__(problem)


def parse_rfc3339(text: str) -> datetime:
    """Parses a date-time string into UTC, microsecond precision.

    Raises:
        TimestampError: not the grammar above, no offset, or outside years 1-9999 in UTC.
    """
    try:
        local = msgspec.convert(text, datetime)
    except msgspec.ValidationError:
        raise TimestampError("not an RFC 3339 date-time") from None
    if local.tzinfo is None:
        raise TimestampError("no UTC offset; add 'Z' or '+HH:MM'")
    return to_utc(local)


def to_utc(moment: datetime) -> datetime:
    """A tz-aware datetime in UTC.

    Raises:
        TimestampError: outside years 1-9999 once in UTC.
    """
    if moment.tzinfo is UTC:
        return moment
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise TimestampError("out of range") from None


def parse_epoch_ms(ms: int) -> datetime:
    """Unix epoch milliseconds to a UTC datetime.

    Raises:
        TimestampError: outside years 1-9999.
    """
    try:
        return _EPOCH + timedelta(milliseconds=ms)
    except OverflowError:
        raise TimestampError("out of range") from None


def format_ts(moment: datetime) -> str:
    """Canonical wire form: UTC, six fractional digits, ``Z`` (``2026-08-03T18:29:59.123000Z``)."""
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T{moment.hour:02d}:"
        f"{moment.minute:02d}:{moment.second:02d}.{moment.microsecond:06d}Z"
    )
