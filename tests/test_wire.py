"""The oracle's own reading of the wire format agrees with the contract's decoder.

``tests/wire.py`` reads records from the rules of docs/events.md alone; here both readers get
the same bytes: the generator's traffic (with its deliberately broken lines), single lines and
batches, and a table of edge cases of timestamps, sizes and nesting.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from tests.wire import read_record
from usersignals.ingest.contract import decode_record
from usersignals.ingest.synthetic import GeneratorConfig, generate

NOW = datetime(2026, 9, 1, 12, tzinfo=UTC)


def both(record: bytes) -> tuple[object, object]:
    events, rejections = decode_record(record, now=NOW)
    mine = read_record(record, NOW)
    return (events, [r.reason for r in rejections]), (mine.events, mine.reasons)


def test_generated_traffic_single_and_batched() -> None:
    config = GeneratorConfig(users=150, days=6, seed=11, end=NOW.date())
    lines = list(generate(config))
    records = lines + [b"[" + b",".join(lines[i : i + 40]) + b"]" for i in range(0, len(lines), 40)]
    rejected = 0
    for record in records:
        contract, oracle = both(record)
        assert contract == oracle, record[:200]
        rejected += len(oracle[1])  # type: ignore[index]
    assert rejected > 0  # the generator writes broken lines on purpose


def ev(**fields: object) -> bytes:
    base: dict[str, object] = {"event_id": "e1", "type": "session_start", "user_id": "u1"}
    base["ts"] = "2026-08-31T10:00:00Z"
    return json.dumps(base | fields, ensure_ascii=False).encode()


CASES: list[tuple[str, bytes, list[str]]] = [
    ("epoch ms", ev(ts=1788000000000), []),
    ("epoch seconds", ev(ts=1764650000), ["bad_timestamp"]),
    ("epoch microseconds", ev(ts=1764650000000000), ["bad_timestamp"]),
    ("at the lower bound", ev(ts="2000-01-01T00:00:00Z"), []),
    ("a millisecond before it", ev(ts=946684799999), ["bad_timestamp"]),
    ("offset, rounded up to the next day", ev(ts="2026-08-30T23:59:59.9999995Z"), []),
    ("offset without colon", ev(ts="2026-08-31T10:00:00+0530"), []),
    ("lower-case t and z", ev(ts="2026-08-31t10:00:00z"), []),
    ("no offset", ev(ts="2026-08-31T10:00:00"), ["bad_timestamp"]),
    ("offset hours out of range", ev(ts="2026-08-31T10:00:00+99:00"), ["bad_timestamp"]),
    ("more than 24 h ahead", ev(ts="2026-09-02T12:00:01Z"), ["bad_timestamp"]),
    ("ts as float", ev(ts=1788000000000.0), ["bad_type"]),
    ("ts as bool", ev(ts=True), ["bad_type"]),
    ("numeric user", ev(user_id=12345), ["bad_type"]),
    ("unknown type", ev(type="click"), ["unknown_type"]),
    ("missing role", ev(type="message"), ["missing_field"]),
    ("same models", ev(type="preference", model_a="m", model_b="m", winner="a"), ["bad_value"]),
    ("rating 2", ev(type="feedback", message_id="x", rating=2), ["bad_value"]),
    # the properties object itself, then at most 8 levels inside it
    ("properties 8 deep", ev(properties=json.loads('{"a":' * 9 + "1" + "}" * 9)), []),
    ("properties 9 deep", ev(properties=json.loads('{"a":' * 10 + "1" + "}" * 10)), ["too_deep"]),
    ("an unknown field kept", ev(colour="blue"), []),
    ("empty", b"", ["empty"]),
    ("not utf-8", b'{"a": "\xff"}', ["not_utf8"]),
    ("not json", b"{", ["not_json"]),
    ("NaN is not JSON", b'{"a": NaN}', ["not_json"]),
    ("a string", b'"hi"', ["not_object"]),
    ("empty batch", b"[]", ["bad_batch"]),
    ("three numbers", b"[1,2,3]", ["not_object", "not_object", "not_object"]),
    ("too deep", b"[" * 65 + b"]" * 65, ["too_deep"]),
    ("a big event alone", ev(properties={"t": "x" * 33_000}), ["too_large"]),
    (
        "a big element beside a good one",
        b"[" + ev(properties={"t": "x" * 33_000}) + b"," + ev(event_id="e2") + b"]",
        ["too_large"],
    ),
    ("a lone surrogate", ev(session_id="x").replace(b'"x"', b'"\\ud800"'), ["not_json"]),
]


@pytest.mark.parametrize(("record", "reasons"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_edge_cases(record: bytes, reasons: list[str]) -> None:
    contract, oracle = both(record)
    assert oracle[1] == reasons  # type: ignore[index]
    assert contract == oracle
