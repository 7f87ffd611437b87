"""The Iglu schemas of the event types: valid self-describing JSON Schemas (draft 4, Iglu's
meta-schema), in agreement with the contract on a table per type and on the generated corpus
of ``test_contract_agreement.py``, printed and written by ``usersignals schema --iglu``, and
sent natively by the real ``snowplow-tracker``."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft4Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4
from snowplow_tracker import Emitter, SelfDescribingJson, Subject, Tracker
from snowplow_tracker.events import SelfDescribing

from tests.cli.test_validate_schema import usersignals
from tests.ingest.test_contract_properties import NOW, mutated_events
from usersignals.ingest import iglu
from usersignals.ingest.contract import (
    EVENT_TYPES,
    FIELDS,
    REQUIRED_BY_TYPE,
    TEXT_LIMITS,
    Event,
    Rejection,
    validate,
)
from usersignals.ingest.iglu import (
    FROM_SNOWPLOW,
    INEXPRESSIBLE,
    build_iglu_schema,
    build_iglu_schemas,
    data_fields,
    event_type_of,
    iglu_uri,
    repository_files,
)
from usersignals.ingest.schema import field_schema

# Iglu's meta-schema (iglu:com.snowplowanalytics.self-desc/schema/jsonschema/1-0-0): a "self"
# naming the schema, and a draft 4 JSON Schema, which it refers to by this address.
DRAFT4_URI = "https://json-schema.org/draft-04/schema"
SELF_DESC = {
    "$schema": "http://json-schema.org/draft-04/schema#",
    "allOf": [
        {
            "properties": {
                "self": {
                    "type": "object",
                    "properties": {
                        "vendor": {"type": "string", "pattern": "^[a-zA-Z0-9-_.]+$"},
                        "name": {"type": "string", "pattern": "^[a-zA-Z0-9-_]+$"},
                        "format": {"type": "string", "pattern": "^[a-zA-Z0-9-_]+$"},
                        "version": {"type": "string", "pattern": "^[0-9]+-[0-9]+-[0-9]+$"},
                    },
                    "required": ["vendor", "name", "format", "version"],
                    "additionalProperties": False,
                }
            },
            "required": ["self"],
        },
        {"$ref": DRAFT4_URI},
    ],
}
META = Draft4Validator(
    SELF_DESC,
    registry=Registry().with_resource(
        DRAFT4_URI, Resource.from_contents(Draft4Validator.META_SCHEMA, DRAFT4)
    ),
)
# what Iglu clients accept as a schema key (SchemaVer: MODEL from 1, no leading zeros)
IGLU_URI = re.compile(
    r"^iglu:([a-zA-Z0-9\-_.]+)/([a-zA-Z0-9\-_]+)/([a-zA-Z0-9\-_]+)/"
    r"([1-9][0-9]*(?:-(?:0|[1-9][0-9]*)){2})$"
)
REVERSE_DNS = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*(\.[a-z0-9]+(-[a-z0-9]+)*)+$")

VALIDATORS = {etype: Draft4Validator(build_iglu_schema(etype)) for etype in EVENT_TYPES}


def iglu_accepts(etype: str, data: Any) -> bool:
    return VALIDATORS[etype].is_valid(data)


def as_event(etype: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """The contract event built from ``data`` and the fields a Snowplow event carries."""
    return {
        **data,
        "event_id": "e-1",
        "user_id": "u-1",
        "ts": "2026-08-04T10:00:00Z",
        "type": etype,
    }


def contract_verdict(etype: str, data: Mapping[str, Any]) -> Event | Rejection:
    return validate(as_event(etype, data), now=NOW)


def inexpressible(data: Mapping[str, Any], result: Event | Rejection) -> bool:
    """Whether the contract rejects by a rule of :data:`INEXPRESSIBLE` (``data`` the size
    rule does not reach: :func:`validate` of a dict does not weigh it)."""
    if not isinstance(result, Rejection):
        return False
    if result.field == "duration_s":  # an integer too large for a float is not finite
        value = data.get("duration_s")
        return type(value) is int and value > 0
    return result.message.endswith(
        ("(same as 'model_a')", "(not valid Unicode)", "(more than 4300 digits)", "finite)")
    )


# ------------------------------------------------------------------------ the schemas' form


def test_one_schema_per_event_type_in_order() -> None:
    schemas = build_iglu_schemas()
    assert [s["self"]["name"] for s in schemas] == list(EVENT_TYPES)
    assert schemas == build_iglu_schemas()
    assert schemas[0] is not build_iglu_schemas()[0]


@pytest.mark.parametrize("etype", EVENT_TYPES)
def test_schema_is_self_describing_draft_4(etype: str) -> None:
    schema = build_iglu_schema(etype)
    META.validate(schema)
    Draft4Validator.check_schema(schema)
    assert schema["$schema"] == (
        "http://iglucentral.com/schemas/com.snowplowanalytics.self-desc/schema/jsonschema/1-0-0#"
    )
    assert schema["self"] == {
        "vendor": "io.usersignals",
        "name": etype,
        "format": "jsonschema",
        "version": "1-0-0",
    }
    assert REVERSE_DNS.match(schema["self"]["vendor"])
    uri = iglu_uri(etype)
    assert uri == f"iglu:io.usersignals/{etype}/jsonschema/1-0-0"
    match = IGLU_URI.match(uri)
    assert match is not None
    assert match.groups() == tuple(
        schema["self"][k] for k in ("vendor", "name", "format", "version")
    )
    assert list(schema)[:4] == ["$schema", "description", "self", "type"]
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False


@pytest.mark.parametrize("etype", EVENT_TYPES)
def test_properties_are_the_types_fields_but_those_snowplow_carries(etype: str) -> None:
    schema = build_iglu_schema(etype)
    fields = data_fields(etype)
    assert list(schema["properties"]) == list(fields)
    assert {"session_id", "model", "platform", "properties"} <= set(fields)
    assert set(REQUIRED_BY_TYPE[etype]) <= set(fields)
    assert not set(fields) & set(FROM_SNOWPLOW)
    assert set(FROM_SNOWPLOW) <= set(FIELDS)
    assert schema.get("required", []) == list(REQUIRED_BY_TYPE[etype])
    for name, piece in schema["properties"].items():
        contract = field_schema(name)
        assert piece["description"] == contract["description"]
        kinds = [piece["type"]] if isinstance(piece["type"], str) else piece["type"]
        assert ("null" in kinds) == (name not in REQUIRED_BY_TYPE[etype])  # null means absent
        if "enum" in piece:
            assert [v for v in piece["enum"] if v is not None] == contract["enum"]
            assert (None in piece["enum"]) == ("null" in kinds)
        if name in TEXT_LIMITS:
            assert (piece["minLength"], piece["maxLength"]) == TEXT_LIMITS[name]


@pytest.mark.parametrize("etype", EVENT_TYPES)
def test_description_names_the_rules_it_does_not_check(etype: str) -> None:
    description = build_iglu_schema(etype)["description"]
    shown = [rule for rule in INEXPRESSIBLE if rule in description]
    assert shown == [r for r in INEXPRESSIBLE if etype == "preference" or "model_b" not in r]


def refs(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "$ref":
                yield item
            else:
                yield from refs(item)
    elif isinstance(value, list):
        for item in value:
            yield from refs(item)


@pytest.mark.parametrize("etype", EVENT_TYPES)
def test_every_reference_is_to_a_definition_of_the_schema(etype: str) -> None:
    schema = build_iglu_schema(etype)
    found = set(refs(schema))
    assert found
    for ref in found:
        assert ref.startswith("#/definitions/")
        assert ref.removeprefix("#/definitions/") in schema["definitions"]


def test_event_type_of_reads_exactly_the_published_uris() -> None:
    for etype in EVENT_TYPES:
        assert event_type_of(iglu_uri(etype)) == etype
    for uri in (
        "iglu:io.usersignals/feedback/jsonschema/1-0-1",
        "iglu:io.usersignals/feedback/jsonschema/2-0-0",
        "iglu:io.usersignals/click/jsonschema/1-0-0",
        "iglu:com.acme/feedback/jsonschema/1-0-0",
        "iglu:io.usersignals/feedback/avro/1-0-0",
        "io.usersignals/feedback/jsonschema/1-0-0",
        "",
    ):
        assert event_type_of(uri) is None


def test_unknown_type_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        build_iglu_schema("click")


# --------------------------------------------------------------- agreement with the contract

DATA: dict[str, dict[str, Any]] = {
    "session_start": {},
    "session_end": {"duration_s": 61.5},
    "message": {"role": "assistant", "tokens": 42, "message_id": "msg-1"},
    "feedback": {"message_id": "msg-1", "rating": -1},
    "preference": {"model_a": "m-5.1", "model_b": "m-5.2", "winner": "tie"},
    "risk_flag": {"category": "mania", "severity": "high", "source": "classifier"},
    "custom": {"name": "Button Clicked"},
    "identify": {"name": "$identify"},
}
COMMON = {"session_id": "s-1", "model": "m-5.2", "platform": "web", "properties": {"lang": "en"}}
DROP = object()


def data(etype: str, **changes: Any) -> dict[str, Any]:
    """A valid data object of ``etype`` with some fields changed (``DROP`` removes one)."""
    out = {**COMMON, **DATA[etype]}
    for name, value in changes.items():
        if value is DROP:
            out.pop(name, None)
        else:
            out[name] = value
    return out


def deep(levels: int) -> Any:
    value: Any = 1
    for n in range(levels):
        value = [value] if n % 2 else {"k": value}
    return value


# (changes, Iglu accepts, contract accepts) for every type: a row where the two differ is a
# field the type does not have (Iglu is closed), or a rule neither JSON Schema can state
COMMON_ROWS: list[tuple[dict[str, Any], bool, bool]] = [
    ({}, True, True),
    ({"session_id": DROP, "model": DROP, "platform": DROP, "properties": DROP}, True, True),
    ({"session_id": None, "model": None, "platform": None, "properties": None}, True, True),
    ({"session_id": ""}, True, True),
    ({"session_id": "s" * 256}, True, True),
    ({"session_id": "s" * 257}, False, False),
    ({"session_id": 1}, False, False),
    ({"model": "m" * 129}, False, False),
    ({"platform": "linux"}, False, False),
    ({"platform": 0}, False, False),
    ({"platform": "Web"}, False, False),
    ({"properties": [1]}, False, False),
    ({"properties": "x"}, False, False),
    ({"properties": {}}, True, True),
    ({"properties": {"a": [1, {"b": None, "c": [True, 1.5, "x"]}]}}, True, True),
    ({"properties": {"a": deep(8)}}, True, True),  # 8 levels inside properties
    ({"properties": {"a": deep(9)}}, False, False),
    ({"properties": {"a": [[[[[[[{"deep": 1}]]]]]]]}}, True, True),
    ({"properties": {"a": [[[[[[[[{"deep": 1}]]]]]]]]}}, False, False),
    ({"future": 1}, False, True),  # the contract keeps it in extra; Iglu is closed
    ({"received_at": "2026-08-04T10:00:00Z"}, False, True),  # the collector's, not the data's
    ({"session_id": "\ud800"}, True, False),  # a lone surrogate: inexpressible
]
TYPE_ROWS: list[tuple[str, dict[str, Any], bool, bool]] = [
    ("session_start", {"rating": 1}, False, True),  # another type's field
    ("session_start", {"rating": 5}, False, False),
    ("session_end", {"duration_s": DROP}, True, True),
    ("session_end", {"duration_s": None}, True, True),
    ("session_end", {"duration_s": 0}, True, True),
    ("session_end", {"duration_s": 3600}, True, True),
    ("session_end", {"duration_s": -0.5}, False, False),
    ("session_end", {"duration_s": "60"}, False, False),
    ("session_end", {"duration_s": False}, False, False),
    ("session_end", {"duration_s": 10**400}, True, False),  # no finite float: inexpressible
    ("message", {"role": DROP}, False, False),
    ("message", {"role": None}, False, False),
    ("message", {"role": "bot"}, False, False),
    ("message", {"role": "tool", "tokens": DROP, "message_id": DROP}, True, True),
    ("message", {"tokens": None, "message_id": None}, True, True),
    ("message", {"tokens": 0}, True, True),
    ("message", {"tokens": 2**63 - 1}, True, True),
    ("message", {"tokens": 2**63}, False, False),
    ("message", {"tokens": -1}, False, False),
    ("message", {"tokens": 1.5}, False, False),
    ("message", {"tokens": 1.0}, False, False),  # draft 4: 1.0 is not an integer either
    ("message", {"tokens": True}, False, False),
    ("message", {"message_id": ""}, False, False),
    ("message", {"rating": 1}, False, True),
    ("feedback", {"message_id": DROP}, False, False),
    ("feedback", {"rating": DROP}, False, False),
    ("feedback", {"rating": None}, False, False),
    ("feedback", {"rating": 0}, True, True),
    ("feedback", {"rating": 1}, True, True),
    ("feedback", {"rating": 2}, False, False),
    ("feedback", {"rating": True}, False, False),
    ("feedback", {"rating": 1.0}, False, False),
    ("feedback", {"rating": "1"}, False, False),
    ("feedback", {"message_id": "m" * 256}, True, True),
    ("feedback", {"message_id": "m" * 257}, False, False),
    ("preference", {"model_a": DROP}, False, False),
    ("preference", {"model_b": DROP}, False, False),
    ("preference", {"winner": DROP}, False, False),
    ("preference", {"winner": "c"}, False, False),
    ("preference", {"winner": "both_bad"}, True, True),
    ("preference", {"model_a": ""}, False, False),
    ("preference", {"model_b": "m-5.1"}, True, False),  # the same model twice: inexpressible
    ("risk_flag", {"category": DROP}, False, False),
    ("risk_flag", {"severity": DROP}, False, False),
    ("risk_flag", {"category": "anger"}, False, False),
    ("risk_flag", {"severity": "severe"}, False, False),
    ("risk_flag", {"severity": "critical", "category": "self_harm"}, True, True),
    ("risk_flag", {"source": "user"}, False, False),
    ("risk_flag", {"source": None}, True, True),
    ("risk_flag", {"source": DROP}, True, True),
    *(
        row
        for etype in ("custom", "identify")
        for row in [
            (etype, {"name": DROP}, False, False),
            (etype, {"name": None}, False, False),
            (etype, {"name": ""}, False, False),
            (etype, {"name": 7}, False, False),
            (etype, {"name": "x" * 256}, True, True),
            (etype, {"name": "x" * 257}, False, False),
            (etype, {"name": "$pageview", "properties": {"$current_url": "/"}}, True, True),
        ]
    ),
]  # fmt: skip


def test_the_table_covers_every_type() -> None:
    assert set(DATA) == set(EVENT_TYPES)
    assert {etype for etype, *_ in TYPE_ROWS} == set(EVENT_TYPES)


@pytest.mark.parametrize("etype", EVENT_TYPES)
@pytest.mark.parametrize(("changes", "iglu_ok", "contract_ok"), COMMON_ROWS)
def test_common_fields_agree(
    etype: str, changes: dict[str, Any], iglu_ok: bool, contract_ok: bool
) -> None:
    sample = data(etype, **changes)
    assert iglu_accepts(etype, sample) is iglu_ok
    assert isinstance(contract_verdict(etype, sample), Event) is contract_ok


@pytest.mark.parametrize(("etype", "changes", "iglu_ok", "contract_ok"), TYPE_ROWS)
def test_type_fields_agree(
    etype: str, changes: dict[str, Any], iglu_ok: bool, contract_ok: bool
) -> None:
    sample = data(etype, **changes)
    assert iglu_accepts(etype, sample) is iglu_ok
    result = contract_verdict(etype, sample)
    assert isinstance(result, Event) is contract_ok
    if iglu_ok != contract_ok:  # a field the type does not have, or a rule Iglu cannot state
        outside = set(sample) - set(data_fields(etype))
        assert outside if contract_ok else inexpressible(sample, result), result


def test_rows_that_differ_are_exactly_the_closed_schema_and_the_inexpressible() -> None:
    for etype in EVENT_TYPES:
        for changes, iglu_ok, contract_ok in COMMON_ROWS:
            sample = data(etype, **changes)
            if iglu_ok and not contract_ok:
                assert inexpressible(sample, contract_verdict(etype, sample))
            if contract_ok and not iglu_ok:
                assert set(sample) - set(data_fields(etype))


@st.composite
def data_objects(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """The corpus of the contract's agreement test as Snowplow data: an event without the
    fields Snowplow carries, as its own type or another, sometimes cut to the type's fields."""
    event = draw(mutated_events())
    etype = event.get("type")
    if etype not in EVENT_TYPES or draw(st.integers(0, 3)) == 0:
        etype = draw(st.sampled_from(EVENT_TYPES))
    assert isinstance(etype, str)
    kept = {k: v for k, v in event.items() if k not in ("event_id", "user_id", "ts", "type")}
    if draw(st.integers(0, 3)):
        kept.pop("received_at", None)
    if draw(st.booleans()):
        kept = {k: v for k, v in kept.items() if k in data_fields(etype)}
    return etype, json.loads(json.dumps(kept))  # what a tracker sends


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sample=data_objects())
def test_iglu_accepts_exactly_the_data_of_the_types_fields_the_contract_accepts(
    sample: tuple[str, dict[str, Any]],
) -> None:
    etype, obj = sample
    result = contract_verdict(etype, obj)
    accepted = iglu_accepts(etype, obj)
    if inexpressible(obj, result):
        return
    own_fields = set(obj) <= set(data_fields(etype))
    assert accepted == (isinstance(result, Event) and own_fields), (etype, obj, result)


