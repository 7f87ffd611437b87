"""The lower bound of ``ts`` and the epoch-unit hints, through every entry of the contract.

The default bound's rows (and every message) are in ``test_contract.py``'s tables; here the
bound moves: given to each decoding function, set for the process, and read from the
environment.
"""

# ruff: noqa: E501  (one table row per case, each with its full message, reads best unwrapped)

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from tests.ingest.test_contract import NOW, ev
from usersignals.config import ConfigError
from usersignals.ingest import contract
from usersignals.ingest.batching import encode_call
from usersignals.ingest.contract import (
    Event,
    EventError,
    Rejection,
    decode_record,
    json_schema,
    min_ts,
    set_min_ts,
    validate,
)
from usersignals.ingest.timestamps import (
    epoch_ms_at_or_after,
    epoch_ms_at_or_before,
    epoch_unit_hint,
    show_moment,
)
from usersignals.ingest.typed import TypedEvents

DEFAULT = datetime(2000, 1, 1, tzinfo=UTC)
BACKFILL = datetime(1990, 1, 1, tzinfo=UTC)  # 631152000000 ms
ODD = datetime(2000, 1, 1, 0, 0, 0, 500, tzinfo=UTC)  # not on a millisecond


class Calls(TypedEvents):
    """The SDK's typed methods without a broker: each call's item, as the tracker queues it."""

    def __init__(self) -> None:
        self.items: list[tuple[str, bytes]] = []

    def _enqueue(self, event_id: str, item: tuple[str, bytes]) -> str:
        self.items.append(item)
        return event_id


def test_an_sdk_call_with_epoch_seconds_is_refused_with_a_hint() -> None:
    # 1764650000 read as milliseconds is 1970-01-21: it used to be accepted
    with pytest.raises(EventError) as exc:
        Calls().session_start("user-42", ts=1764650000)
    assert str(exc.value) == "Invalid 'ts': 1764650000 (looks like seconds; send milliseconds)"
    assert exc.value.rejection.reason == "bad_timestamp"
    assert exc.value.rejection.field == "ts"
    calls = Calls()
    calls.session_start("user-42", ts=1764650000000)
    assert json.loads(calls.items[0][1])["ts"] == "2025-12-02T04:33:20.000000Z"


HINTS = [
    # (ms, low_ms, high_ms, hint)
    (1764650000, 946684800000, 1785931200000, "looks like seconds; send milliseconds"),
    (946684800, 946684800000, 1785931200000, "looks like seconds; send milliseconds"),
    (946684799, 946684800000, 1785931200000, None),
    (1785931200, 946684800000, 1785931200000, "looks like seconds; send milliseconds"),
    (1785931201, 946684800000, 1785931200000, None),
    (946684800000000, 946684800000, 1785931200000, "looks like microseconds; send milliseconds"),
    (946684799999999, 946684800000, 1785931200000, None),
    (1785931200000999, 946684800000, 1785931200000, "looks like microseconds; send milliseconds"),
    (1785931200001000, 946684800000, 1785931200000, None),
    (946684800000000000, 946684800000, 1785931200000, "looks like nanoseconds; send milliseconds"),
    (0, 946684800000, 1785931200000, None),
    (-1764650000, 946684800000, 1785931200000, None),
    (10**400, 946684800000, 1785931200000, None),
]


@pytest.mark.parametrize(("ms", "low", "high", "hint"), HINTS)
def test_epoch_unit_hint(ms: int, low: int, high: int, hint: str | None) -> None:
    assert epoch_unit_hint(ms, low, high) == hint


def test_integer_bounds_round_inwards() -> None:
    assert epoch_ms_at_or_after(DEFAULT) == 946684800000
    assert epoch_ms_at_or_after(ODD) == 946684800001
    assert epoch_ms_at_or_before(ODD) == 946684800000
    assert epoch_ms_at_or_after(datetime(1969, 12, 31, 23, 59, 59, 999500, tzinfo=UTC)) == 0
    assert show_moment(DEFAULT) == "2000-01-01T00:00:00Z"
    assert show_moment(ODD) == "2000-01-01T00:00:00.000500Z"


# (bound, ts, accepted, message when not)
MOVED = [
    (BACKFILL, 631152000000, True, None),
    (BACKFILL, "1990-01-01T00:00:00Z", True, None),
    (BACKFILL, "1995-06-01T12:00:00+02:00", True, None),
    (BACKFILL, 631151999999, False, "Invalid 'ts': 631151999999 (before the lower bound 1990-01-01T00:00:00Z)"),
    (BACKFILL, 631152000, False, "Invalid 'ts': 631152000 (looks like seconds; send milliseconds)"),
    (BACKFILL, "1989-12-31T23:59:59.999999Z", False, "Invalid 'ts': '1989-12-31T23:59:59.999999Z' (before the lower bound 1990-01-01T00:00:00Z)"),
    (ODD, 946684800000, False, "Invalid 'ts': 946684800000 (before the lower bound 2000-01-01T00:00:00.000500Z)"),
    (ODD, 946684800001, True, None),
    (ODD, "2000-01-01T00:00:00.0005Z", True, None),
    (ODD, "2000-01-01T00:00:00.000499Z", False, "Invalid 'ts': '2000-01-01T00:00:00.000499Z' (before the lower bound 2000-01-01T00:00:00.000500Z)"),
    # an aware bound in another zone is the same moment
    (datetime(2026, 8, 4, 14, tzinfo=timezone(timedelta(hours=2))), "2026-08-04T11:59:59Z", False, "Invalid 'ts': '2026-08-04T11:59:59Z' (before the lower bound 2026-08-04T12:00:00Z)"),
    (datetime(2026, 8, 4, 14, tzinfo=timezone(timedelta(hours=2))), 1785844800000, True, None),
]  # fmt: skip


