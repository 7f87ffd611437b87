"""The OpenAPI 3.1 document of the collector's endpoints, served at ``GET /openapi.json``.

Built from the collector's own limits, so the document and the server cannot drift apart on
a number. Every status a route can answer is listed with its body, and every error body has
the one shape ``{"error", "message"}``; ``tests/ingest/test_collector_openapi.py`` runs
``schemathesis`` against a real collector to hold the server to it. A new route adds its
entry to :data:`_PATHS`.
"""

from __future__ import annotations

import json
from typing import Any

from usersignals.ingest.schema import build_schema

__all__ = ["build_openapi"]

_JSON = "application/json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _answer(description: str, schema: str, *headers: str) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": description,
        "content": {_JSON: {"schema": _ref(schema)}},
    }
    if headers:
        answer["headers"] = {h: {"$ref": f"#/components/headers/{h}"} for h in headers}
    return answer


def _batch(max_events: int) -> dict[str, Any]:
    array = {"type": "array", "items": _ref("Event"), "minItems": 1, "maxItems": max_events}
    return {"oneOf": [array, _ref("Event")]}


def _event_schema() -> dict[str, Any]:
    """The contract's event schema (``usersignals schema``), its ``$defs`` moved under
    ``components/schemas/Event`` so that its references resolve inside this document."""
    schema = {k: v for k, v in build_schema().items() if k not in ("$schema", "$id")}
    text = json.dumps(schema).replace('"#/$defs/', '"#/components/schemas/Event/$defs/')
    moved: dict[str, Any] = json.loads(text)
    return moved


def build_openapi(*, max_body_bytes: int, max_events: int) -> dict[str, Any]:
    """The document, for a collector taking ``max_body_bytes`` and ``max_events`` per request."""
    error = _answer
    events_post = {
        "summary": "Send a batch of events",
        "description": (
            f"A JSON array of 1 to {max_events} events (or one event object), at most "
            f"{max_body_bytes} bytes after decoding `Content-Encoding` (gzip, deflate). "
            "A 2xx answer means the accepted events are stored in Kafka."
        ),
        "security": [{"writeKey": []}, {}],
        "parameters": [
            {
                "name": "Content-Encoding",
                "in": "header",
                "required": False,
                "schema": {"type": "string", "enum": ["identity", "gzip", "x-gzip", "deflate"]},
            }
        ],
        "requestBody": {"required": True, "content": {_JSON: {"schema": _batch(max_events)}}},
        "responses": {
            "200": _answer("Every event accepted", "Outcome"),
            "207": _answer("Some events accepted, some rejected", "Outcome"),
            "400": {
                "description": "Nothing accepted, or a body that cannot be decoded",
                "content": {_JSON: {"schema": {"oneOf": [_ref("Outcome"), _ref("Error")]}}},
            },
            "401": error("Missing or unknown write key", "Error", "WWW-Authenticate"),
            "408": error("The body did not arrive in time", "Error"),
            "413": error(f"Body over {max_body_bytes} bytes or over {max_events} events", "Error"),
            "415": error("Not application/json in UTF-8, or an unknown encoding", "Error"),
            "429": error("Too many requests or refused keys", "Error", "Retry-After"),
            "503": error("Kafka unavailable; nothing was acknowledged", "Error", "Retry-After"),
        },
    }
    preflight = {
        "summary": "CORS preflight",
        "responses": {"204": {"description": "Allowed methods and headers"}},
    }
    health = {
        "summary": "Whether the collector can write to Kafka, and which broker it speaks to",
        "responses": {
            "200": _answer("Kafka reachable", "Health"),
            "503": _answer("Kafka unreachable", "Health"),
        },
    }
    document = {
        "summary": "This document",
        "responses": {
            "200": {"description": "OpenAPI 3.1", "content": {_JSON: {"schema": {}}}},
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "usersignals collector", "version": "1"},
        "paths": {
            "/v1/events": {"post": events_post, "options": preflight},
            "/healthz": {"get": health},
            "/openapi.json": {"get": document},
        },
        "components": {
            "securitySchemes": {"writeKey": {"type": "http", "scheme": "bearer"}},
            "headers": {
                "Retry-After": {"schema": {"type": "string", "pattern": "^[0-9]+$"}},
                "WWW-Authenticate": {"schema": {"type": "string"}},
            },
            "schemas": {**_SCHEMAS, "Event": _event_schema()},
        },
    }


_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error", "message"],
        "properties": {"error": {"type": "string"}, "message": {"type": "string"}},
        "additionalProperties": False,
    },
    "Rejection": {
        "type": "object",
        "required": ["index", "reason", "field", "message"],
        "properties": {
            "index": {"type": ["integer", "null"]},
            "reason": {"type": "string"},
            "field": {"type": ["string", "null"]},
            "message": {"type": "string"},
        },
        "additionalProperties": False,
    },
    "Outcome": {
        "type": "object",
        "required": ["accepted", "rejected"],
        "properties": {
            "accepted": {"type": "array", "items": {"type": "string"}},
            "rejected": {"type": "array", "items": _ref("Rejection")},
        },
        "additionalProperties": False,
    },
    "Health": {
        "type": "object",
        "required": ["status", "broker"],
        "properties": {
            "status": {"type": "string", "enum": ["ok", "kafka_unavailable"]},
            "broker": {
                "type": "object",
                "required": ["kind", "durable", "cluster_id", "bootstrap"],
                "properties": {
                    "kind": {"type": "string", "enum": ["tansu", "kafka", "unknown"]},
                    "durable": {"type": ["boolean", "null"]},
                    "cluster_id": {"type": ["string", "null"]},
                    "bootstrap": {"type": "string"},
                },
            },
        },
    },
}
