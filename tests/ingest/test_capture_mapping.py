"""The capture mapping (docs/capture.md): SDK payloads to contract events, as tables.

The bodies below were captured from the real SDKs (posthog 7.91.1, segment-analytics-python
2.4.0, rudder-sdk-python 2.1.9, snowplow-tracker 1.1.0) by running each client against a local
recording server; :func:`test_the_installed_sdks_still_send_these_shapes` runs the installed
clients the same way and checks that they still send these shapes. The posthog-js, analytics.js
and RudderStack JS shapes are written from those SDKs' wire formats.
"""

# ruff: noqa: E501  (captured bodies: base64 and query strings are kept whole)

from __future__ import annotations

import base64
import copy
import gzip
import importlib
import json
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from usersignals.ingest import capture, contract
from usersignals.ingest.capture import (
    CLIENT_TS,
    EVENT_NAMES,
    PROTOCOLS,
    TYPE_FIELDS,
    Mapped,
    map_posthog,
    map_segment,
    map_snowplow,
    normalise_name,
    payload_key,
    snowplow_app_ids,
)
from usersignals.ingest.rules import REQUIRED_BY_TYPE
from usersignals.ingest.timestamps import format_ts

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ------------------------------------------------------------------------- captured bodies

# What posthog-python 7.91.1 adds to every capture on this host, and to every call.
_PY_SYSTEM: dict[str, Any] = {
    "$python_runtime": "CPython",
    "$python_version": "3.11.7",
    "$os": "Linux",
    "$os_version": "12",
    "$os_distro": "Debian GNU/Linux",
}
_PY_LIB: dict[str, Any] = {
    "$lib": "posthog-python",
    "$lib_version": "7.91.1",
    "$geoip_disable": True,
    "$is_server": True,
}

POSTHOG_PYTHON: dict[str, Any] = {
    "batch": [
        {
            "properties": {
                "$session_id": "s-1",
                "model": "m-5.2",
                "tokens": 12,
                "message_id": "msg-1",
                **_PY_SYSTEM,
                **_PY_LIB,
            },
            "timestamp": "2026-12-04T18:32:47.464894+00:00",
            "distinct_id": "user-1",
            "event": "message_sent",
            "uuid": "c5befdcb-2388-46f6-8131-58c7fb05a0e4",
        },
        {
            "properties": {"message_id": "msg-1", **_PY_SYSTEM, **_PY_LIB},
            "timestamp": "2026-12-04T18:32:47.465212+00:00",
            "distinct_id": "user-1",
            "event": "thumbs_up",
            "uuid": "33652145-13a7-46e6-8dd9-0e696fcf1b0c",
        },
        {
            "properties": {"$current_url": "https://x/home", **_PY_SYSTEM, **_PY_LIB},
            "timestamp": "2026-12-04T18:32:47.465463+00:00",
            "distinct_id": "user-1",
            "event": "$pageview",
            "uuid": "094ca720-f0e7-45ab-8245-5de66d1684da",
        },
        {
            "properties": {**_PY_SYSTEM, **_PY_LIB},
            "timestamp": "2026-08-03T12:00:00+00:00",
            "distinct_id": "user-1",
            "event": "Session Started",
            "uuid": "0831563f-0ff9-417a-b1a1-6a17fd32d191",
        },
        {
            "timestamp": "2026-12-04T18:32:47.465691+00:00",
            "distinct_id": "user-1",
            "$set": {"plan": "pro"},
            "event": "$set",
            "properties": {**_PY_LIB},
            "uuid": "53d5abb5-0e2b-4eb3-beb7-8425bc3e1cd4",
        },
        {
            "timestamp": "2026-12-04T18:32:47.465760+00:00",
            "distinct_id": "user-1",
            "$set_once": {"first": "x"},
            "event": "$set_once",
            "properties": {**_PY_LIB},
            "uuid": "173ba157-2528-4d93-bf12-e60c08e85f96",
        },
        {
            "properties": {"distinct_id": "alias-1", "alias": "user-1", **_PY_LIB},
            "timestamp": "2026-12-04T18:32:47.465789+00:00",
            "event": "$create_alias",
            "distinct_id": "alias-1",
            "uuid": "1e7c1cd8-fb50-4976-806f-c434d1d91651",
        },
        {
            "event": "$groupidentify",
            "properties": {
                "$group_type": "company",
                "$group_key": "acme",
                "$group_set": {"name": "Acme"},
                **_PY_LIB,
            },
            "distinct_id": "252e12ff-8a1f-4c73-a0c3-0f9d5a9d2621",
            "timestamp": "2026-12-04T18:32:47.465826+00:00",
            "uuid": "85ab5e4b-c4c9-40ff-9a3e-1ce782520dd7",
        },
        {
            "properties": {
                "$exception_list": [
                    {
                        "mechanism": {
                            "exception_id": 0,
                            "type": "generic",
                            "handled": True,
                            "synthetic": True,
                        },
                        "module": None,
                        "type": "ValueError",
                        "value": "boom",
                        "stacktrace": {
                            "frames": [
                                {
                                    "platform": "python",
                                    "filename": "capture.py",
                                    "abs_path": "/srv/app/capture.py",
                                    "function": "<module>",
                                    "module": "__main__",
                                    "lineno": 48,
                                    "pre_context": ["    try: ph.alias('alias-1', 'user-1')"],
                                    "context_line": "raise ValueError('boom')",
                                    "post_context": ["    ph.flush(); ph.shutdown()"],
                                }
                            ],
                            "type": "raw",
                        },
                    }
                ],
                "$exception_level": "error",
                **_PY_SYSTEM,
                **_PY_LIB,
            },
            "timestamp": "2026-12-04T18:32:47.466446+00:00",
            "distinct_id": "user-1",
            "event": "$exception",
            "uuid": "9a998ac7-c248-4312-8fbd-847d4ee4bbe6",
        },
    ],
    "historical_migration": False,
    "sent_at": "2026-12-04T18:32:47.466874+00:00",
    "api_key": "phc_testkey",
}

_SEG_LIB = {"library": {"name": "analytics-python", "version": "2.4.0"}}
SEGMENT_PYTHON: dict[str, Any] = {
    "batch": [
        {
            "integrations": {},
            "anonymousId": None,
            "properties": {"model": "m-5.2", "role": "user", "session_id": "s-1"},
            "timestamp": "2026-12-04T18:32:49.426+00:00",
            "context": {"os": {"name": "iOS"}, **_SEG_LIB},
            "userId": "user-1",
            "type": "track",
            "event": "Message Sent",
            "messageId": "565687a3-5950-49e0-bf4c-9b48fa4442e3",
        },
        {
            "integrations": {},
            "anonymousId": "anon-1",
            "properties": {"message_id": "msg-1"},
            "timestamp": "2026-12-04T18:32:49.427+00:00",
            "context": {**_SEG_LIB},
            "userId": None,
            "type": "track",
            "event": "Thumbs Down",
            "messageId": "3adaff80-700a-47be-8510-54119260253f",
        },
        {
            "integrations": {},
            "anonymousId": None,
            "timestamp": "2026-12-04T18:32:49.427+00:00",
            "context": {**_SEG_LIB},
            "type": "identify",
            "userId": "user-1",
            "traits": {"email": "a@b"},
            "messageId": "1adb6cab-d175-4bef-894a-7c033d49e1dc",
        },
        {
            "integrations": {},
            "anonymousId": None,
            "properties": {"url": "https://x"},
            "timestamp": "2026-12-04T18:32:49.427+00:00",
            "category": "Docs",
            "context": {**_SEG_LIB},
            "userId": "user-1",
            "type": "page",
            "name": "Home",
            "messageId": "49b3c440-85e6-4807-a018-b491f17d86b4",
        },
        {
            "integrations": {},
            "anonymousId": None,
            "properties": {},
            "timestamp": "2026-12-04T18:32:49.427+00:00",
            "category": "Onboarding",
            "context": {**_SEG_LIB},
            "userId": "user-1",
            "type": "screen",
            "name": "Welcome",
            "messageId": "acc9494a-d580-49be-83b3-8626decae509",
        },
        {
            "integrations": {},
            "anonymousId": None,
            "timestamp": "2026-12-04T18:32:49.427+00:00",
            "groupId": "g-1",
            "context": {**_SEG_LIB},
            "userId": "user-1",
            "traits": {"name": "Acme"},
            "type": "group",
            "messageId": "8ade24fa-a18f-4d74-81d1-7194ad68b16b",
        },
        {
            "integrations": {},
            "previousId": "anon-1",
            "timestamp": "2026-12-04T18:32:49.427+00:00",
            "context": {**_SEG_LIB},
            "userId": "user-1",
            "type": "alias",
            "messageId": "e1adb9f6-44e1-43c6-980e-6613638af008",
            "anonymousId": None,
        },
    ],
    "sentAt": "2026-12-04T18:32:49.926931+00:00",
    "writeKey": "seg_key",
}

_RUDDER_LIB = {"library": {"name": "analytics-python", "version": "2.1.9"}}
RUDDER_PYTHON: dict[str, Any] = {  # gzip, HTTP Basic only: no writeKey in the body
    "batch": [
        {
            "integrations": {"All": True},
            "anonymousId": None,
            "properties": {"duration_s": 61.5},
            "timestamp": "2026-12-04T18:32:52.240366+00:00",
            "context": {**_RUDDER_LIB},
            "userId": "user-1",
            "type": "track",
            "event": "Session Ended",
            "messageId": "b91cfd60-73f5-40f5-a8d0-c695cb24fa60",
            "channel": "server",
        },
        {
            "integrations": {"All": True},
            "anonymousId": None,
            "timestamp": "2026-12-04T18:32:52.240621+00:00",
            "context": {"traits": {"email": "a@b"}, **_RUDDER_LIB},
            "type": "identify",
            "userId": "user-1",
            "messageId": "d1e0ea2e-e670-455b-b79a-f7417ee8bd7b",
            "channel": "server",
        },
    ],
    "sentAt": "2026-12-04T18:32:52.740625+00:00",
}