# --------------------------------------------------------------------------------- the CLI


def test_cli_prints_the_schemas() -> None:
    done = usersignals("schema", "--iglu")
    assert (done.returncode, done.stderr) == (0, "")
    assert json.loads(done.stdout) == build_iglu_schemas()
    assert done.stdout.startswith('[\n  {\n    "$schema": "http://iglucentral.com/schemas/')


def test_cli_writes_an_iglu_static_repository(tmp_path: Path) -> None:
    out = tmp_path / "schemas"
    done = usersignals("schema", "--iglu", "--out", str(out))
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == f"wrote {len(EVENT_TYPES)} Iglu schemas to {out / 'io.usersignals'}\n"
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert written == sorted(f"io.usersignals/{t}/jsonschema/1-0-0" for t in EVENT_TYPES)
    files = repository_files()
    assert list(files) == [f"io.usersignals/{t}/jsonschema/1-0-0" for t in EVENT_TYPES]
    for path, text in files.items():
        assert (out / path).read_text(encoding="utf-8") == text
        assert json.loads(text) == build_iglu_schema(path.split("/")[1])
    again = usersignals("schema", "--iglu", "--out", str(out))  # the same files: a no-op
    assert (again.returncode, again.stdout) == (0, done.stdout)
    changed = out / "io.usersignals/feedback/jsonschema/1-0-0"
    changed.write_text("{}\n", encoding="utf-8")
    refused = usersignals("schema", "--iglu", "--out", str(out))
    assert (refused.returncode, refused.stdout) == (1, "")
    assert refused.stderr == (
        f"Error: {str(changed)!r} exists and differs: an Iglu schema version never changes "
        "once published (publish a new version, or remove the file)\n"
    )
    assert changed.read_text(encoding="utf-8") == "{}\n"


