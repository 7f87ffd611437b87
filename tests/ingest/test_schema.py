"""The published JSON Schema agrees with the contract on every rule of the table, and states
the lower bound of ``ts`` in force (generated events: ``test_contract_agreement.py``)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from tests.ingest.test_contract import ACCEPTED_TS, BASE, NOW, REJECTED, ev
from usersignals.ingest.contract import Event, Rejection, json_schema, validate
from usersignals.ingest.schema import INEXPRESSIBLE
from usersignals.ingest.timestamps import RFC3339_PATTERN

SCHEMA = json_schema()
VALIDATOR = Draft202012Validator(SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER)


INTEGER_FIELDS = ("tokens", "rating", "ts")


def inexpressible(event: Any, result: Event | Rejection) -> bool:
    """Whether the contract rejects ``event`` by a rule listed in :data:`INEXPRESSIBLE`."""
    if not isinstance(result, Rejection) or not isinstance(event, dict):
        return False
    value = event.get(result.field) if result.field else None
    if result.reason == "bad_timestamp":
        if result.message.endswith("(more than 24 h after receipt)"):
            return True
        if "(before the lower bound " in result.message:  # the integer form has a minimum
            return isinstance(value, str)
        if result.message.endswith("(out of range)"):  # years 1-9999 once a string is in UTC
            return isinstance(value, str)
        # a calendar date that does not exist (30 February), in the accepted grammar
        return isinstance(value, str) and re.search(RFC3339_PATTERN, value) is not None
    if result.message.endswith(("(same as 'model_a')", "(not valid Unicode)")):
        return True
    # 1.0 is an integer to JSON Schema, not to the contract (only where an integer is allowed)
    return (
        result.reason == "bad_type"
        and result.field in INTEGER_FIELDS
        and isinstance(value, float)
        and value.is_integer()
    )


def assert_agree(event: Any) -> None:
    event = json.loads(json.dumps(event))  # what a client would send
    result = validate(event, now=NOW)
    if inexpressible(event, result):
        assert VALIDATOR.is_valid(event)
        return
    errors = [e.message for e in VALIDATOR.iter_errors(event)]
    assert (errors == []) == isinstance(result, Event), (result, errors)


def test_schema_is_valid_draft_2020_12() -> None:
    Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert SCHEMA["description"].endswith("; ".join(INEXPRESSIBLE) + ".")
    assert json_schema() == SCHEMA
    assert json_schema() is not SCHEMA


@pytest.mark.parametrize(("event", "reason", "field", "message"), REJECTED)
def test_schema_agrees_on_every_rejection_rule(
    event: Any, reason: str, field: str | None, message: str
) -> None:
    assert_agree(event)


# The rows of the table that JSON Schema cannot judge, named so that none slips in unnoticed.
INEXPRESSIBLE_ROWS = {
    "Invalid 'ts': '2026-02-30T10:00:00Z' (not an RFC 3339 date-time)",
    "Invalid 'ts': '0001-01-01T00:30:00+01:00' (out of range)",
    "Invalid 'ts': '1999-12-31T23:59:59.999999Z' (before the lower bound 2000-01-01T00:00:00Z)",
    "Invalid 'ts': '2000-01-01T00:59:59+01:00' (before the lower bound 2000-01-01T00:00:00Z)",
    "Invalid 'ts': '1970-01-21T10:10:50Z' (before the lower bound 2000-01-01T00:00:00Z)",
    "Invalid 'ts': '2026-08-05T12:00:00.000001Z' (more than 24 h after receipt)",
    "Invalid 'ts': 1785931200001 (more than 24 h after receipt)",
    "Invalid 'ts': 1700000000000.0 (must be an RFC 3339 string or integer epoch milliseconds)",
    "Invalid 'rating': 1.0 (must be 1, -1 or 0)",
    "Invalid 'model_b': 'm-5.1' (same as 'model_a')",
}


def test_inexpressible_rows_are_exactly_the_documented_ones() -> None:
    rows = {
        message
        for event, _, _, message in REJECTED
        if inexpressible(json.loads(json.dumps(event)), validate(event, now=NOW))
    }
    assert rows == INEXPRESSIBLE_ROWS


@pytest.mark.parametrize("etype", sorted(BASE))
def test_schema_accepts_every_type(etype: str) -> None:
    assert_agree(ev(etype))
    assert VALIDATOR.is_valid(ev(etype))


@pytest.mark.parametrize(("ts", "expected"), ACCEPTED_TS)
def test_schema_accepts_every_accepted_timestamp(ts: Any, expected: Any) -> None:
    assert VALIDATOR.is_valid(ev(ts=ts))


@pytest.mark.parametrize(
    "ts",
    [
        "2026-08-03T10:00:00Z\n",
        "0000-01-01T00:00:00Z",
        "2026-13-01T00:00:00Z",
        "2026-08-03T10:00Z",
        "2026-08-03T10:00:00+5:30",
        "2026-08-03T10:00:00+05:60",
        -62135596800001,
    ],
)
def test_schema_rejects_what_the_contract_rejects(ts: Any) -> None:
    assert isinstance(validate(ev(ts=ts), now=NOW), Rejection)
    assert not VALIDATOR.is_valid(ev(ts=ts))