_SP_TRACKER = {"tv": "py-1.1.0", "tna": "ns", "aid": "chat-app", "stm": "1796409175000"}
SNOWPLOW_TP2: dict[str, Any] = {
    "schema": "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4",
    "data": [
        {
            "e": "ue",
            "ue_px": "eyJzY2hlbWEiOiAiaWdsdTpjb20uc25vd3Bsb3dhbmFseXRpY3Muc25vd3Bsb3cvdW5zdHJ1Y3RfZXZlbnQvanNvbnNjaGVtYS8xLTAtMCIsICJkYXRhIjogeyJzY2hlbWEiOiAiaWdsdTppby51c2Vyc2lnbmFscy9tZXNzYWdlL2pzb25zY2hlbWEvMS0wLTAiLCAiZGF0YSI6IHsicm9sZSI6ICJ1c2VyIiwgInRva2VucyI6IDUsICJzZXNzaW9uX2lkIjogInMtMSJ9fX0=",
            "cx": "eyJzY2hlbWEiOiAiaWdsdTpjb20uc25vd3Bsb3dhbmFseXRpY3Muc25vd3Bsb3cvY29udGV4dHMvanNvbnNjaGVtYS8xLTAtMSIsICJkYXRhIjogW3sic2NoZW1hIjogImlnbHU6Y29tLnNub3dwbG93YW5hbHl0aWNzLnNub3dwbG93L21vYmlsZV9jb250ZXh0L2pzb25zY2hlbWEvMS0wLTIiLCAiZGF0YSI6IHsib3NUeXBlIjogImFuZHJvaWQiLCAib3NWZXJzaW9uIjogIjE0IiwgImRldmljZU1hbnVmYWN0dXJlciI6ICJ4IiwgImRldmljZU1vZGVsIjogInkifX1dfQ==",
            "p": "mob",
            "uid": "user-1",
            "eid": "d0661ef7-86e7-4600-aac7-1e81bdd51d87",
            "dtm": "1796409175093",
            **_SP_TRACKER,
        },
        {
            "e": "se",
            "se_ca": "chat",
            "se_ac": "thumbs_up",
            "se_la": "msg-1",
            "se_pr": "p",
            "se_va": "1.5",
            "p": "mob",
            "uid": "user-1",
            "eid": "6173f40d-bf57-4d01-899e-8f466bf2a151",
            "dtm": "1796409175093",
            **_SP_TRACKER,
        },
        {
            "e": "pv",
            "url": "https://x/home",
            "page": "Home",
            "p": "mob",
            "uid": "user-1",
            "eid": "33119099-8d00-40b0-a0a0-c140cb68db72",
            "dtm": "1796409175093",
            **_SP_TRACKER,
        },
        {
            "e": "pp",
            "url": "https://x/home",
            "pp_mix": "0",
            "pp_max": "1",
            "pp_miy": "0",
            "pp_may": "1",
            "p": "mob",
            "uid": "user-1",
            "eid": "deace836-9922-4246-82ac-f3af60a2ce69",
            "dtm": "1796409175093",
            **_SP_TRACKER,
        },
        {
            "e": "ue",
            "ue_px": "eyJzY2hlbWEiOiAiaWdsdTpjb20uc25vd3Bsb3dhbmFseXRpY3Muc25vd3Bsb3cvdW5zdHJ1Y3RfZXZlbnQvanNvbnNjaGVtYS8xLTAtMCIsICJkYXRhIjogeyJzY2hlbWEiOiAiaWdsdTpjb20uc25vd3Bsb3dhbmFseXRpY3MubW9iaWxlL3NjcmVlbl92aWV3L2pzb25zY2hlbWEvMS0wLTAiLCAiZGF0YSI6IHsiaWQiOiAiOWYwYWQ4YmYtMDAwMC00MDAwLTgwMDAtMDAwMDAwMDAwMDAwIiwgIm5hbWUiOiAiV2VsY29tZSJ9fX0=",
            "p": "mob",
            "uid": "user-1",
            "eid": "fb8ed97b-cb3f-42c4-8da9-6468fda2b7f2",
            "dtm": "1796409175093",
            **_SP_TRACKER,
        },
        {
            "e": "ue",
            "ue_px": "eyJzY2hlbWEiOiAiaWdsdTpjb20uc25vd3Bsb3dhbmFseXRpY3Muc25vd3Bsb3cvdW5zdHJ1Y3RfZXZlbnQvanNvbnNjaGVtYS8xLTAtMCIsICJkYXRhIjogeyJzY2hlbWEiOiAiaWdsdTpjb20uYWNtZS9idXR0b25fY2xpY2svanNvbnNjaGVtYS8xLTAtMCIsICJkYXRhIjogeyJpZCI6ICJiMSJ9fX0=",
            "p": "mob",
            "uid": "user-1",
            "eid": "a2e9d8e0-2454-4805-91b7-97f64da2fe53",
            "dtm": "1796409175093",
            **_SP_TRACKER,
        },
    ],
}

SNOWPLOW_GET = [  # the same six calls through GET /i (encode_base64=False: ue_pr and co)
    "e=ue&ue_pr=%7B%22schema%22%3A+%22iglu%3Acom.snowplowanalytics.snowplow%2Funstruct_event%2Fjsonschema%2F1-0-0%22%2C+%22data%22%3A+%7B%22schema%22%3A+%22iglu%3Aio.usersignals%2Fmessage%2Fjsonschema%2F1-0-0%22%2C+%22data%22%3A+%7B%22role%22%3A+%22user%22%2C+%22tokens%22%3A+5%2C+%22session_id%22%3A+%22s-1%22%7D%7D%7D&co=%7B%22schema%22%3A+%22iglu%3Acom.snowplowanalytics.snowplow%2Fcontexts%2Fjsonschema%2F1-0-1%22%2C+%22data%22%3A+%5B%7B%22schema%22%3A+%22iglu%3Acom.snowplowanalytics.snowplow%2Fmobile_context%2Fjsonschema%2F1-0-2%22%2C+%22data%22%3A+%7B%22osType%22%3A+%22android%22%2C+%22osVersion%22%3A+%2214%22%2C+%22deviceManufacturer%22%3A+%22x%22%2C+%22deviceModel%22%3A+%22y%22%7D%7D%5D%7D&p=mob&uid=user-1&eid=fb3d02b0-8837-45a6-95e0-7368350b7022&dtm=1796409177924&tv=py-1.1.0&tna=ns&aid=chat-app&stm=1796409177000",
    "e=se&se_ca=chat&se_ac=thumbs_up&se_la=msg-1&se_pr=p&se_va=1.5&p=mob&uid=user-1&eid=9feacd93-50e7-4202-9773-1b1d346f017f&dtm=1796409177929&tv=py-1.1.0&tna=ns&aid=chat-app&stm=1796409177000",
    "e=pv&url=https%3A%2F%2Fx%2Fhome&page=Home&p=mob&uid=user-1&eid=b9d1cc4e-ff0d-4f25-b2de-54b549be8d42&dtm=1796409177934&tv=py-1.1.0&tna=ns&aid=chat-app&stm=1796409177000",
    "e=pp&url=https%3A%2F%2Fx%2Fhome&pp_mix=0&pp_max=1&pp_miy=0&pp_may=1&p=mob&uid=user-1&eid=b189ae14-308e-4714-86c0-ec6d30d860e7&dtm=1796409177942&tv=py-1.1.0&tna=ns&aid=chat-app&stm=1796409177000",
    "e=ue&ue_pr=%7B%22schema%22%3A+%22iglu%3Acom.snowplowanalytics.snowplow%2Funstruct_event%2Fjsonschema%2F1-0-0%22%2C+%22data%22%3A+%7B%22schema%22%3A+%22iglu%3Acom.snowplowanalytics.mobile%2Fscreen_view%2Fjsonschema%2F1-0-0%22%2C+%22data%22%3A+%7B%22id%22%3A+%229f0ad8bf-0000-4000-8000-000000000000%22%2C+%22name%22%3A+%22Welcome%22%7D%7D%7D&p=mob&uid=user-1&eid=f67aae19-0c32-476e-a9a1-d7087198281d&dtm=1796409177948&tv=py-1.1.0&tna=ns&aid=chat-app&stm=1796409177000",
    "e=ue&ue_pr=%7B%22schema%22%3A+%22iglu%3Acom.snowplowanalytics.snowplow%2Funstruct_event%2Fjsonschema%2F1-0-0%22%2C+%22data%22%3A+%7B%22schema%22%3A+%22iglu%3Acom.acme%2Fbutton_click%2Fjsonschema%2F1-0-0%22%2C+%22data%22%3A+%7B%22id%22%3A+%22b1%22%7D%7D%7D&p=mob&uid=user-1&eid=eab58c61-3a9e-47ff-9203-09cfafc7cacf&dtm=1796409177954&tv=py-1.1.0&tna=ns&aid=chat-app&stm=1796409177000",
]