@pytest.mark.parametrize(("bound", "ts", "accepted", "message"), MOVED)
def test_a_bound_given_to_each_entry(
    bound: datetime, ts: Any, accepted: bool, message: str | None
) -> None:
    event = ev("session_start", ts=ts)
    raw = json.dumps(event).encode()
    result = validate(event, now=NOW, min_ts=bound)
    events, rejections = decode_record(raw, now=NOW, min_ts=bound)
    schema_ok = Draft202012Validator(json_schema(bound)).is_valid(event)
    sdk: str | None = None
    try:
        encode_call("session_start", "u-1", "e-1", ts, (), (), now=NOW, min_ts=bound)
    except EventError as exc:
        sdk = str(exc)
    assert sdk == message
    sdk_ok = sdk is None
    if accepted:
        assert isinstance(result, Event)
        assert (events, rejections, sdk_ok, schema_ok) == ([result], [], True, True)
    else:
        expected = Rejection(reason="bad_timestamp", message=message or "", field="ts")
        assert result == expected
        assert (events, [r.message for r in rejections], sdk_ok) == ([], [message], False)
        assert schema_ok is isinstance(ts, str)  # the schema bounds the integer form only


def test_a_naive_bound_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="min_ts must be tz-aware"):
        decode_record(b"{}", now=NOW, min_ts=datetime(2000, 1, 1))


@pytest.fixture
def bound_restored() -> Iterator[None]:
    before = min_ts()
    try:
        yield
    finally:
        set_min_ts(before)


@pytest.mark.usefixtures("bound_restored")
def test_set_min_ts_moves_the_default_of_every_entry() -> None:
    assert min_ts() == DEFAULT
    event = ev("session_start", ts="1995-06-01T00:00:00Z")
    raw = json.dumps(event).encode()
    assert isinstance(validate(event, now=NOW), Rejection)
    set_min_ts(datetime(1995, 1, 1, 1, tzinfo=timezone(timedelta(hours=1))))
    assert min_ts() == datetime(1995, 1, 1, tzinfo=UTC)
    assert min_ts().tzinfo is UTC
    assert isinstance(validate(event, now=NOW), Event)
    assert len(decode_record(raw, now=NOW)[0]) == 1
    ts = datetime(1995, 6, 1, tzinfo=UTC)
    assert encode_call("session_start", "u", "e", ts, (), (), now=NOW)[0] == "e"
    assert json_schema()["properties"]["ts"]["oneOf"][1]["minimum"] == 788918400000


def test_set_min_ts_refuses_a_naive_datetime() -> None:
    with pytest.raises(ConfigError) as exc:
        set_min_ts(datetime(2000, 1, 1))
    assert str(exc.value) == (
        "Invalid min_ts: datetime.datetime(2000, 1, 1, 0, 0) (no UTC offset; add 'Z' or '+HH:MM')"
    )
    assert min_ts() == DEFAULT


def _in_a_process(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    code = (
        "from usersignals.ingest import contract;"
        "print(contract.min_ts().isoformat());"
        'print(contract.decode_record(b\'{"event_id":"e","type":"session_start",'
        '"user_id":"u","ts":631152000000}\')[1])'
    )
    environ = {k: v for k, v in os.environ.items() if k != "USERSIGNALS_MIN_TS"}
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_bound_in_force_comes_from_the_environment() -> None:
    # what a worker, loader or collector process started with USERSIGNALS_MIN_TS sees
    done = _in_a_process({"USERSIGNALS_MIN_TS": "1990-01-01T00:00:00Z"})
    assert (done.returncode, done.stdout) == (0, "1990-01-01T00:00:00+00:00\n[]\n")
    done = _in_a_process({})
    assert done.returncode == 0
    assert done.stdout.splitlines()[0] == "2000-01-01T00:00:00+00:00"
    assert "before the lower bound 2000-01-01T00:00:00Z" in done.stdout
    done = _in_a_process({"USERSIGNALS_MIN_TS": "soon"})
    assert done.returncode == 1
    assert "ConfigError: Invalid min_ts: 'soon' (not an RFC 3339 date-time)" in done.stderr


def test_contract_reexports_the_bound() -> None:
    assert contract.min_ts is min_ts
    assert {"min_ts", "set_min_ts"} <= set(contract.__all__)
