"""The four forms of the contract agree on one corpus, under several lower bounds of ``ts``.

The contract is written four times over: the msgspec types of the workers' fast path
(:mod:`usersignals.ingest.event`), the precise checks that word each rejection
(:mod:`usersignals.ingest.rules`), the SDK's check at the call
(:func:`usersignals.ingest.batching.encode_call`) and the JSON Schema
(:mod:`usersignals.ingest.schema`). Their limits, choices and requirements come from the same
tables, but each form is its own code, so this one property holds them equal: for every
event of one generated corpus (valid events, and the same with fields dropped, nulled or
replaced, ``ts`` on and around each bound, in seconds, microseconds and nanoseconds) and
every bound of :data:`BOUNDS`, the four accept exactly the same events, the fast path and the
SDK build exactly the event the precise path builds, and every rejection carries the precise
path's reason and message. The JSON Schema is judged on acceptance only, except for the rules
it cannot state (:data:`usersignals.ingest.schema.INEXPRESSIBLE`), which it must let through.
"""

from __future__ import annotations

import functools
import json
from datetime import datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from tests.ingest.test_contract_properties import (
    BOUNDS,
    NOW,
    edge_timestamps,
    mutated_events,
    timestamps,
)
from tests.ingest.test_schema import inexpressible
from usersignals.ingest import contract
from usersignals.ingest.batching import encode_call
from usersignals.ingest.contract import (
    CHOICES,
    FIELDS,
    Event,
    EventError,
    Rejection,
    decode_record,
    encode_event,
    json_schema,
    validate,
)
from usersignals.ingest.timestamps import TimestampError, parse_epoch_ms, parse_rfc3339
from usersignals.ingest.typed import METHOD_FIELDS

RECORD_LEVEL = ("not_json", "too_large", "too_deep")
"""Reasons only a reader of bytes can give (a Python dict cannot be too large to read)."""


@functools.cache
def schema_validator(bound: datetime) -> Draft202012Validator:
    return Draft202012Validator(json_schema(bound))


def typed_call(
    wire: dict[str, Any],
) -> tuple[str, tuple[str, ...], dict[str, Any], dict[str, Any]] | None:
    """The SDK call nearest to ``wire``: (method, its fields, the event as a typed call sends
    it, the same on the wire), if ``wire`` has a known type and a ``ts``.

    A typed method takes its type's fields only, so other fields are left out (and ``ts``,
    which the SDK would fill in, must be there). A ``ts`` the timestamp grammar reads is
    passed as the UTC ``datetime`` it means, the form the SDK's own fast check judges.
    """
    etype = wire.get("type")
    if not isinstance(etype, str) or etype not in METHOD_FIELDS or wire.get("ts") is None:
        return None
    fields = METHOD_FIELDS[etype]
    taken = {"event_id", "type", "user_id", "ts", *fields}
    sent = {name: value for name, value in wire.items() if name in taken}
    ts = sent["ts"]
    try:
        if isinstance(ts, str):
            ts = parse_rfc3339(ts)
        elif type(ts) is int:
            ts = parse_epoch_ms(ts)
    except TimestampError:
        pass
    return etype, fields, {**sent, "ts": ts}, sent


corpus = mutated_events() | st.builds(
    lambda event, ts: {**event, "ts": ts},
    mutated_events(),
    edge_timestamps | timestamps(late=True) | timestamps(),
)
"""Generated events, half of them with a ``ts`` on or around a bound, or past one."""


def repaired(wire: dict[str, Any], rejection: Rejection, bound: datetime) -> dict[str, Any]:
    """``wire`` with the field of an inexpressible ``rejection`` made valid: the schema judges
    both alike (it cannot see what was wrong), and the contract judges the rest."""
    name = rejection.field
    assert name is not None
    value = wire[name]
    fix: Any
    if name in ("ts", "received_at"):
        fix = bound.isoformat()
    elif isinstance(value, float):  # 1.0 where the contract wants an integer
        fix = int(value)
    elif name == "model_b":
        fix = "m-other" if wire.get("model_a") != "m-other" else "m-another"
    elif name == "properties":
        fix = {}
    elif name in CHOICES:
        fix = CHOICES[name][0]
    elif name in FIELDS:
        fix = "x"
    else:  # an unknown field may hold any JSON value
        fix = None
    return {**wire, name: fix}


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event=corpus, bound=st.sampled_from(BOUNDS))
def test_msgspec_types_precise_rules_sdk_check_and_schema_agree(
    event: dict[str, Any], bound: datetime
) -> None:
    raw = json.dumps(event).encode()
    wire = json.loads(raw)  # what a client sends
    result = validate(wire, now=NOW, min_ts=bound)  # the precise path: the reference

    # msgspec types (the fast path) and the whole decoder the workers and the loader run
    fast = contract._decode_fast(raw, contract._bounds(NOW, bound))
    if fast is not None:
        assert fast == [result]
    elif isinstance(result, Event):  # the fast path leaves only unknown fields to the other
        assert set(wire) - set(FIELDS), result
    decoded = decode_record(raw, now=NOW, min_ts=bound)
    if isinstance(result, Event):
        assert decoded == ([result], [])
    elif decoded[1][0].reason not in RECORD_LEVEL:
        expected = Rejection(
            reason=result.reason, message=result.message, field=result.field, raw=raw
        )
        assert decoded == ([], [expected])

    # the SDK's check at the call
    call = typed_call(wire)
    if call is not None:
        etype, fields, meant, sent = call
        values = tuple(meant.get(name) for name in fields)
        try:
            got: Any = encode_call(
                etype, meant.get("user_id"), meant.get("event_id"), meant["ts"], fields, values,
                now=NOW, min_ts=bound,
            )  # fmt: skip
        except EventError as exc:
            got = exc
        if meant.get("event_id") is None:  # the SDK made an id (any valid one words alike)
            meant["event_id"] = "id" if isinstance(got, EventError) else got[0]
        sdk = validate(meant, now=NOW, min_ts=bound)
        if isinstance(sdk, Rejection):
            assert isinstance(got, EventError)
            assert got.rejection == sdk
        else:
            assert got == (sdk.event_id, (sdk.user_id, encode_event(sdk)))
        if sent.get("event_id") is not None:  # the same moment is the same verdict
            on_wire = validate(sent, now=NOW, min_ts=bound)
            assert isinstance(sdk, Event) == isinstance(on_wire, Event), (sdk, on_wire)

    # the JSON Schema of the same bound, once the rules it cannot state are out of the way
    accepted_by_schema = schema_validator(bound).is_valid(wire)
    judged, verdict = wire, result
    for _ in range(len(FIELDS) + len(wire)):
        if not inexpressible(judged, verdict):
            break
        assert isinstance(verdict, Rejection)
        judged = repaired(judged, verdict, bound)
        verdict = validate(judged, now=NOW, min_ts=bound)
    assert accepted_by_schema == isinstance(verdict, Event), (result, verdict)