# posthog-js (browser): POST /e/ with a list of events; the key and the user in the properties.
POSTHOG_JS: list[dict[str, Any]] = [
    {
        "uuid": "01932b4e-7c1a-7000-8000-00000000a001",
        "event": "$pageview",
        "properties": {
            "$os": "Mac OS X",
            "$browser": "Chrome",
            "$device_type": "Desktop",
            "$current_url": "https://chat.example/c/1",
            "$lib": "web",
            "$lib_version": "1.200.0",
            "distinct_id": "u-js",
            "$session_id": "01932b4e-7c1a-7000-8000-00000000s001",
            "$window_id": "01932b4e-7c1a-7000-8000-00000000w001",
            "token": "phc_browser",
        },
        "timestamp": "2026-12-04T18:30:00.000Z",
    },
    {
        "uuid": "01932b4e-7c1a-7000-8000-00000000a002",
        "event": "message received",
        "properties": {
            "$lib": "web",
            "distinct_id": "u-js",
            "$session_id": "01932b4e-7c1a-7000-8000-00000000s001",
            "token": "phc_browser",
            "model": "m-5.2",
            "tokens": 812,
            "message_id": "msg-9",
        },
        "timestamp": "2026-12-04T18:30:01.000Z",
    },
    {
        "uuid": "01932b4e-7c1a-7000-8000-00000000a003",
        "event": "$identify",
        "properties": {
            "$lib": "web",
            "distinct_id": "u-js",
            "$anon_distinct_id": "anon-js",
            "token": "phc_browser",
            "$set": {"email": "a@b"},
        },
        "$set_once": {"first_seen": "2026-12-04"},
        "timestamp": "2026-12-04T18:30:02.000Z",
    },
]

# analytics.js (/v1/t, text/plain): one message with its writeKey and sentAt.
ANALYTICS_JS_TRACK: dict[str, Any] = {
    "timestamp": "2026-12-04T18:30:00.000Z",
    "integrations": {},
    "type": "track",
    "event": "Preference",
    "properties": {"model_a": "m-5.1", "model_b": "m-5.2", "winner": "b"},
    "context": {
        "page": {"path": "/c/1", "url": "https://chat.example/c/1"},
        "userAgent": "Mozilla/5.0",
        "library": {"name": "analytics.js", "version": "next-1.70.0"},
    },
    "messageId": "ajs-next-1733337000000-0001",
    "anonymousId": "anon-ajs",
    "userId": "u-ajs",
    "writeKey": "seg_browser",
    "sentAt": "2026-12-04T18:30:00.250Z",
    "_metadata": {"bundled": ["Segment.io"], "unbundled": []},
}

# RudderStack JS: originalTimestamp + sentAt per message, a numeric context.sessionId.
RUDDER_JS_TRACK: dict[str, Any] = {
    "channel": "web",
    "context": {
        "library": {"name": "RudderLabs JavaScript SDK", "version": "3.11.0"},
        "sessionId": 1733337000000,
        "userAgent": "Mozilla/5.0",
    },
    "type": "track",
    "messageId": "a2b8e3c4-0000-4000-8000-00000000r001",
    "originalTimestamp": "2026-12-04T18:30:00.000Z",
    "anonymousId": "anon-rjs",
    "userId": "",
    "event": "risk flagged",
    "properties": {"category": "mania", "severity": "high", "source": "classifier"},
    "integrations": {"All": True},
    "sentAt": "2026-12-04T18:30:00.100Z",
}


def received(sent: str, after: float = 0.5) -> datetime:
    """A moment of receipt ``after`` seconds past an RFC 3339 send time."""
    return datetime.fromisoformat(sent.replace("Z", "+00:00")) + timedelta(seconds=after)


def fields(m: Mapped) -> dict[str, Any]:
    """The mapped event's contract fields (canonical JSON), without event_id, ts, properties."""
    assert m.event is not None, m.rejection
    wire = json.loads(contract.encode_event(m.event))
    return {k: v for k, v in wire.items() if k not in ("event_id", "ts", "properties")}


def props(m: Mapped) -> dict[str, Any]:
    assert m.event is not None, m.rejection
    return dict(m.event.properties or {})


def ts(m: Mapped) -> str:
    assert m.event is not None, m.rejection
    return format_ts(m.event.ts)


# -------------------------------------------------------------------------- PostHog tables

# fmt: off
POSTHOG_ROWS = [
    (0, {"type": "message", "user_id": "user-1", "session_id": "s-1", "model": "m-5.2", "platform": "api", "role": "user", "tokens": 12, "message_id": "msg-1"}),
    (1, {"type": "feedback", "user_id": "user-1", "platform": "api", "message_id": "msg-1", "rating": 1}),
    (2, {"type": "custom", "user_id": "user-1", "platform": "api", "name": "$pageview"}),
    (3, {"type": "session_start", "user_id": "user-1", "platform": "api"}),
    (4, {"type": "identify", "user_id": "user-1", "name": "$set"}),
    (5, {"type": "identify", "user_id": "user-1", "name": "$set_once"}),
    (6, {"type": "identify", "user_id": "alias-1", "name": "$create_alias"}),
    (7, {"type": "identify", "user_id": "252e12ff-8a1f-4c73-a0c3-0f9d5a9d2621", "name": "$groupidentify"}),
    (8, {"type": "custom", "user_id": "user-1", "platform": "api", "name": "$exception"}),
]
# fmt: on


@pytest.mark.parametrize(("index", "expected"), POSTHOG_ROWS)
def test_posthog_python_batch(index: int, expected: dict[str, Any]) -> None:
    at = received(POSTHOG_PYTHON["sent_at"])
    got = map_posthog(POSTHOG_PYTHON, received_at=at)
    assert len(got) == len(POSTHOG_PYTHON["batch"])
    m = got[index]
    element = POSTHOG_PYTHON["batch"][index]
    assert (m.index, m.rejection, m.user_id) == (index, None, expected["user_id"])
    assert fields(m) == expected
    assert m.event is not None
    assert m.event.event_id == element["uuid"]
    assert m.event.received_at is None


def test_posthog_properties_keep_all_but_the_fields_consumed() -> None:
    got = map_posthog(POSTHOG_PYTHON, received_at=received(POSTHOG_PYTHON["sent_at"]))
    # $session_id, model, tokens and message_id lifted; the client's time kept
    assert props(got[0]) == {**_PY_SYSTEM, **_PY_LIB, CLIENT_TS: "2026-12-04T18:32:47.464894Z"}
    assert set(props(got[2])) == {"$current_url", *_PY_SYSTEM, *_PY_LIB, CLIENT_TS}
    # identity calls: the call's own fields verbatim ($set at the top level included)
    assert props(got[4]) == {
        **_PY_LIB,
        "$set": {"plan": "pro"},
        CLIENT_TS: "2026-12-04T18:32:47.465691Z",
    }
    assert props(got[6])["distinct_id"] == "alias-1"
    assert props(got[6])["alias"] == "user-1"
    assert props(got[7])["$group_set"] == {"name": "Acme"}
    assert props(got[8])["$exception_list"][0]["value"] == "boom"


def test_posthog_ts_is_corrected_for_the_clock_of_the_client() -> None:
    # the client's clock is 10 minutes fast: sent_at and every timestamp are 10 minutes ahead
    body = copy.deepcopy(POSTHOG_PYTHON)
    at = datetime(2026, 12, 4, 18, 22, 47, 966874, tzinfo=UTC)  # sent_at - 10 min + 0.5 s
    got = map_posthog(body, received_at=at)
    # ts = received_at - (sent_at - timestamp): 0.001980 s before receipt
    assert ts(got[0]) == "2026-12-04T18:22:47.964894Z"
    assert props(got[0])[CLIENT_TS] == "2026-12-04T18:32:47.464894Z"
    # an explicit old timestamp keeps its distance to sent_at
    sent = datetime(2026, 12, 4, 18, 32, 47, 466874, tzinfo=UTC)
    old = datetime(2026, 8, 3, 12, 0, tzinfo=UTC)
    assert got[3].event is not None
    assert got[3].event.ts == at - (sent - old)


def test_posthog_js_list_with_token_and_distinct_id_in_the_properties() -> None:
    at = datetime(2026, 12, 4, 18, 30, 5, tzinfo=UTC)
    got = map_posthog(POSTHOG_JS, received_at=at)
    assert [m.rejection for m in got] == [None, None, None]
    assert fields(got[0]) == {
        "type": "custom",
        "user_id": "u-js",
        "session_id": "01932b4e-7c1a-7000-8000-00000000s001",
        "platform": "web",
        "name": "$pageview",
    }
    assert fields(got[1]) == {
        "type": "message",
        "user_id": "u-js",
        "session_id": "01932b4e-7c1a-7000-8000-00000000s001",
        "model": "m-5.2",
        "platform": "web",
        "role": "assistant",
        "tokens": 812,
        "message_id": "msg-9",
    }
    assert fields(got[2]) == {"type": "identify", "user_id": "u-js", "name": "$identify"}
    # no sent_at in the body: the timestamps are taken as sent, nothing kept twice
    assert ts(got[0]) == "2026-12-04T18:30:00.000000Z"
    assert CLIENT_TS not in props(got[0])
    for m in got:  # the write key is never stored; the consumed distinct_id is gone
        assert "token" not in props(m)
        assert "distinct_id" not in props(m)
    assert props(got[0])["$window_id"] == "01932b4e-7c1a-7000-8000-00000000w001"
    assert props(got[2]) == {
        "$lib": "web",
        "$anon_distinct_id": "anon-js",
        "$set": {"email": "a@b"},
        "$set_once": {"first_seen": "2026-12-04"},
    }
    assert payload_key("posthog", POSTHOG_JS) == "phc_browser"


