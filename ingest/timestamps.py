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

The contract also bounds ``ts`` (not ``received_at``) from below, so that an epoch-*seconds*
integer read as milliseconds (``1764650000`` is 1970-01-21 as milliseconds) cannot land in
1970: the lower bound in force (:func:`min_ts`, default 2000-01-01T00:00:00Z) comes from the
setting ``min_ts`` (``USERSIGNALS_MIN_TS``), read once at import, and a program may change it
with :func:`set_min_ts`; every decoding function also takes it as an argument. An integer
outside the accepted range that would be inside it read as seconds, microseconds or
nanoseconds gets a hint saying so (:func:`epoch_unit_hint`).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import msgspec

from usersignals.config import ENV_VARS, Settings

__all__ = [
    "MAX_EPOCH_MS",
    "RFC3339_PATTERN",
    "TimestampError",
    "epoch_ms_at_or_after",
    "epoch_ms_at_or_before",
    "epoch_unit_hint",
    "format_ts",
    "min_ts",
    "parse_epoch_ms",
    "parse_rfc3339",
    "set_min_ts",
    "show_moment",
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
_MS = timedelta(milliseconds=1)

MAX_EPOCH_MS = 253402300799999
"""9999-12-31T23:59:59.999Z, the last epoch millisecond a ``datetime`` can hold."""

_UNITS = (("seconds", 1000, 1), ("microseconds", 1, 1000), ("nanoseconds", 1, 1_000_000))


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


def show_moment(moment: datetime) -> str:
    """A UTC moment for a message: RFC 3339 with ``Z``, fraction only when there is one."""
    text = format_ts(moment)
    return text[:-8] + "Z" if text.endswith(".000000Z") else text


def epoch_ms_at_or_after(moment: datetime) -> int:
    """The first epoch millisecond at or after ``moment`` (the integer form of a lower bound)."""
    return -((_EPOCH - moment) // _MS)


def epoch_ms_at_or_before(moment: datetime) -> int:
    """The last epoch millisecond at or before ``moment`` (the integer form of an upper bound)."""
    return (moment - _EPOCH) // _MS


def epoch_unit_hint(ms: int, low_ms: int, high_ms: int) -> str | None:
    """Which other unit an integer ``ts`` outside ``[low_ms, high_ms]`` looks like, if any.

    An integer that, read as epoch seconds (``ms * 1000``), microseconds (``ms // 1000``) or
    nanoseconds (``ms // 1_000_000``), falls inside the accepted range gets
    ``"looks like <unit>; send milliseconds"``; the first unit that fits wins.
    """
    for unit, times, per in _UNITS:
        if low_ms <= ms * times // per <= high_ms:
            return f"looks like {unit}; send milliseconds"
    return None


def _from_environment() -> datetime:
    """The setting ``min_ts`` as the environment gives it (only that variable is read)."""
    name = ENV_VARS["min_ts"]
    environ = {name: os.environ[name]} if name in os.environ else {}
    return Settings.load(environ).min_ts


_min_ts = _from_environment()


def min_ts() -> datetime:
    """The lower bound of ``ts`` in force in this process (UTC)."""
    return _min_ts


def set_min_ts(moment: datetime) -> None:
    """Sets the lower bound of ``ts`` for every later decoding in this process.

    For programs that build their :class:`~usersignals.config.Settings` in code
    (``set_min_ts(settings.min_ts)``); the environment's ``USERSIGNALS_MIN_TS`` is already
    in force without it.

    Raises:
        ConfigError: ``moment`` is not a tz-aware datetime.
    """
    global _min_ts
    _min_ts = Settings().with_(min_ts=moment).min_ts
