"""The OpenAPI 3.1 document of the collector's endpoints, served at ``GET /openapi.json``.

Built from the collector's own limits, so the document and the server cannot drift apart on
a number. Every status a route can answer is listed with its body, and every error body has
the one shape ``{"error", "message"}`` (on the capture endpoints with ``code`` too, the same
as ``error``, which the Segment and RudderStack SDKs read);
``tests/ingest/test_collector_openapi.py`` runs ``schemathesis`` against a real collector to
hold the server to it. The capture endpoints of the SDK wire formats (tag ``capture``) are
documented from their own table (:data:`~usersignals.ingest.capture_http.ENDPOINTS`), so a new
one is documented by adding it there.
"""

from __future__ import annotations

import json
from typing import Any

from usersignals.ingest.capture_http import ENDPOINTS, MAX_CAPTURE_EVENTS, Endpoint
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


def build_openapi(
    *, max_body_bytes: int, max_events: int, max_capture_bytes: int | None = None
) -> dict[str, Any]:
    """The document, for a collector taking ``max_body_bytes`` and ``max_events`` per request
    on ``/v1/events`` and ``max_capture_bytes`` on the capture endpoints (default: as much)."""
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
    paths: dict[str, dict[str, Any]] = {
        "/v1/events": {"post": events_post, "options": preflight},
        "/healthz": {"get": health},
        "/openapi.json": {"get": document},
    }
    capture_bytes = max_body_bytes if max_capture_bytes is None else max_capture_bytes
    for endpoint in ENDPOINTS:
        operations = paths.setdefault(endpoint.path, {})
        operations[endpoint.method.lower()] = _capture_operation(endpoint, capture_bytes)
        operations["options"] = _capture_preflight(endpoint)
    return {
        "openapi": "3.1.0",
        "info": {"title": "usersignals collector", "version": "1"},
        "paths": paths,
        "components": {
            "securitySchemes": {
                "writeKey": {"type": "http", "scheme": "bearer"},
                "basicKey": {"type": "http", "scheme": "basic"},
            },
            "headers": {
                "Retry-After": {"schema": {"type": "string", "pattern": "^[0-9]+$"}},
                "WWW-Authenticate": {"schema": {"type": "string"}},
            },
            "schemas": {**_SCHEMAS, "Event": _event_schema()},
        },
    }


_TITLES = {
    ("posthog", "events"): "PostHog capture (posthog-python, posthog-js, posthog-node)",
    ("posthog", "flags"): "PostHog feature flags: none",
    ("posthog", "remote_config"): "PostHog remote config (posthog-js): nothing switched on",
    ("segment", "events"): "Segment / RudderStack capture",
    ("segment", "settings"): "Segment analytics.js settings: send to this collector",
    ("segment", "source_config"): "RudderStack JS source config: enabled, no destinations",
    ("snowplow", "events"): "Snowplow tracker protocol 2 (POST)",
    ("snowplow", "pixel"): "Snowplow tracker protocol 2 (GET pixel)",
}

_ACCEPTED = {"posthog": "PostHogAccepted", "segment": "SegmentAccepted"}

_SNOWPLOW_QUERY = ("e", "eid", "aid", "p", "tv", "dtm", "stm", "uid", "duid", "sid", "ue_px", "cx")


def _errors(*statuses: str) -> dict[str, Any]:
    table = {
        "400": ("The body cannot be decoded; its bytes were dead-lettered", ()),
        "401": ("Missing or unknown write key", ("WWW-Authenticate",)),
        "403": ("Not on the Snowplow allow-lists (app id, origin)", ()),
        "408": ("The body did not arrive in time", ()),
        "413": ("Body over the limit (after inflating) or too many events", ()),
        "415": ("An unknown Content-Encoding", ()),
        "429": ("Too many requests or refused keys", ("Retry-After",)),
        "503": ("Kafka unavailable; nothing was acknowledged", ("Retry-After",)),
    }
    return {s: _answer(table[s][0], "CaptureError", *table[s][1]) for s in statuses}