def test_posthog_js_send_time_from_outside_the_body() -> None:
    """posthog-js sends its send time as the ``_`` query parameter: the HTTP layer passes it."""
    at = datetime(2026, 12, 4, 18, 0, 5, tzinfo=UTC)
    sent = datetime(2026, 12, 4, 18, 30, 4, tzinfo=UTC)  # the browser's clock: 30 min fast
    got = map_posthog(POSTHOG_JS, received_at=at, sent_at=sent)
    assert [ts(m) for m in got] == [
        "2026-12-04T18:00:01.000000Z",
        "2026-12-04T18:00:02.000000Z",
        "2026-12-04T18:00:03.000000Z",
    ]
    assert props(got[1])[CLIENT_TS] == "2026-12-04T18:30:01Z"


def test_posthog_single_capture_and_legacy_offset() -> None:
    at = datetime(2026, 12, 4, 18, 0, tzinfo=UTC)
    one = {
        "api_key": "phc_x",
        "event": "thumbs down",
        "distinct_id": "u",
        "uuid": "e-1",
        "properties": {"message_id": "m-1"},
        "offset": 1500,
    }
    [m] = map_posthog(one, received_at=at)
    assert fields(m) == {"type": "feedback", "user_id": "u", "message_id": "m-1", "rating": -1}
    assert ts(m) == "2026-12-04T17:59:58.500000Z"
    assert payload_key("posthog", one) == "phc_x"
    [bare] = map_posthog({"event": "x", "distinct_id": "u", "uuid": "e-2"}, received_at=at)
    assert ts(bare) == "2026-12-04T18:00:00.000000Z"  # no time at all: the moment of receipt


# --------------------------------------------------------------------------- Segment tables

# fmt: off
SEGMENT_ROWS = [
    (0, {"type": "message", "user_id": "user-1", "session_id": "s-1", "model": "m-5.2", "platform": "ios", "role": "user"}, {}),
    (1, {"type": "feedback", "user_id": "anon-1", "platform": "api", "message_id": "msg-1", "rating": -1}, {}),
    (2, {"type": "identify", "user_id": "user-1", "name": "identify"}, {"traits": {"email": "a@b"}}),
    (3, {"type": "custom", "user_id": "user-1", "platform": "api", "name": "page"}, {"url": "https://x", "name": "Home", "category": "Docs"}),
    (4, {"type": "custom", "user_id": "user-1", "platform": "api", "name": "screen"}, {"name": "Welcome", "category": "Onboarding"}),
    (5, {"type": "identify", "user_id": "user-1", "name": "group"}, {"groupId": "g-1", "traits": {"name": "Acme"}}),
    (6, {"type": "identify", "user_id": "user-1", "name": "alias"}, {"previousId": "anon-1"}),
]
# fmt: on


@pytest.mark.parametrize(("index", "expected", "expected_props"), SEGMENT_ROWS)
def test_segment_python_batch(
    index: int, expected: dict[str, Any], expected_props: dict[str, Any]
) -> None:
    at = received(SEGMENT_PYTHON["sentAt"])
    got = map_segment(SEGMENT_PYTHON, received_at=at)
    assert len(got) == 7
    m = got[index]
    assert (m.index, m.rejection) == (index, None)
    assert fields(m) == expected
    client = format_ts(datetime.fromisoformat(SEGMENT_PYTHON["batch"][index]["timestamp"]))
    assert props(m) == {**expected_props, CLIENT_TS: client}


def test_segment_ts_is_received_at_minus_the_delay_before_sending() -> None:
    at = datetime(2026, 12, 4, 20, 0, tzinfo=UTC)  # the client's clock is ~1.5 h slow
    got = map_segment(SEGMENT_PYTHON, received_at=at)
    delay = datetime.fromisoformat(SEGMENT_PYTHON["sentAt"]) - datetime.fromisoformat(
        SEGMENT_PYTHON["batch"][0]["timestamp"]
    )
    assert got[0].event is not None
    assert got[0].event.ts == at - delay


@pytest.mark.parametrize(
    ("index", "expected"),
    [
        (0, {"type": "session_end", "user_id": "user-1", "platform": "api", "duration_s": 61.5}),
        (1, {"type": "identify", "user_id": "user-1", "name": "identify"}),
    ],
)
def test_rudderstack_python_batch(index: int, expected: dict[str, Any]) -> None:
    got = map_segment(RUDDER_PYTHON, received_at=received(RUDDER_PYTHON["sentAt"]))
    assert fields(got[index]) == expected
    if index == 1:  # RudderStack sends identify's traits in context.traits
        assert props(got[1])["traits"] == {"email": "a@b"}
    assert payload_key("segment", RUDDER_PYTHON) is None  # the key is the Basic-auth user


def test_analytics_js_single_call() -> None:
    at = datetime(2026, 12, 4, 18, 30, 1, tzinfo=UTC)
    for call in ("track", None):
        [m] = map_segment(ANALYTICS_JS_TRACK, received_at=at, call=call)
        assert fields(m) == {
            "type": "preference",
            "user_id": "u-ajs",
            "platform": "web",
            "model_a": "m-5.1",
            "model_b": "m-5.2",
            "winner": "b",
        }
        assert ts(m) == "2026-12-04T18:30:00.750000Z"  # sent 0.25 s after the event
    assert payload_key("segment", ANALYTICS_JS_TRACK) == "seg_browser"


def test_rudderstack_js_original_timestamp_and_numeric_session() -> None:
    at = datetime(2026, 12, 4, 18, 30, 1, tzinfo=UTC)
    [m] = map_segment(RUDDER_JS_TRACK, received_at=at)
    # userId "" counts as absent: anonymousId; context.sessionId (a number) as its digits
    assert fields(m) == {
        "type": "risk_flag",
        "user_id": "anon-rjs",
        "session_id": "1733337000000",
        "platform": "web",
        "category": "mania",
        "severity": "high",
        "source": "classifier",
    }
    assert ts(m) == "2026-12-04T18:30:00.900000Z"
    assert props(m) == {CLIENT_TS: "2026-12-04T18:30:00Z"}


def test_segment_batch_context_is_merged_under_each_message() -> None:
    body = {
        "batch": [
            {
                "type": "track",
                "event": "x",
                "userId": "u",
                "messageId": "m",
                "timestamp": "2026-12-04T18:00:00Z",
            }
        ],
        "context": {"device": {"type": "android"}},
    }
    [m] = map_segment(body, received_at=datetime(2026, 12, 4, 18, 0, 1, tzinfo=UTC))
    assert fields(m)["platform"] == "android"


# -------------------------------------------------------------------------- Snowplow tables

# fmt: off
SNOWPLOW_ROWS = [
    (0, {"type": "message", "user_id": "user-1", "session_id": "s-1", "platform": "android", "role": "user", "tokens": 5}),
    (1, {"type": "custom", "user_id": "user-1", "name": "thumbs_up"}),
    (2, {"type": "custom", "user_id": "user-1", "name": "page_view"}),
    (3, {"type": "custom", "user_id": "user-1", "name": "page_ping"}),
    (4, {"type": "custom", "user_id": "user-1", "name": "screen_view"}),
    (5, {"type": "custom", "user_id": "user-1", "name": "button_click"}),
]
# fmt: on
_MOBILE_CONTEXT = [
    {
        "schema": "iglu:com.snowplowanalytics.snowplow/mobile_context/jsonschema/1-0-2",
        "data": {
            "osType": "android",
            "osVersion": "14",
            "deviceManufacturer": "x",
            "deviceModel": "y",
        },
    }
]


@pytest.mark.parametrize(("index", "expected"), SNOWPLOW_ROWS)
def test_snowplow_tp2_post(index: int, expected: dict[str, Any]) -> None:
    at = datetime(2026, 12, 4, 18, 32, 56, tzinfo=UTC)
    got = map_snowplow(SNOWPLOW_TP2, received_at=at)
    assert len(got) == 6
    assert fields(got[index]) == expected
    event = got[index].event
    assert event is not None
    assert event.event_id == SNOWPLOW_TP2["data"][index]["eid"]


@pytest.mark.parametrize(("index", "expected"), SNOWPLOW_ROWS)
def test_snowplow_get_query_dicts(index: int, expected: dict[str, Any]) -> None:
    query = dict(parse_qsl(SNOWPLOW_GET[index]))
    [m] = map_snowplow(query, received_at=datetime(2026, 12, 4, 18, 32, 58, tzinfo=UTC))
    assert fields(m) == expected


def test_snowplow_properties() -> None:
    got = map_snowplow(SNOWPLOW_TP2, received_at=datetime(2026, 12, 4, 18, 32, 56, tzinfo=UTC))
    tracker = {
        "tv": "py-1.1.0",
        "tna": "ns",
        "aid": "chat-app",
        CLIENT_TS: "2026-12-04T18:32:55.093000Z",
    }
    assert props(got[0]) == {**tracker, "contexts": _MOBILE_CONTEXT}
    assert props(got[1]) == {
        **tracker,
        "category": "chat",
        "label": "msg-1",
        "property": "p",
        "value": "1.5",
    }
    assert props(got[2]) == {**tracker, "url": "https://x/home", "page": "Home"}
    assert props(got[4]) == {
        **tracker,
        "schema": "iglu:com.snowplowanalytics.mobile/screen_view/jsonschema/1-0-0",
        "data": {"id": "9f0ad8bf-0000-4000-8000-000000000000", "name": "Welcome"},
    }
    assert props(got[5])["data"] == {"id": "b1"}


