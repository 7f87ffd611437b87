"""The JSON Schema (draft 2020-12) of one event, generated from the contract's own tables.

Client teams validate against it in their own language; ``usersignals schema`` prints it.
Date-times are checked by ``pattern``, not ``format: date-time``: the contract also takes a
space for ``T`` and offsets without a colon, which a strict RFC 3339 format checker refuses.
Some rules of the contract are beyond JSON Schema; the schema's descriptions name them, and
``tests/ingest/test_schema.py`` (the rule table) and ``tests/ingest/test_contract_agreement.py``
(generated events) check that schema and contract agree on everything else. The integer form
of ``ts`` has the lower bound in force as its ``minimum``; for the string form a pattern cannot
say it (an offset moves the moment across the bound), so it is listed among those rules.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from usersignals.ingest.contract import (
    CHOICES,
    EVENT_TYPES,
    MAX_BATCH,
    MAX_EVENT_BYTES,
    MAX_PROPERTIES_DEPTH,
    MAX_RECORD_BYTES,
    MAX_TOKENS,
    RATINGS,
    REQUIRED_BY_TYPE,
    TEXT_LIMITS,
)
from usersignals.ingest.timestamps import (
    MAX_EPOCH_MS,
    RFC3339_PATTERN,
    epoch_ms_at_or_after,
    min_ts,
    show_moment,
)

__all__ = ["INEXPRESSIBLE", "SCHEMA_ID", "build_schema", "field_schema", "json_value_schema"]

SCHEMA_ID = "https://usersignals.dev/schemas/event/v1.json"

INEXPRESSIBLE = (
    f"an event is at most {MAX_EVENT_BYTES} bytes of UTF-8 JSON",
    "'ts' must not be more than 24 hours after the moment the event is received",
    "a string 'ts' must not be before the lower bound (the integer form's 'minimum') once "
    "converted to UTC",
    "'ts' and 'received_at' must be real calendar dates (no 30 February) and fall in years "
    "1-9999 once converted to UTC; fractional seconds are rounded to the microsecond",
    "'model_b' must differ from 'model_a'",
    f"a record is one event or a JSON array of 1 to {MAX_BATCH} events, at most "
    f"{MAX_RECORD_BYTES} bytes, nested at most 64 levels deep",
    "strings must be valid Unicode (no lone surrogates) and numbers must fit: integers of "
    "at most 4300 digits, floats finite",
    "integer fields (epoch-millisecond 'ts', 'tokens', 'rating') must be written as JSON "
    "integers: 1.0 is not accepted where 1 is",
)
"""Rules of the contract that this schema does not check (also listed in its description)."""

_DESCRIPTIONS = {
    "event_id": "Client-made unique id (UUID recommended); the same id again is the same event.",
    "type": "What happened.",
    "user_id": "The user, any Unicode; numbers are not coerced.",
    "ts": "When it happened: RFC 3339 with 'Z' or an offset, or integer Unix epoch "
    "milliseconds (not seconds). Normalised to UTC, microseconds. Not before {min_ts} (for "
    "strings not checked by this schema); at most 24 h in the future (not checked by this "
    "schema).",
    "session_id": "Chat session.",
    "model": "Model version that produced the answer (m-5.2).",
    "platform": "Client platform.",
    "properties": f"Free-form object, at most {MAX_PROPERTIES_DEPTH} levels of nesting inside.",
    "role": "Author of a message.",
    "tokens": "Tokens of a message.",
    "message_id": "The message (required for feedback).",
    "rating": "1 thumbs up, -1 thumbs down, 0 vote withdrawn.",
    "model_a": "First model of a preference vote.",
    "model_b": "Second model of a preference vote; must differ from model_a (not checked by "
    "this schema).",
    "winner": "Outcome of a preference vote.",
    "category": "Kind of risk flagged.",
    "severity": "How severe the flag is.",
    "source": "Who raised the flag.",
    "duration_s": "Length of the session in seconds.",
    "name": "What a custom event or an identity call is called ($pageview, Button Clicked, "
    "$identify); required for custom and identify.",
    "received_at": "When the collector received the event (RFC 3339), stamped by the collector.",
}


def json_value_schema(levels: int, *, defs: str = "#/$defs/") -> dict[str, Any]:
    """Any JSON value with at most ``levels`` levels of arrays/objects.

    Args:
        levels: How many levels of arrays/objects the value may have.
        defs: Where the schema being built keeps this one for each lower ``levels``, as
            ``json<levels>`` (``#/$defs/`` in draft 2020-12, ``#/definitions/`` in draft 4).
    """
    if levels == 0:
        return {"type": ["null", "boolean", "number", "string"]}
    inner = {"$ref": f"{defs}json{levels - 1}"}
    return {
        "anyOf": [
            {"type": ["null", "boolean", "number", "string"]},
            {"type": "array", "items": inner},
            {"type": "object", "additionalProperties": inner},
        ]
    }


def field_schema(
    name: str, earliest: datetime | None = None, *, defs: str = "#/$defs/"
) -> dict[str, Any]:
    """The schema of one contract field's value, ``null`` left out (a fresh dict each call).

    Args:
        name: A field of the contract.
        earliest: The lower bound of ``ts``, for its piece (default: the bound in force,
            :func:`min_ts`; read only for ``ts``).
        defs: Where :func:`json_value_schema`'s values are kept, for ``properties``.
    """
    description = _DESCRIPTIONS[name]
    nullable: dict[str, Any]
    if name in TEXT_LIMITS:
        low, high = TEXT_LIMITS[name]
        nullable = {"type": "string", "minLength": low, "maxLength": high}
    elif name == "type":
        nullable = {"enum": list(EVENT_TYPES)}
    elif name in CHOICES:
        nullable = {"enum": list(CHOICES[name])}
    elif name == "ts":
        earliest = min_ts() if earliest is None else earliest.astimezone(UTC)
        description = description.replace("{min_ts}", show_moment(earliest))
        nullable = {
            "oneOf": [
                {"type": "string", "pattern": RFC3339_PATTERN},
                {
                    "type": "integer",
                    "minimum": epoch_ms_at_or_after(earliest),
                    "maximum": MAX_EPOCH_MS,
                },
            ]
        }
    elif name == "received_at":
        nullable = {"type": "string", "pattern": RFC3339_PATTERN}
    elif name == "properties":
        nullable = {
            "type": "object",
            "additionalProperties": {"$ref": f"{defs}json{MAX_PROPERTIES_DEPTH}"},
        }
    elif name == "rating":
        nullable = {"enum": list(RATINGS)}
    elif name == "tokens":
        nullable = {"type": "integer", "minimum": 0, "maximum": MAX_TOKENS}
    else:  # duration_s
        nullable = {"type": "number", "minimum": 0}
    return {"description": description, **nullable}


def build_schema(earliest: datetime | None = None) -> dict[str, Any]:
    """The schema of one event (a fresh dict each call).

    Args:
        earliest: The lower bound of ``ts`` (default: the bound in force, :func:`min_ts`).
    """
    from usersignals.ingest.contract import FIELDS

    earliest = min_ts() if earliest is None else earliest.astimezone(UTC)
    common = ("event_id", "type", "user_id", "ts")
    properties: dict[str, Any] = {}
    for name in FIELDS:
        field = field_schema(name, earliest)
        # null means absent, except for the fields every event needs
        properties[name] = field if name in common else {"anyOf": [field, {"type": "null"}]}
    per_type = [
        {
            "if": {"properties": {"type": {"const": etype}}, "required": ["type"]},
            "then": {
                "required": list(required),
                "properties": {name: field_schema(name, earliest) for name in required},
            },
        }
        for etype, required in REQUIRED_BY_TYPE.items()
        if required
    ]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "usersignals event (v1)",
        "description": (
            "One user signal of an AI chat product. Unknown fields are allowed and kept "
            "verbatim; they nest at most as deep as 'properties'. Not checked by this schema: "
            + "; ".join(INEXPRESSIBLE)
            + "."
        ),
        "type": "object",
        "required": list(common),
        "properties": properties,
        "additionalProperties": {"$ref": f"#/$defs/json{MAX_PROPERTIES_DEPTH + 1}"},
        "allOf": per_type,
        "$defs": {f"json{n}": json_value_schema(n) for n in range(MAX_PROPERTIES_DEPTH + 2)},
    }
