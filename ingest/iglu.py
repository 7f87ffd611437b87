"""Iglu self-describing JSON Schemas of the event types, so Snowplow trackers send them natively.

A Snowplow tracker sends a usersignals event as a self-describing event whose schema is
``iglu:io.usersignals/<type>/jsonschema/1-0-0`` (:func:`iglu_uri`) and whose data is the event
without the fields Snowplow carries itself (:data:`FROM_SNOWPLOW`): ``event_id`` is the
tracker's ``eid``, ``user_id`` its ``uid`` (else ``duid``), ``ts`` its ``dtm``, ``type`` the
schema's name, and ``received_at`` is stamped by the collector. ``usersignals schema --iglu``
prints the schemas, or writes them as an Iglu static repository
(:func:`repository_files`), for a Snowplow pipeline's resolver.

Each schema is JSON Schema draft 4, as Iglu uses, built from the contract's tables like the
contract's own JSON Schema (:mod:`usersignals.ingest.schema`, whose per-field pieces these
reuse): the fields of the type (:func:`data_fields`: the common ones and the type's own, as
the SDK's typed call takes them), those the type requires in ``required``, ``null`` allowed
for the others (``null`` means absent, and Snowplow's loaders expect optional fields to say
so). Unlike the contract, which keeps an unknown top-level field in ``extra``,
``additionalProperties`` is ``false``, as in Iglu Central's schemas: free-form data goes in
``properties``, and a new field is a new schema version. So an object these schemas accept
is one the contract accepts (but for :data:`INEXPRESSIBLE`), and an object of the type's
fields that the contract accepts, these schemas accept (``tests/ingest/test_iglu.py``).
"""

from __future__ import annotations

import json
from typing import Any

from usersignals.ingest.contract import (
    EVENT_TYPES,
    FIELDS,
    MAX_EVENT_BYTES,
    MAX_PROPERTIES_DEPTH,
    REQUIRED_BY_TYPE,
)
from usersignals.ingest.schema import field_schema, json_value_schema
from usersignals.ingest.typed import METHOD_FIELDS

__all__ = [
    "FORMAT",
    "FROM_SNOWPLOW",
    "INEXPRESSIBLE",
    "META_SCHEMA",
    "VENDOR",
    "VERSION",
    "build_iglu_schema",
    "build_iglu_schemas",
    "data_fields",
    "event_type_of",
    "iglu_uri",
    "repository_files",
    "repository_path",
]

META_SCHEMA = (
    "http://iglucentral.com/schemas/com.snowplowanalytics.self-desc/schema/jsonschema/1-0-0#"
)
"""The ``$schema`` of every self-describing JSON Schema (Iglu's meta-schema, draft 4)."""
VENDOR = "io.usersignals"
FORMAT = "jsonschema"
VERSION = "1-0-0"
"""SchemaVer MODEL-REVISION-ADDITION of every schema published here."""

FROM_SNOWPLOW = ("event_id", "user_id", "ts", "type", "received_at")
"""Contract fields a self-describing event's data does not carry: ``eid``, ``uid``/``duid``
and ``dtm`` of the Snowplow event, the schema's name, and the collector's clock."""

INEXPRESSIBLE = (
    f"the event built from this data with the fields Snowplow carries is at most "
    f"{MAX_EVENT_BYTES} bytes of UTF-8 JSON",
    "'model_b' must differ from 'model_a'",
    "strings must be valid Unicode (no lone surrogates) and numbers must fit: integers of "
    "at most 4300 digits, floats finite",
)
"""Rules of the contract these schemas do not check (listed in the descriptions of the
schemas they concern)."""

_DEFS = "#/definitions/"


def iglu_uri(etype: str) -> str:
    """``iglu:io.usersignals/<etype>/jsonschema/1-0-0``: the schema a tracker names."""
    return f"iglu:{VENDOR}/{etype}/{FORMAT}/{VERSION}"


def event_type_of(uri: str) -> str | None:
    """The event type whose schema ``uri`` names exactly (:func:`iglu_uri`), else ``None``."""
    return next((etype for etype in EVENT_TYPES if uri == iglu_uri(etype)), None)


def data_fields(etype: str) -> tuple[str, ...]:
    """The fields of an ``etype`` event's data object, in the contract's order.

    Raises:
        KeyError: ``etype`` is not an event type.
    """
    if etype not in EVENT_TYPES:
        raise KeyError(etype)
    taken = {*METHOD_FIELDS[etype], *REQUIRED_BY_TYPE[etype]}
    return tuple(name for name in FIELDS if name in taken and name not in FROM_SNOWPLOW)


def build_iglu_schema(etype: str) -> dict[str, Any]:
    """The self-describing JSON Schema of an ``etype`` event's data (a fresh dict each call).

    Raises:
        KeyError: ``etype`` is not an event type.
    """
    fields = data_fields(etype)
    required = [name for name in fields if name in REQUIRED_BY_TYPE[etype]]
    rules = [rule for rule in INEXPRESSIBLE if "model_b" in fields or "'model_b'" not in rule]
    schema: dict[str, Any] = {
        "$schema": META_SCHEMA,
        "description": (
            f"A usersignals {etype} event (contract v1), sent by a Snowplow tracker as a "
            "self-describing event: the event without 'event_id' (Snowplow's eid), "
            "'user_id' (uid, else duid), 'ts' (dtm), 'type' (this schema's name) and "
            "'received_at' (the collector's). Not checked by this schema: " + "; ".join(rules) + "."
        ),
        "self": {"vendor": VENDOR, "name": etype, "format": FORMAT, "version": VERSION},
        "type": "object",
        "properties": {name: _property(name, optional=name not in required) for name in fields},
    }
    if required:  # draft 4: a "required" array has at least one name
        schema["required"] = required
    schema["additionalProperties"] = False
    if "properties" in fields:
        schema["definitions"] = {
            f"json{n}": json_value_schema(n, defs=_DEFS) for n in range(MAX_PROPERTIES_DEPTH + 1)
        }
    return schema


def build_iglu_schemas() -> list[dict[str, Any]]:
    """:func:`build_iglu_schema` of every event type, in the order of ``EVENT_TYPES``."""
    return [build_iglu_schema(etype) for etype in EVENT_TYPES]


def repository_path(etype: str) -> str:
    """``io.usersignals/<etype>/jsonschema/1-0-0``: the file of ``etype``'s schema under the
    ``schemas/`` folder of an Iglu static repository."""
    return f"{VENDOR}/{etype}/{FORMAT}/{VERSION}"


def repository_files() -> dict[str, str]:
    """Every schema as the text of its file (:func:`repository_path` to JSON, ending in a
    newline), in the order of ``EVENT_TYPES``."""
    files = {}
    for schema in build_iglu_schemas():
        text = json.dumps(schema, indent=2, ensure_ascii=False)
        files[repository_path(schema["self"]["name"])] = text + "\n"
    return files


def _property(name: str, *, optional: bool) -> dict[str, Any]:
    """The contract's piece for ``name``, with its JSON type stated and, if ``optional``,
    ``null`` allowed."""
    piece = field_schema(name, defs=_DEFS)
    description = piece.pop("description")
    kind = piece.pop("type", None)
    if kind is None:  # an enum: its values' JSON type
        kinds = {"string" if isinstance(v, str) else "integer" for v in piece["enum"]}
        kind = kinds.pop() if len(kinds) == 1 else sorted(kinds)
    if optional:
        kind = [*([kind] if isinstance(kind, str) else kind), "null"]
        if "enum" in piece:
            piece["enum"] = [*piece["enum"], None]
    return {"description": description, "type": kind, **piece}