def test_snowplow_skew_from_stm_and_the_true_timestamp() -> None:
    at = datetime(2026, 12, 4, 19, 0, tzinfo=UTC)
    base = {"e": "pv", "eid": "e", "uid": "u"}
    cases = [  # (fields, ts)
        (
            {"dtm": "1796409170000", "stm": "1796409175000"},
            "2026-12-04T18:59:55.000000Z",
        ),  # 5 s queued
        # snowplow-tracker 1.1 sends stm in whole seconds: stm before dtm is no delay
        ({"dtm": "1796409175093", "stm": "1796409175000"}, "2026-12-04T19:00:00.000000Z"),
        ({"dtm": "1796409175093"}, "2026-12-04T18:32:55.093000Z"),  # no stm: as sent
        (
            {"dtm": "1796409175093", "stm": "1796409999999", "ttm": "1796409000000"},
            "2026-12-04T18:30:00.000000Z",
        ),  # ttm as is
        ({}, "2026-12-04T19:00:00.000000Z"),  # no time: the moment of receipt
    ]
    for extra, expected in cases:
        [m] = map_snowplow({**base, **extra}, received_at=at)
        assert ts(m) == expected, extra


def test_snowplow_native_types_and_contexts() -> None:
    def ue(schema: str, data: Any, *, padded: bool = True) -> str:
        sdj = {
            "schema": "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0",
            "data": {"schema": schema, "data": data},
        }
        text = base64.urlsafe_b64encode(json.dumps(sdj).encode()).decode()
        return text if padded else text.rstrip("=")

    session = {
        "schema": "iglu:com.snowplowanalytics.snowplow/client_session/jsonschema/1-0-2",
        "data": {"userId": "device-u", "sessionId": "cs-1", "sessionIndex": 3},
    }
    mobile = {
        "schema": "iglu:com.snowplowanalytics.snowplow/mobile_context/jsonschema/1-0-2",
        "data": {"osType": "ios"},
    }
    cx = (
        base64.urlsafe_b64encode(
            json.dumps(
                {
                    "schema": "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-1",
                    "data": [session, mobile],
                }
            ).encode()
        )
        .decode()
        .rstrip("=")
    )
    at = datetime(2026, 12, 4, 19, 0, tzinfo=UTC)
    common = {"eid": "e-1", "dtm": "1796409175093", "p": "mob", "cx": cx}
    cases: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
        ("feedback", {"message_id": "m-1", "rating": 0}, {"message_id": "m-1", "rating": 0}),
        (
            "preference",
            {"model_a": "a", "model_b": "b", "winner": "tie"},
            {"model_a": "a", "model_b": "b", "winner": "tie"},
        ),
        (
            "risk_flag",
            {"category": "other", "severity": "low", "properties": {"why": "x"}},
            {"category": "other", "severity": "low"},
        ),
        (
            "session_end",
            {"duration_s": 12, "model": "m-5.2"},
            {"duration_s": 12.0, "model": "m-5.2"},
        ),
        ("custom", {"name": "Opened Settings"}, {"name": "Opened Settings"}),
    ]
    for etype, data, expected in cases:
        [m] = map_snowplow(
            {
                "e": "ue",
                "ue_px": ue(f"iglu:io.usersignals/{etype}/jsonschema/1-0-0", data, padded=False),
                **common,
            },
            received_at=at,
        )
        # no uid/duid/sid: the client_session context's userId and sessionId; mob + osType ios
        assert fields(m) == {
            "type": etype,
            "user_id": "device-u",
            "session_id": "cs-1",
            "platform": "ios",
            **expected,
        }
        assert props(m)["contexts"] == [session, mobile]
    [m] = map_snowplow(
        {
            "e": "ue",
            "ue_px": ue("iglu:io.usersignals/risk_flag/jsonschema/1-0-0", cases[2][1]),
            **common,
        },
        received_at=at,
    )
    assert props(m)["why"] == "x"


@pytest.mark.parametrize(("p", "context_os", "platform"), [
    ("web", None, "web"), ("pc", None, "desktop"), ("srv", None, "api"),
    ("mob", "android", "android"), ("mob", "ios", "ios"), ("mob", None, None), ("app", "iOS", "ios"),
    ("tv", None, None), ("iot", None, None), (None, None, None),
])  # fmt: skip
def test_snowplow_platform(p: str | None, context_os: str | None, platform: str | None) -> None:
    event: dict[str, Any] = {"e": "pv", "eid": "e", "uid": "u", "dtm": "1796409175093"}
    if p is not None:
        event["p"] = p
    if context_os is not None:
        event["co"] = json.dumps(
            {
                "schema": "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-1",
                "data": [
                    {
                        "schema": "iglu:com.snowplowanalytics.snowplow/mobile_context/jsonschema/1-0-3",
                        "data": {"osType": context_os},
                    }
                ],
            }
        )
    [m] = map_snowplow(event, received_at=datetime(2026, 12, 4, 19, 0, tzinfo=UTC))
    assert fields(m).get("platform") == platform


def test_snowplow_app_ids() -> None:
    assert snowplow_app_ids(SNOWPLOW_TP2) == {"chat-app"}
    assert snowplow_app_ids({"e": "pv", "aid": "one"}) == {"one"}
    assert snowplow_app_ids({"data": [{"aid": "a"}, {"aid": 5}, "x", {"aid": "b"}]}) == {"a", "b"}
    for junk in (None, 5, "x", [], {"data": "x"}, [[{"aid": "a"}]]):
        assert snowplow_app_ids(junk) == set()


# ------------------------------------------------------------------------ the type table

# fmt: off
NAME_CASES = [
    ("session_start", {}, {"type": "session_start"}),
    ("Session Started", {}, {"type": "session_start"}),
    ("session-ended", {"duration_s": 30}, {"type": "session_end", "duration_s": 30.0}),
    ("Session End", {}, {"type": "session_end"}),
    ("Message Sent", {"tokens": 3}, {"type": "message", "role": "user", "tokens": 3}),
    ("message_received", {}, {"type": "message", "role": "assistant"}),
    ("message_received", {"role": "tool"}, {"type": "message", "role": "tool"}),
    ("message", {"role": "system"}, {"type": "message", "role": "system"}),
    ("thumbs_up", {"message_id": "m"}, {"type": "feedback", "message_id": "m", "rating": 1}),
    ("Thumbs Down", {"message_id": "m"}, {"type": "feedback", "message_id": "m", "rating": -1}),
    ("  THUMBS--UP ", {"message_id": "m"}, {"type": "feedback", "message_id": "m", "rating": 1}),
    ("feedback", {"message_id": "m", "rating": 0}, {"type": "feedback", "message_id": "m", "rating": 0}),
    ("Message Rated", {"message_id": "m", "rating": -1}, {"type": "feedback", "message_id": "m", "rating": -1}),
    ("preference", {"model_a": "a", "model_b": "b", "winner": "both_bad"}, {"type": "preference", "model_a": "a", "model_b": "b", "winner": "both_bad"}),
    ("Risk Flagged", {"category": "sycophancy", "severity": "medium"}, {"type": "risk_flag", "category": "sycophancy", "severity": "medium"}),
    ("risk_flag", {"category": "delusion", "severity": "critical", "source": "moderator"}, {"type": "risk_flag", "category": "delusion", "severity": "critical", "source": "moderator"}),
    ("Button Clicked", {"role": "user", "rating": 1}, {"type": "custom", "name": "Button Clicked"}),
    ("$pageview", {}, {"type": "custom", "name": "$pageview"}),
    ("$screen", {"$screen_name": "Chat"}, {"type": "custom", "name": "$screen"}),
    ("$feature_flag_called", {}, {"type": "custom", "name": "$feature_flag_called"}),
    ("sessionstart", {}, {"type": "custom", "name": "sessionstart"}),
    # an explicit type wins over the name; custom/identify take the event name
    ("Chat Opened", {"usersignals_type": "session_start"}, {"type": "session_start"}),
    ("thumbs_up", {"usersignals_type": "custom"}, {"type": "custom", "name": "thumbs_up"}),
    ("Clicked", {"usersignals_type": "message", "role": "user"}, {"type": "message", "role": "user"}),
]
# fmt: on


@pytest.mark.parametrize(("name", "properties", "expected"), NAME_CASES)
def test_event_names_through_the_table_the_same_for_every_sdk(
    name: str, properties: dict[str, Any], expected: dict[str, Any]
) -> None:
    at = datetime(2026, 12, 4, 19, 0, tzinfo=UTC)
    ph = {
        "event": name,
        "distinct_id": "u",
        "uuid": "e",
        "timestamp": "2026-12-04T18:59:00Z",
        "properties": dict(properties),
    }
    seg = {
        "type": "track",
        "event": name,
        "userId": "u",
        "messageId": "e",
        "timestamp": "2026-12-04T18:59:00Z",
        "properties": dict(properties),
    }
    for m in (map_posthog(ph, received_at=at)[0], map_segment(seg, received_at=at)[0]):
        assert fields(m) == {"user_id": "u", **expected}


def test_the_name_table() -> None:
    for key, (etype, defaults, fixed) in EVENT_NAMES.items():
        assert normalise_name(key) == key
        assert set(defaults) | set(fixed) <= set(TYPE_FIELDS[etype])
    for etype, required in REQUIRED_BY_TYPE.items():  # every field a type needs can be lifted
        assert set(required) - {"name"} <= set(TYPE_FIELDS[etype])
    assert set(TYPE_FIELDS) == set(REQUIRED_BY_TYPE)
    assert normalise_name(" Message - Sent ") == "message_sent"


def test_thumbs_keep_a_rating_property_beside_the_name() -> None:
    at = datetime(2026, 12, 4, 19, 0, tzinfo=UTC)
    [m] = map_posthog(
        {
            "event": "thumbs_up",
            "distinct_id": "u",
            "uuid": "e",
            "properties": {"message_id": "m", "rating": 5},
        },
        received_at=at,
    )
    assert fields(m)["rating"] == 1
    assert props(m) == {"rating": 5}