def test_cli_options_that_do_not_go_together_are_usage_errors() -> None:
    done = usersignals("schema", "--out", "x")
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == "Error: --out writes the Iglu schemas: add --iglu\n"
    done = usersignals("schema", "--iglu", "--min-ts", "1995-01-01T00:00:00Z")
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        "Error: --min-ts does not apply to --iglu (the Iglu schemas have no 'ts')\n"
    )


# ------------------------------------------------------------- sent natively by a tracker


class Capture(requests.adapters.BaseAdapter):
    """A transport that keeps each request and answers 200, so nothing leaves the process."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[requests.PreparedRequest] = []

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        self.sent.append(request)
        response = requests.Response()
        response.status_code = 200
        response.request = request
        response.url = request.url or ""
        response._content = b""
        return response

    def close(self) -> None:
        pass


def unbase64(text: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))


FEEDBACK = {"message_id": "msg-1", "rating": 1, "session_id": "s-1", "platform": "web"}


@pytest.mark.parametrize(
    ("method", "encode_base64"), [("post", True), ("get", True), ("post", False)]
)
def test_snowplow_tracker_sends_a_feedback_natively(method: str, encode_base64: bool) -> None:
    capture = Capture()
    session = requests.Session()
    session.mount("http://", capture)
    emitter = Emitter(
        "collector.test", protocol="http", method=method, batch_size=1, session=session
    )
    tracker = Tracker(
        "chat",
        emitter,
        subject=Subject().set_user_id("u-1"),
        app_id="chat-web",
        encode_base64=encode_base64,
    )
    before = datetime.now(UTC)
    event_id = tracker.track(SelfDescribing(SelfDescribingJson(iglu_uri("feedback"), FEEDBACK)))
    emitter.flush()

    assert len(capture.sent) == 1
    request = capture.sent[0]
    url = urlsplit(request.url or "")
    if method == "post":
        assert (request.method, url.path) == ("POST", "/com.snowplowanalytics.snowplow/tp2")
        body = request.body.decode() if isinstance(request.body, bytes) else request.body
        assert isinstance(body, str)
        payload = json.loads(body)
        assert payload["schema"].startswith(
            "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-"
        )
        [sent] = payload["data"]
    else:
        assert (request.method, url.path) == ("GET", "/i")
        sent = {key: values[0] for key, values in parse_qs(url.query).items()}
        payload = sent
    assert (sent["e"], sent["eid"], sent["uid"], sent["aid"]) == ("ue", event_id, "u-1", "chat-web")
    if encode_base64:
        assert "ue_pr" not in sent
        envelope = unbase64(sent["ue_px"])
    else:
        assert "ue_px" not in sent
        envelope = json.loads(sent["ue_pr"])
    assert envelope == {
        "schema": "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0",
        "data": {"schema": "iglu:io.usersignals/feedback/jsonschema/1-0-0", "data": FEEDBACK},
    }
    inner = envelope["data"]
    assert event_type_of(inner["schema"]) == "feedback"
    assert iglu_accepts("feedback", inner["data"])
    # the contract event: the data, and the Snowplow event's eid, uid and dtm
    event = validate(
        {**inner["data"], "event_id": sent["eid"], "user_id": sent["uid"],
         "ts": int(sent["dtm"]), "type": "feedback"},
        now=datetime.now(UTC),
    )  # fmt: skip
    assert isinstance(event, Event), event
    assert (event.type, event.message_id, event.rating, event.user_id) == (
        "feedback", "msg-1", 1, "u-1",
    )  # fmt: skip
    assert before.replace(microsecond=before.microsecond // 1000 * 1000) <= event.ts

    # and the collector's mapping reads it natively
    from usersignals.ingest.capture import map_snowplow

    [mapped] = map_snowplow(payload, received_at=datetime.now(UTC))
    assert mapped.event is not None, mapped.rejection
    got = mapped.event
    assert (got.type, got.event_id, got.user_id, got.session_id, got.platform) == (
        "feedback", event_id, "u-1", "s-1", "web",
    )  # fmt: skip
    assert (got.message_id, got.rating) == ("msg-1", 1)


def test_module_names_its_public_api() -> None:
    assert set(iglu.__all__) <= set(dir(iglu))