def _capture_operation(endpoint: Endpoint, max_bytes: int) -> dict[str, Any]:
    """The OpenAPI operation of one capture route (the module docstring of
    :mod:`usersignals.ingest.capture_http` has the rules)."""
    title = _TITLES[endpoint.protocol, endpoint.kind]
    operation: dict[str, Any] = {
        "summary": title if endpoint.call is None else f"{title}: {endpoint.call}",
        "tags": ["capture"],
    }
    kind = endpoint.kind
    if kind in ("events", "pixel"):
        operation["security"] = [{"writeKey": []}, {"basicKey": []}, {}]
    if kind == "events":
        operation["description"] = (
            f"The SDK's own body: JSON, text/plain JSON, gzip (by Content-Encoding or by its "
            f"magic bytes) or a form `data=<base64>`, at most {max_bytes} bytes after inflating "
            f"and {MAX_CAPTURE_EVENTS} events. 200 once every element is in Kafka: the events "
            "accepted, the others for the stream worker to dead-letter."
        )
        operation["parameters"] = [_CONTENT_ENCODING]
        if endpoint.protocol == "posthog":
            operation["parameters"] += [_query("compression", ["gzip-js", "base64"]), _query("_")]
        operation["requestBody"] = {
            "required": True,
            "content": {
                _JSON: {"schema": {}},
                "text/plain": {"schema": {"type": "string"}},
                "application/x-www-form-urlencoded": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "data": {"type": "string"},
                            "compression": {"type": "string"},
                        },
                    }
                },
            },
        }
        statuses = ["400", "401", "408", "413", "415", "429", "503"]
        if endpoint.protocol == "snowplow":
            statuses.insert(2, "403")
        ok: dict[str, Any]
        if endpoint.protocol == "snowplow":
            ok = {
                "description": "Every event stored",
                "content": {"text/plain": {"schema": {"type": "string", "const": "ok"}}},
            }
        else:
            ok = _answer("Every element stored", _ACCEPTED[endpoint.protocol])
        operation["responses"] = {"200": ok, **_errors(*statuses)}
    elif kind == "pixel":
        operation["description"] = "One event as query parameters; answered with a 1x1 GIF."
        operation["parameters"] = [_query(name) for name in _SNOWPLOW_QUERY]
        operation["responses"] = {
            "200": {
                "description": "Stored (a 1x1 GIF)",
                "content": {"image/gif": {"schema": {"type": "string", "format": "binary"}}},
            },
            **_errors("401", "403", "429", "503"),
        }
    else:
        if kind == "flags":
            operation["requestBody"] = {
                "required": False,
                "content": {_JSON: {"schema": {}}, "text/plain": {"schema": {"type": "string"}}},
            }
            operation["parameters"] = [_CONTENT_ENCODING, _query("v"), _query("config")]
            errors = {
                "400": _answer("A body not valid in its Content-Encoding", "CaptureError"),
                **_errors("408", "413", "415", "429"),
            }
        elif kind == "settings":
            errors = {
                "400": _answer("A Host header that is not a host name", "CaptureError"),
                **_errors("429"),
            }
        else:
            errors = _errors("429")
        for name in _path_parameters(endpoint.path):
            operation.setdefault("parameters", []).append(
                {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            )
        operation["responses"] = {
            "200": _answer("The SDK's start-up answer", "StartUp"),
            **errors,
        }
    return operation


def _capture_preflight(endpoint: Endpoint) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": "CORS preflight",
        "tags": ["capture"],
        "responses": {"204": {"description": "Allowed methods and headers"}},
    }
    params = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _path_parameters(endpoint.path)
    ]
    if params:
        operation["parameters"] = params
    return operation


def _path_parameters(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]


def _query(name: str, values: list[str] | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"} if values is None else {"enum": values}
    return {"name": name, "in": "query", "required": False, "schema": schema}


_CONTENT_ENCODING = {
    "name": "Content-Encoding",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "enum": ["identity", "gzip", "x-gzip", "deflate"]},
}


_SCHEMAS: dict[str, Any] = {
    "PostHogAccepted": {
        "type": "object",
        "required": ["status"],
        "properties": {"status": {"const": 1}},
    },
    "SegmentAccepted": {
        "type": "object",
        "required": ["success"],
        "properties": {"success": {"const": True}},
    },
    "StartUp": {"type": "object"},
    "Error": {
        "type": "object",
        "required": ["error", "message"],
        "properties": {"error": {"type": "string"}, "message": {"type": "string"}},
        "additionalProperties": False,
    },
    "CaptureError": {
        "type": "object",
        "required": ["error", "message", "code"],
        "properties": {
            "error": {"type": "string"},
            "message": {"type": "string"},
            "code": {"type": "string", "description": "The same as `error`"},
        },
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