# -------------------------------------------------------------------------- platform rules


@pytest.mark.parametrize(("properties", "platform"), [
    ({"$lib": "web", "$os": "iOS"}, "web"),  # a browser on a phone is the web app
    ({"$lib": "posthog-ios"}, "ios"),
    ({"$lib": "posthog-android", "$os": "Android"}, "android"),
    ({"$lib": "posthog-react-native", "$os": "iOS"}, "ios"),
    ({"$lib": "posthog-flutter", "$os": "Android"}, "android"),
    ({"$lib": "posthog-react-native"}, None),
    ({"$lib": "posthog-node", "$os": "Linux"}, "api"),
    ({"$lib": "something-else", "$os": "Android"}, "android"),
    ({"$lib": "something-else", "$is_server": True}, "api"),
    ({"$os": "Mac OS X"}, None),
    ({"platform": "Desktop", "$lib": "web"}, "desktop"),  # an explicit contract value, any case
    ({"platform": "darwin", "$lib": "posthog-node"}, "api"),  # not a contract value: stays
    ({}, None),
])  # fmt: skip
def test_posthog_platform(properties: dict[str, Any], platform: str | None) -> None:
    [m] = map_posthog(
        {"event": "x", "distinct_id": "u", "uuid": "e", "properties": properties},
        received_at=datetime(2026, 12, 4, tzinfo=UTC),
    )
    assert fields(m).get("platform") == platform
    if properties.get("platform") == "darwin":
        assert props(m)["platform"] == "darwin"


@pytest.mark.parametrize(("context", "channel", "platform"), [
    ({"library": {"name": "analytics.js"}}, None, "web"),
    ({"library": {"name": "analytics-swift"}, "os": {"name": "iOS"}}, None, "ios"),
    ({"library": {"name": "analytics-kotlin"}}, None, "android"),
    ({"library": {"name": "@segment/analytics-react-native"}, "device": {"type": "android"}}, None, "android"),
    ({"library": {"name": "analytics-node"}}, None, "api"),
    ({"library": {"name": "analytics-python"}, "os": {"name": "iPadOS"}}, None, "ios"),  # the device wins
    ({"library": {"name": "RudderLabs JavaScript SDK"}}, "web", "web"),
    ({"library": {"name": "unknown"}}, "server", "api"),
    ({"library": {"name": "unknown"}}, "mobile", None),
    ({}, None, None),
    (None, None, None),
])  # fmt: skip
def test_segment_platform(context: Any, channel: str | None, platform: str | None) -> None:
    message: dict[str, Any] = {
        "type": "track",
        "event": "x",
        "userId": "u",
        "messageId": "e",
        "timestamp": "2026-12-04T18:00:00Z",
        "context": context,
    }
    if channel is not None:
        message["channel"] = channel
    [m] = map_segment(message, received_at=datetime(2026, 12, 4, 18, 1, tzinfo=UTC))
    assert fields(m).get("platform") == platform


# ------------------------------------------------------------------------------ rejections

AT = datetime(2026, 12, 4, 19, 0, tzinfo=UTC)


def _ph(**changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event": "thumbs_up",
        "distinct_id": "u",
        "uuid": "e",
        "timestamp": "2026-12-04T18:59:00Z",
        "properties": {"message_id": "m"},
    }
    event.update(changes)
    return event


def _deep(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = {"k": value}
    return value


# fmt: off
REJECTED: list[tuple[str, Callable[[], list[Mapped]], int, str, str | None]] = [
    ("not an object", lambda: map_posthog([_ph(), 7], received_at=AT), 1, "not_object", None),
    ("no uuid", lambda: map_posthog([_ph(uuid=None)], received_at=AT), 0, "missing_field", "event_id"),
    ("no user", lambda: map_posthog([_ph(distinct_id="")], received_at=AT), 0, "bad_value", "user_id"),
    ("numeric user", lambda: map_posthog([_ph(distinct_id=12345)], received_at=AT), 0, "bad_type", "user_id"),
    ("thumbs without a message", lambda: map_posthog([_ph(properties={})], received_at=AT), 0, "missing_field", "message_id"),
    ("feedback rating as text", lambda: map_posthog([_ph(event="feedback", properties={"message_id": "m", "rating": "up"})], received_at=AT), 0, "bad_type", "rating"),
    ("bad role", lambda: map_posthog([_ph(event="message_sent", properties={"role": "bot"})], received_at=AT), 0, "bad_value", "role"),
    ("unknown explicit type", lambda: map_posthog([_ph(properties={"usersignals_type": "purchase"})], received_at=AT), 0, "unknown_type", "type"),
    ("no event name", lambda: map_posthog([_ph(event=None, properties={})], received_at=AT), 0, "missing_field", "name"),
    ("bad timestamp", lambda: map_posthog({"batch": [_ph(timestamp="yesterday")], "sent_at": "2026-12-04T18:59:01Z"}, received_at=AT), 0, "bad_timestamp", "ts"),
    ("naive timestamp", lambda: map_posthog([_ph(timestamp="2026-12-04T18:59:00")], received_at=AT), 0, "bad_timestamp", "ts"),
    ("too far ahead", lambda: map_posthog([_ph(timestamp="2026-12-07T18:59:00Z")], received_at=AT), 0, "bad_timestamp", "ts"),
    ("properties not an object", lambda: map_posthog([_ph(properties=[1, 2])], received_at=AT), 0, "bad_type", "properties"),
    ("too deep", lambda: map_posthog([_ph(properties={"message_id": "m", "x": _deep(12)})], received_at=AT), 0, "too_deep", "properties"),
    ("too large", lambda: map_posthog([_ph(properties={"message_id": "m", "x": "a" * 40000})], received_at=AT), 0, "too_large", None),
    ("posthog batch not an array", lambda: map_posthog({"api_key": "k", "batch": {"event": "x"}}, received_at=AT), 0, "bad_batch", None),
    ("posthog payload a string", lambda: map_posthog("hello", received_at=AT), 0, "not_object", None),
    ("segment unknown call", lambda: map_segment({"batch": [{"type": "purchase", "messageId": "m", "userId": "u"}]}, received_at=AT), 0, "unknown_type", "type"),
    ("segment no call", lambda: map_segment({"batch": [{"messageId": "m", "userId": "u"}]}, received_at=AT), 0, "missing_field", "type"),
    ("segment no user", lambda: map_segment({"type": "track", "event": "x", "messageId": "m", "userId": None, "anonymousId": None}, received_at=AT), 0, "missing_field", "user_id"),
    ("segment track without event", lambda: map_segment({"type": "track", "messageId": "m", "userId": "u"}, received_at=AT), 0, "missing_field", "name"),
    ("segment batch not an array", lambda: map_segment({"batch": "x"}, received_at=AT), 0, "bad_batch", None),
    ("snowplow bad ue_px", lambda: map_snowplow({"e": "ue", "eid": "e", "uid": "u", "ue_px": "!!!"}, received_at=AT), 0, "bad_value", "ue_px"),
    ("snowplow ue_pr not JSON", lambda: map_snowplow({"e": "ue", "eid": "e", "uid": "u", "ue_pr": "{"}, received_at=AT), 0, "not_json", "ue_pr"),
    ("snowplow ue_pr not self-describing", lambda: map_snowplow({"e": "ue", "eid": "e", "uid": "u", "ue_pr": "[1]"}, received_at=AT), 0, "bad_value", "ue_pr"),
    ("snowplow ue without payload", lambda: map_snowplow({"e": "ue", "eid": "e", "uid": "u"}, received_at=AT), 0, "missing_field", "ue_px"),
    ("snowplow bad cx", lambda: map_snowplow({"data": [{"e": "pv", "eid": "e", "uid": "u"}, {"e": "pv", "eid": "e", "uid": "u", "cx": "e30"}]}, received_at=AT), 1, "bad_value", "cx"),
    ("snowplow native data not an object", lambda: map_snowplow({"e": "ue", "eid": "e", "uid": "u", "ue_pr": json.dumps({"schema": "s", "data": {"schema": "iglu:io.usersignals/message/jsonschema/1-0-0", "data": [1]}})}, received_at=AT), 0, "bad_type", "ue_pr"),
    ("snowplow unknown native type", lambda: map_snowplow({"e": "ue", "eid": "e", "uid": "u", "ue_pr": json.dumps({"schema": "s", "data": {"schema": "iglu:io.usersignals/purchase/jsonschema/1-0-0", "data": {}}})}, received_at=AT), 0, "unknown_type", "type"),
    ("snowplow no eid", lambda: map_snowplow({"e": "pv", "uid": "u"}, received_at=AT), 0, "missing_field", "event_id"),
    ("snowplow no user", lambda: map_snowplow({"e": "pv", "eid": "e", "uid": "", "duid": ""}, received_at=AT), 0, "bad_value", "user_id"),
    ("snowplow bad dtm", lambda: map_snowplow({"e": "pv", "eid": "e", "uid": "u", "dtm": "soon"}, received_at=AT), 0, "bad_timestamp", "ts"),
    ("snowplow dtm in seconds", lambda: map_snowplow({"e": "pv", "eid": "e", "uid": "u", "dtm": "1796409175"}, received_at=AT), 0, "bad_timestamp", "ts"),
    ("snowplow tp2 data not an array", lambda: map_snowplow({"schema": "x", "data": {}}, received_at=AT), 0, "bad_batch", None),
]
# fmt: on


@pytest.mark.parametrize(
    ("what", "run", "index", "reason", "field"), REJECTED, ids=[r[0] for r in REJECTED]
)
def test_rejected_with_the_contracts_reason(
    what: str, run: Callable[[], list[Mapped]], index: int, reason: str, field: str | None
) -> None:
    got = run()
    m = got[index]
    assert m.event is None
    assert m.rejection is not None
    assert (m.index, m.rejection.index, m.rejection.reason, m.rejection.field) == (
        index,
        index,
        reason,
        field,
    )
    assert reason in contract.REASONS
    if isinstance(m.doc, dict) and "event_id" in m.doc and reason != "too_large":
        # the contract's own verdict and message on the dict built; raw is that dict's JSON,
        # so a dead letter can be replayed once fixed
        again = contract.validate(m.doc, now=AT)
        assert isinstance(again, contract.Rejection)
        assert (again.reason, again.message) == (m.rejection.reason, m.rejection.message)
        assert msgspec.json.decode(m.rejection.raw) == m.doc
    for other in got:  # the other elements of the batch go on
        if other.index != index:
            assert other.event is not None, other.rejection


def test_no_payload_byte_in_the_messages_worded_here() -> None:
    secret = "s3cr3t-user"
    cases = [
        map_segment({"type": "purchase-" + secret, "userId": secret}, received_at=AT),
        map_snowplow({"e": "ue", "uid": secret, "ue_px": secret + "!"}, received_at=AT),
        map_snowplow({"e": "pv", "uid": secret, "co": "{" + secret}, received_at=AT),
    ]
    for [m] in cases:
        assert m.rejection is not None
        assert secret not in m.rejection.message
        assert m.user_id == secret


def test_too_large_counts_received_at_as_the_collector_will_send_it() -> None:
    for size in range(contract.MAX_EVENT_BYTES - 400, contract.MAX_EVENT_BYTES + 1, 8):
        [m] = map_posthog([_ph(properties={"message_id": "m", "x": "a" * size})], received_at=AT)
        if m.event is not None:
            stamped = msgspec.structs.replace(m.event, received_at=AT)
            assert len(contract.encode_event(stamped)) <= contract.MAX_EVENT_BYTES
        else:
            assert m.rejection is not None
            assert m.rejection.reason == "too_large"


def test_empty_batches_map_to_nothing() -> None:
    assert map_posthog({"api_key": "k", "batch": []}, received_at=AT) == []
    assert map_posthog([], received_at=AT) == []
    assert map_segment({"batch": []}, received_at=AT) == []
    assert map_snowplow({"schema": "x", "data": []}, received_at=AT) == []


# ------------------------------------------------------------------------------ write keys


@pytest.mark.parametrize(("protocol", "payload", "key"), [
    ("posthog", POSTHOG_PYTHON, "phc_testkey"),
    ("posthog", {"token": "t", "batch": [{"properties": {"token": "p"}}]}, "t"),
    ("posthog", {"batch": [{"properties": {"token": "p"}}, {"properties": {"token": "q"}}]}, "p"),
    ("posthog", {"api_key": "", "event": "x", "properties": {"token": "p"}}, "p"),
    ("posthog", POSTHOG_JS, "phc_browser"),
    ("posthog", [], None),
    ("posthog", {"api_key": 5}, None),
    ("posthog", [7], None),
    ("segment", SEGMENT_PYTHON, "seg_key"),
    ("segment", {"writeKey": ["x"]}, None),
    ("segment", "x", None),
    ("snowplow", SNOWPLOW_TP2, None),
    ("amplitude", {"api_key": "x"}, None),
])  # fmt: skip
def test_payload_key(protocol: str, payload: Any, key: str | None) -> None:
    assert payload_key(protocol, payload) == key


def test_protocols() -> None:
    assert PROTOCOLS == ("posthog", "segment", "snowplow")


# ------------------------------------------------------------------------------ properties

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from(
        [
            "",
            "ue",
            "se",
            "pv",
            "track",
            "identify",
            "page",
            "$identify",
            "thumbs_up",
            "message_sent",
            "2026-12-04T18:00:00Z",
            "1796409175093",
            "e30",
            "mob",
        ]
    )
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=25,
)
_KEYS = ["event", "distinct_id", "uuid", "timestamp", "properties", "sent_at", "offset", "$set", "batch", "api_key",
         "type", "userId", "anonymousId", "messageId", "originalTimestamp", "sentAt", "context", "traits", "writeKey",
         "e", "eid", "uid", "duid", "dtm", "stm", "ttm", "sid", "p", "aid", "ue_pr", "ue_px", "co", "cx", "se_ac", "data",
         "usersignals_type", "token", "model", "platform", "$session_id", "session_id", "role", "rating", "message_id"]  # fmt: skip


