"""Properties of the contract on generated input: it never raises, it counts every element,
valid events survive a round trip, and a batch decodes as its elements one by one. The
strategies here are also the corpus of ``test_contract_agreement.py``."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from usersignals.ingest import contract
from usersignals.ingest.contract import (
    CHOICES,
    EVENT_TYPES,
    MAX_BATCH,
    REASONS,
    REQUIRED_BY_TYPE,
    Event,
    Rejection,
    decode_record,
    encode_batch,
    encode_event,
    validate,
)

NOW = datetime(2026, 8, 4, 12, 0, tzinfo=UTC)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ------------------------------------------------------------------------------ strategies

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=30,
)


@st.composite
def nested(draw: st.DrawFn) -> Any:
    """A JSON value wrapped in 0 to 80 arrays/objects: around every depth limit."""
    value = draw(json_values)
    for _ in range(draw(st.integers(0, 80))):
        value = [value] if draw(st.booleans()) else {"k": value}
    return value


odd_text = st.text(
    st.characters(codec=None, categories=None), max_size=40
)  # includes lone surrogates, controls, astral planes
huge_text = st.integers(33_000, 40_000).map(lambda n: "x" * n)

offsets = st.integers(-23 * 60 - 59, 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))
moments = (
    st.datetimes(  # from the default lower bound to 24 h after NOW, often near either
        min_value=datetime(2000, 1, 1),
        max_value=datetime(2026, 8, 5, 11, 59, 58),
        timezones=st.just(UTC),
    )
    | st.datetimes(
        min_value=datetime(2000, 1, 1),
        max_value=datetime(2000, 1, 1, 0, 0, 1),
        timezones=st.just(UTC),
    )
    | st.datetimes(
        min_value=datetime(2026, 8, 5, 11),
        max_value=datetime(2026, 8, 5, 11, 59, 58),
        timezones=st.just(UTC),
    )
)
future = st.datetimes(  # past the limit, some by a microsecond
    min_value=datetime(2026, 8, 5, 12), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
).filter(lambda m: m > NOW + timedelta(hours=24))
past = st.datetimes(  # before the default lower bound, some by a microsecond
    min_value=datetime(1, 1, 2), max_value=datetime(1999, 12, 31, 23, 59, 59, 999999)
).map(lambda m: m.replace(tzinfo=UTC))

BOUNDS = (
    datetime(2000, 1, 1, tzinfo=UTC),  # the default
    datetime(1990, 6, 15, 12, 0, 0, 500, tzinfo=UTC),  # a backfill's, not on a millisecond
    datetime(2026, 8, 1, tzinfo=UTC),  # a bound in the last days before NOW
)
"""Lower bounds of ``ts`` the properties run with; :func:`edge_timestamps` sits on each."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def _edges() -> list[str | int]:
    out: list[str | int] = []
    for bound in BOUNDS:
        ms = -((_EPOCH - bound) // _MS)  # the first millisecond at or after the bound
        for moment in (bound, bound - timedelta(microseconds=1), bound + timedelta(hours=5)):
            out.append(moment.isoformat())
            out.append(moment.astimezone(timezone(timedelta(hours=-3))).isoformat())
        # the bound in ms and just below; read as seconds, micro- and nanoseconds
        out += [ms, ms - 1, ms + 1, ms // 1000, ms // 1000 - 1, ms // 1000 + 1]
        out += [ms * 1000, ms * 1000 - 1, ms * 1_000_000, ms * 1_000_000 - 1]
    limit = NOW + timedelta(hours=24)
    ms = (limit - _EPOCH) // _MS
    out += [ms, ms + 1, ms // 1000, ms // 1000 + 1, ms * 1000, ms * 1000 + 1000, 1764650000]
    return out


edge_timestamps = st.sampled_from(_edges())


@st.composite
def timestamps(draw: st.DrawFn, late: bool = False) -> str | int:
    """A ``ts`` in any wire form: between the default bounds, or (``late``) outside them."""
    if late and draw(st.integers(0, 2)) == 0:
        return draw(edge_timestamps)
    moment: datetime = draw((future | past) if late else moments)
    if draw(st.integers(0, 4)) == 0:
        return int((moment - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(milliseconds=1))
    local = moment.astimezone(draw(offsets))
    text = f"{local.year:04d}-{local:%m-%d}" + draw(st.sampled_from("Tt ")) + f"{local:%H:%M:%S}"
    if draw(st.booleans()):  # any number of fraction digits
        text += "." + draw(st.text("0123456789", min_size=1, max_size=12))
    offset = local.strftime("%z")  # +hhmm
    if offset == "+0000" and draw(st.booleans()):
        return text + draw(st.sampled_from("Zz"))
    return text + (offset if draw(st.integers(0, 5)) == 0 else offset[:3] + ":" + offset[3:])


def text_of(low: int, high: int) -> st.SearchStrategy[str]:
    return st.text(min_size=low, max_size=high)


properties = st.dictionaries(st.text(max_size=8), json_values, max_size=5)


@st.composite
def valid_events(draw: st.DrawFn) -> dict[str, Any]:
    etype = draw(st.sampled_from(EVENT_TYPES))
    event: dict[str, Any] = {
        "event_id": draw(text_of(1, 128)),
        "type": etype,
        "user_id": draw(text_of(1, 512) | st.sampled_from(["u-1", "用户", "🙂", '"q",'])),
        "ts": draw(timestamps().filter(lambda t: not isinstance(t, str) or "T" in t.upper())),
    }
    optional: dict[str, st.SearchStrategy[Any]] = {
        "session_id": text_of(0, 256),
        "model": text_of(0, 128),
        "platform": st.sampled_from(CHOICES["platform"]),
        "properties": properties,
        "received_at": moments.map(lambda m: m.isoformat()),
    }
    by_type: dict[str, st.SearchStrategy[Any]] = {
        "duration_s": st.floats(min_value=0, allow_infinity=False) | st.integers(0, 10**6),
        "role": st.sampled_from(CHOICES["role"]),
        "tokens": st.integers(0, 2**63 - 1),
        "message_id": text_of(1, 256),
        "name": text_of(1, 256),
        "rating": st.sampled_from((1, -1, 0)),
        "model_a": st.just("m-a"),
        "model_b": st.just("m-b"),
        "winner": st.sampled_from(CHOICES["winner"]),
        "category": st.sampled_from(CHOICES["category"]),
        "severity": st.sampled_from(CHOICES["severity"]),
        "source": st.sampled_from(CHOICES["source"]),
    }
    for name in REQUIRED_BY_TYPE[etype]:
        event[name] = draw(by_type[name])
    for name, strategy in {**optional, **by_type}.items():
        if name not in event and draw(st.integers(0, 3)) == 0:
            event[name] = draw(strategy)
    if draw(st.integers(0, 5)) == 0:
        event[draw(st.text(min_size=1, max_size=10).filter(lambda k: k not in contract.FIELDS))] = (
            draw(json_values)
        )
    return event


@st.composite
def mutated_events(draw: st.DrawFn) -> dict[str, Any]:
    """A valid event, or one with a field dropped, nulled or set to an arbitrary value."""
    event = draw(valid_events())
    for _ in range(draw(st.integers(0, 2))):
        name = draw(st.sampled_from(contract.FIELDS))
        choice = draw(st.integers(0, 3))
        if choice == 0:
            event.pop(name, None)
        elif choice == 1:
            event[name] = None
        elif choice == 2:
            event[name] = draw(json_values | odd_text | nested() | timestamps(late=True))
        else:
            event[name] = draw(
                st.text(max_size=3)
                | st.integers(-2, 2)
                | st.sampled_from(
                    [v for names in CHOICES.values() for v in names] + list(EVENT_TYPES)
                )
            )
    return event


# ------------------------------------------------------------------------------ properties


def _assert_well_formed(events: list[Event], rejections: list[Rejection]) -> None:
    assert all(isinstance(e, Event) for e in events)
    assert all(isinstance(r, Rejection) and r.reason in REASONS for r in rejections)
    assert all(not r.message.startswith("Unreadable") for r in rejections)
    for e in events:
        assert e.ts.tzinfo is UTC
        encode_event(e)  # every accepted event can be sent on


@SETTINGS
@given(st.binary(max_size=300) | st.binary(max_size=3).map(lambda b: b"[" * 5000 + b))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    events, rejections = decode_record(raw, now=NOW)
    _assert_well_formed(events, rejections)


@SETTINGS
@given(
    st.lists(json_values | nested() | odd_text | huge_text | mutated_events(), max_size=12)
    | nested()
    | mutated_events()
)
def test_arbitrary_json_never_raises_and_counts_every_element(value: Any) -> None:
    raw = json.dumps(value).encode()
    events, rejections = decode_record(raw, now=NOW)
    _assert_well_formed(events, rejections)
    whole = [r for r in rejections if r.index is None]
    if whole:  # the record could not be read, or is one event
        assert (events, len(rejections)) == ([], 1)
    if isinstance(value, list) and 1 <= len(value) <= MAX_BATCH and not whole:
        assert len(events) + len(rejections) == len(value)
        assert [r.index for r in rejections] == sorted({r.index for r in rejections})
    if isinstance(value, dict):
        assert len(events) + len(rejections) == 1


@SETTINGS
@given(json_values | nested() | mutated_events() | st.builds(object) | st.just(float("nan")))
def test_validate_never_raises(value: Any) -> None:
    result = validate(value, now=NOW)
    assert isinstance(result, Event | Rejection)
    if isinstance(result, Rejection):
        assert result.reason in REASONS
        assert not result.message.startswith("Unreadable")


@SETTINGS
@given(st.lists(valid_events(), min_size=1, max_size=20))
def test_valid_events_round_trip(dicts: list[dict[str, Any]]) -> None:
    events = [validate(d, now=NOW) for d in dicts]
    assert all(isinstance(e, Event) for e in events), events
    valid: list[Event] = [e for e in events if isinstance(e, Event)]
    for event in valid:
        assert decode_record(encode_event(event), now=NOW) == ([event], [])
        assert validate(json.loads(encode_event(event)), now=NOW) == event
    assert decode_record(encode_batch(valid), now=NOW) == (valid, [])


# Event by event, the fast and the precise paths, the SDK's check and the JSON Schema are held
# equal by one property over one corpus: tests/ingest/test_contract_agreement.py.


@SETTINGS
@given(st.lists(mutated_events(), min_size=1, max_size=8))
def test_a_bad_element_leaves_the_others_to_the_fast_path(dicts: list[dict[str, Any]]) -> None:
    # decode_record tries each element of a batch the fast way once the whole batch fails:
    # the outcome must be exactly the precise path's, rejections and their messages included
    raw = json.dumps(dicts).encode()
    assert decode_record(raw, now=NOW) == contract._decode_precise(raw, contract._bounds(NOW, None))