def _sdj(value: Any) -> Any:
    sdj = {"schema": "iglu:io.usersignals/message/jsonschema/1-0-0", "data": value}
    return json.dumps({"schema": "s", "data": sdj})


sdk_shaped = st.recursive(
    json_values | st.builds(_sdj, json_values),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(_KEYS), inner, max_size=8)
    ),
    max_leaves=30,
)


def _check(got: list[Mapped]) -> None:
    for position, m in enumerate(got):
        assert m.index == position
        assert (m.event is None) != (m.rejection is None)
        assert isinstance(m.user_id, str)
        if m.rejection is not None:
            assert m.rejection.index == position
            assert m.rejection.reason in contract.REASONS
        else:
            assert m.event is not None
            assert m.event.received_at is None
            assert contract.decode_record(contract.encode_event(m.event), now=AT) == ([m.event], [])
            # the bytes the mapping validated, when it keeps them, are the event's canonical JSON
            assert m.data in (b"", contract.encode_event(m.event))


@SETTINGS
@given(
    json_values | sdk_shaped, st.sampled_from([None, "track", "identify", "page", "batch", "bogus"])
)
def test_arbitrary_json_never_raises(payload: Any, call: str | None) -> None:
    _check(map_posthog(payload, received_at=AT))
    _check(map_posthog(payload, received_at=AT, sent_at=AT))
    _check(map_segment(payload, received_at=AT, call=call))
    _check(map_snowplow(payload, received_at=AT))
    for protocol in (*PROTOCOLS, "other"):
        key = payload_key(protocol, payload)
        assert key is None or (isinstance(key, str) and key)
    assert all(isinstance(a, str) for a in snowplow_app_ids(payload))


@SETTINGS
@given(st.lists(sdk_shaped, max_size=5), st.sampled_from(["posthog", "segment", "snowplow"]))
def test_every_element_of_a_batch_is_one_mapped(elements: list[Any], protocol: str) -> None:
    if protocol == "posthog":
        got = map_posthog({"batch": elements, "sent_at": "2026-12-04T18:59:00Z"}, received_at=AT)
    elif protocol == "segment":
        got = map_segment({"batch": elements, "sentAt": "2026-12-04T18:59:00Z"}, received_at=AT)
    else:
        got = map_snowplow({"schema": "x", "data": elements}, received_at=AT)
    assert len(got) == len(elements)
    _check(got)


def test_deep_and_odd_values_never_raise() -> None:
    deep: Any = []
    for _ in range(100_000):
        deep = [deep]
    odd = [
        deep,
        {"properties": deep},
        {"e": "ue", "ue_pr": "[" * 100_000},
        {"event": "x", "properties": {"x": float("nan")}, "uuid": "e", "distinct_id": "u"},
        {"uuid": object(), "event": "x", "distinct_id": "u"},
        {1: 2},
    ]
    for element in odd:
        for run in (map_posthog, map_snowplow, map_segment):
            _check(run([element], received_at=AT))


# ----------------------------------------------------------------- the validated bytes


def test_the_sdks_events_keep_the_bytes_they_were_validated_as() -> None:
    """A batch of posthog-python or segment-analytics-python (a send time, so a corrected
    ``ts``) keeps each event's canonical JSON (``data``): the collector stamps it with
    ``received_at`` rather than encoding the event again, and sends the same bytes."""
    at = datetime(2026, 12, 4, 18, 30, 0, 498021, tzinfo=UTC)
    for got in (
        map_posthog(POSTHOG_PYTHON, received_at=at),
        map_segment(SEGMENT_PYTHON, received_at=at),
    ):
        assert got
        for m in got:
            assert m.event is not None, m.rejection
            assert m.data == contract.encode_event(m.event)
            stamped = msgspec.structs.replace(m.event, received_at=at)
            assert m.data[:-1] + capture.stamp(at) == contract.encode_event(stamped)
    # no send time: ts as the client wrote it, not the canonical form, so no bytes are kept
    [m] = map_posthog([_ph(timestamp="2026-12-04T18:59:00Z")], received_at=AT)
    assert (m.event is not None, m.data) == (True, b"")
    # a receipt on the whole second: ts without its fraction, encoded again downstream
    [m] = map_posthog({"batch": [_ph()], "sent_at": "2026-12-04T18:59:00Z"}, received_at=AT)
    assert (m.event is not None, m.data) == (True, b"")
    # an integer duration_s is a float in the event
    [m] = map_segment(
        {"batch": [{"type": "track", "event": "Session Ended", "messageId": "e", "userId": "u",
                    "timestamp": "2026-12-04T18:59:00Z", "properties": {"duration_s": 61}}],
         "sentAt": "2026-12-04T18:59:00.5Z"},
        received_at=at,
    )  # fmt: skip
    assert m.event is not None
    assert m.event.duration_s == 61.0
    assert m.data == b""


def test_a_rejected_element_is_dead_lettered_in_the_key_order_it_was_built_in() -> None:
    """Accepted PostHog and Segment events are built in the contract's key order (their
    canonical JSON); a rejected one is dead-lettered in the documented order, as always."""
    sent = {"sent_at": "2026-12-04T18:59:01Z"}
    for got in (
        map_posthog({"batch": [_ph(properties={"$session_id": "s", "model": "m", "x": 1})], **sent}, received_at=AT),
        map_segment({"batch": [{"type": "track", "event": "thumbs up", "messageId": "e", "userId": "u",
                                "properties": {"session_id": "s", "model": "m", "x": 1}}]}, received_at=AT),
    ):  # fmt: skip
        [m] = got
        assert m.rejection is not None
        assert m.rejection.reason == "missing_field"
        keys = ["event_id", "user_id", "ts", "type", "rating", "session_id", "model", "properties"]
        assert list(m.doc) == keys
        assert list(msgspec.json.decode(m.rejection.raw)) == keys


def _canonical_shaped(moment: datetime, at: int, char: str) -> str:
    """``moment`` as format_ts writes it, one character (not the three that tell) replaced."""
    text = format_ts(moment)
    return text if at in (10, 19, 26) else text[:at] + char + text[at + 1 :]


@SETTINGS
@given(
    st.builds(
        _canonical_shaped,
        st.datetimes(min_value=datetime(1999, 1, 1), max_value=datetime(2026, 12, 5)),
        st.integers(0, 27),
        st.sampled_from(list("0123456789 x+-:.TZtz\u0660")),
    )
)
def test_a_ts_of_the_canonical_shape_that_the_contract_takes_is_written_back_the_same(
    ts: str,
) -> None:
    """What lets the mapping tell canonical bytes by the length and three characters of a
    ``ts`` the contract took (:func:`~usersignals.ingest.capture._canonical`)."""
    doc = {"event_id": "e", "type": "custom", "user_id": "u", "ts": ts, "name": "x"}
    events, _ = contract.decode_record(msgspec.json.encode(doc), now=AT)
    if events and capture._canonical(doc):
        assert format_ts(events[0].ts) == ts
        assert msgspec.json.encode(doc) == contract.encode_event(events[0])


# --------------------------------------------------------------- the installed SDKs' shapes


class _Recorder(BaseHTTPRequestHandler):
    bodies: list[tuple[str, Any]] = []

    def _answer(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if body[:2] == b"\x1f\x8b":
            body = gzip.decompress(body)
        path = urlsplit(self.path)
        decoded = dict(parse_qsl(path.query)) if self.command == "GET" else json.loads(body)
        type(self).bodies.append((path.path, decoded))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    do_GET = do_POST = _answer

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[tuple[str, list[tuple[str, Any]]]]:
    _Recorder.bodies = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", _Recorder.bodies
    finally:
        server.shutdown()
        server.server_close()


def _shape(value: Any) -> Any:
    """Keys and value types, the SDK's own ``$`` properties left out (they vary by host)."""
    if isinstance(value, dict):
        return {
            k: _shape(v)
            for k, v in value.items()
            if not (k.startswith("$") and k not in ("$set", "$set_once", "$session_id"))
        }
    return type(value).__name__ if value is not None else None


def test_the_installed_sdks_still_send_these_shapes(
    recorder: tuple[str, list[tuple[str, Any]]],
) -> None:
    # untyped packages: imported as modules of Any
    posthog = importlib.import_module("posthog")
    rudderstack = importlib.import_module("rudderstack.analytics")
    segment = importlib.import_module("segment.analytics")
    sp = importlib.import_module("snowplow_tracker")

    host, bodies = recorder
    ph = posthog.Posthog("phc_testkey", host=f"http://{host}", sync_mode=True)
    ph.capture(
        "message_sent",
        distinct_id="user-1",
        properties={"$session_id": "s-1", "model": "m-5.2", "tokens": 12, "message_id": "msg-1"},
    )
    ph.set(distinct_id="user-1", properties={"plan": "pro"})
    ph.alias("alias-1", "user-1")
    ph.shutdown()
    seg = segment.Client("seg_key", host=f"http://{host}", sync_mode=True)
    seg.track(
        "user-1",
        "Message Sent",
        {"model": "m-5.2", "role": "user", "session_id": "s-1"},
        context={"os": {"name": "iOS"}},
    )
    seg.identify("user-1", {"email": "a@b"})
    seg.page("user-1", "Docs", "Home", {"url": "https://x"})
    rud = rudderstack.Client("rud_key", host=f"http://{host}", sync_mode=True)
    rud.track("user-1", "Session Ended", {"duration_s": 61.5})
    rud.identify("user-1", {"email": "a@b"})
    emitter = sp.Emitter(host, protocol="http", method="post", batch_size=10)
    tracker = sp.Tracker(
        namespace="ns",
        emitters=emitter,
        app_id="chat-app",
        subject=sp.Subject().set_user_id("user-1").set_platform("mob"),
    )
    context = [
        sp.SelfDescribingJson(
            "iglu:com.snowplowanalytics.snowplow/mobile_context/jsonschema/1-0-2",
            {"osType": "android", "osVersion": "14", "deviceManufacturer": "x", "deviceModel": "y"},
        )
    ]
    tracker.track(
        sp.SelfDescribing(
            sp.SelfDescribingJson(
                "iglu:io.usersignals/message/jsonschema/1-0-0",
                {"role": "user", "tokens": 5, "session_id": "s-1"},
            ),
            context=context,
        )
    )
    tracker.track(
        sp.StructuredEvent(
            category="chat", action="thumbs_up", label="msg-1", property_="p", value=1.5
        )
    )
    tracker.flush()

    by_path: dict[str, list[Any]] = {}
    for path, body in bodies:
        by_path.setdefault(path, []).append(body)
    posthog_events = [e for body in by_path["/batch/"] for e in body["batch"]]
    segment_messages = [m for body in by_path["/v1/batch"] for m in body["batch"]]
    [snowplow_body] = by_path["/com.snowplowanalytics.snowplow/tp2"]
    for batch_body in by_path["/batch/"]:
        assert set(batch_body) == set(POSTHOG_PYTHON)
    assert [_shape(e) for e in posthog_events] == [
        _shape(POSTHOG_PYTHON["batch"][i]) for i in (0, 4, 6)
    ]
    assert [_shape(m) for m in segment_messages] == [
        _shape(SEGMENT_PYTHON["batch"][i]) for i in (0, 2, 3)
    ] + [_shape(RUDDER_PYTHON["batch"][i]) for i in (0, 1)]
    assert _shape(snowplow_body) == _shape({**SNOWPLOW_TP2, "data": SNOWPLOW_TP2["data"][:1]}) | {
        "data": "list"
    }
    assert [_shape(e) for e in snowplow_body["data"]] == [
        _shape(SNOWPLOW_TP2["data"][i]) for i in (0, 1)
    ]
    # and every one of them maps to an event
    now = datetime.now(UTC)
    for path, body in bodies:
        mappers: dict[str, Callable[..., list[Mapped]]] = {
            "/batch/": map_posthog,
            "/v1/batch": map_segment,
            "/com.snowplowanalytics.snowplow/tp2": map_snowplow,
        }
        mapper = mappers[path]
        for m in mapper(body, received_at=now):
            assert m.event is not None, m.rejection
    assert capture.payload_key("posthog", by_path["/batch/"][0]) == "phc_testkey"


def test_snowplow_native_nulls_are_absent_and_the_tracker_fields_fill_in() -> None:
    data = {"role": "assistant", "session_id": None, "platform": None, "tokens": None}
    sdj: dict[str, Any] = {
        "schema": "s",
        "data": {"schema": "iglu:io.usersignals/message/jsonschema/1-0-0", "data": data},
    }
    event = {
        "e": "ue",
        "eid": "e",
        "uid": "u",
        "sid": "s-9",
        "p": "web",
        "dtm": "1796409175093",
        "ue_pr": json.dumps(sdj),
    }
    [m] = map_snowplow(event, received_at=AT)
    assert fields(m) == {
        "type": "message",
        "user_id": "u",
        "session_id": "s-9",
        "platform": "web",
        "role": "assistant",
    }
    # a schema of another vendor or format is an app event, whatever its name
    for schema in (
        "iglu:com.acme/message/jsonschema/1-0-0",
        "iglu:io.usersignals/message/avro/1-0-0",
    ):
        sdj["data"]["schema"] = schema
        [m] = map_snowplow({**event, "ue_pr": json.dumps(sdj)}, received_at=AT)
        assert fields(m)["type"] == "custom"
        assert fields(m)["name"] == "message"


def test_batches_beyond_the_contracts_record_are_judged_in_pieces() -> None:
    events = [_ph(uuid=f"e-{i}", properties={"message_id": f"m-{i}"}) for i in range(2500)]
    events[1700] = _ph(uuid="bad", properties={})  # one bad element, far in
    got = map_posthog(events, received_at=AT)
    assert [m.index for m in got] == list(range(2500))
    assert [m.index for m in got if m.rejection is not None] == [1700]
    assert [m.event.event_id for m in got if m.event is not None][1699:1701] == ["e-1699", "e-1701"]


def test_an_element_nested_beyond_what_a_record_reads_is_rejected_alone() -> None:
    events = [
        _ph(uuid="a"),
        _ph(uuid="b", properties={"message_id": "m", "x": _deep(70)}),
        _ph(uuid="c"),
    ]
    got = map_posthog(events, received_at=AT)
    assert [m.event is not None for m in got] == [True, False, True]
    rejection = got[1].rejection
    assert rejection is not None
    assert (rejection.reason, rejection.index) == ("too_deep", 1)
