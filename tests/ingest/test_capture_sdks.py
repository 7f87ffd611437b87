"""The real PostHog, Segment, RudderStack and Snowplow SDKs (and, with Node, posthog-node and
@segment/analytics-node) against a real collector, broker and worker.

Each SDK plays a scripted day of chat traffic on a day of its own: sessions that start and end,
messages sent and received with a model, thumbs up and down with a changed vote (same message,
the later vote wins), a preference between two models, a risk flag, page views and screens,
an app event of its own, and identity calls. Every SDK call is written beside the contract
event it must become (by hand, from ``docs/capture.md``: the mapping under test computes none
of it). The calls go through each SDK's public API (with its default settings for the day), to a
``usersignals collector`` child writing to the session's broker, read by a ``usersignals
worker`` child. Then:

- every event the collector stored is the expected one, field by field;
- ``report --live --json`` equals the oracle's report of the expected events (identity calls
  are no activity: a user who only identified is in no DAU);
- with the broker stopped (SIGSTOP, so the collector answers 503 with ``Retry-After``), every
  SDK retries by itself, through its own retry code, until the broker is back, and every
  event counts exactly once (the retries that the broker did store twice are one event).

The harness (pipeline, SDK runners, Node install) is :mod:`tests.capture_script`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from snowplow_tracker.events.page_view import PageView
from snowplow_tracker.events.screen_view import ScreenView
from snowplow_tracker.events.self_describing import SelfDescribing
from snowplow_tracker.events.structured_event import StructuredEvent
from snowplow_tracker.self_describing_json import SelfDescribingJson
from snowplow_tracker.subject import Subject

from tests.capture_script import (
    Call,
    Observed,
    Pipeline,
    day_clock,
    expected_events,
    live_differences,
    mismatches,
    node_sdks,
    pipeline,
    run_node,
    run_posthog,
    run_rudder,
    run_segment,
    run_snowplow,
)
from tests.conftest import Kafka
from usersignals.broker import EmbeddedBroker, ensure_topics
from usersignals.config import Settings
from usersignals.ingest import contract

TODAY = datetime.now(UTC).date()
SDKS = ("posthog", "segment", "rudder", "snowplow", "posthog-node", "segment-node")
DAYS = {sdk: TODAY - timedelta(days=7 - i) for i, sdk in enumerate(SDKS)}
"""One day per SDK, in the last week (the worker keeps 42 days behind the newest)."""


def ids(tag: str) -> Callable[[int], str]:
    """``u(n)``: the n-th event id of a script, a UUID (PostHog takes no other)."""
    return lambda n: str(uuid.uuid5(uuid.NAMESPACE_URL, f"usersignals-test/{tag}/{n}"))


@dataclass
class Script:
    """An SDK's calls, each with the contract event it must become (``event_id`` None: the
    SDK makes the id; ``ts`` None: the SDK stamps the time of the call)."""

    sdk: str
    steps: list[tuple[Any, dict[str, Any]]]
    active: set[str]
    """The users active on the day: those with an event that is not an identity call."""

    @property
    def calls(self) -> list[Any]:
        return [call for call, _ in self.steps]

    @property
    def docs(self) -> list[dict[str, Any]]:
        return [doc for _, doc in self.steps]


# --------------------------------------------------------------------------- the scripts


def posthog_day(day: date, p: str = "ph") -> Script:
    """posthog-python: ``capture`` with the event names of the mapping's table, ``$pageview``
    and ``$screen``, an app event of its own, and ``set``/``alias``/``group_identify``."""
    at, u = day_clock(day), ids(p)
    ana, ben, cy, s1, s2 = f"{p}-ana", f"{p}-ben", f"{p}-cy", f"{p}-s1", f"{p}-s2"

    def capture(n: int, user: str, event: str, when: datetime, **props: Any) -> Call:
        return "capture", {
            "event": event, "distinct_id": user, "uuid": u(n), "timestamp": when,
            "properties": props,
        }  # fmt: skip

    api = {"platform": "api"}  # posthog-python's $lib
    return Script("posthog", [
        (capture(1, ana, "session_started", at(9, 0), **{"$session_id": s1}, model="m-1"),
         {"event_id": u(1), "type": "session_start", "user_id": ana, "ts": at(9, 0),
          "session_id": s1, "model": "m-1", **api}),
        (capture(2, ana, "message_sent", at(9, 1), **{"$session_id": s1}, message_id=f"{p}-m1"),
         {"event_id": u(2), "type": "message", "user_id": ana, "ts": at(9, 1),
          "session_id": s1, "role": "user", "message_id": f"{p}-m1"}),
        (capture(3, ana, "message_received", at(9, 2), **{"$session_id": s1}, model="m-1",
                 message_id=f"{p}-m2", tokens=412),
         {"event_id": u(3), "type": "message", "user_id": ana, "ts": at(9, 2), "session_id": s1,
          "model": "m-1", "role": "assistant", "message_id": f"{p}-m2", "tokens": 412}),
        (capture(4, ana, "thumbs_up", at(9, 3), **{"$session_id": s1}, message_id=f"{p}-m2"),
         {"event_id": u(4), "type": "feedback", "user_id": ana, "ts": at(9, 3),
          "session_id": s1, "message_id": f"{p}-m2", "rating": 1}),
        # the vote changed: the later one counts
        (capture(5, ana, "Thumbs Down", at(9, 4), **{"$session_id": s1}, message_id=f"{p}-m2"),
         {"event_id": u(5), "type": "feedback", "user_id": ana, "ts": at(9, 4),
          "session_id": s1, "message_id": f"{p}-m2", "rating": -1}),
        (capture(6, ana, "preference", at(9, 5), **{"$session_id": s1}, model_a="m-1",
                 model_b="m-2", winner="b"),
         {"event_id": u(6), "type": "preference", "user_id": ana, "ts": at(9, 5),
          "session_id": s1, "model_a": "m-1", "model_b": "m-2", "winner": "b"}),
        (capture(7, ana, "risk_flagged", at(9, 6), **{"$session_id": s1}, category="sycophancy",
                 severity="high", source="classifier"),
         {"event_id": u(7), "type": "risk_flag", "user_id": ana, "ts": at(9, 6),
          "session_id": s1, "category": "sycophancy", "severity": "high",
          "source": "classifier"}),
        (capture(8, ana, "$pageview", at(9, 7), **{"$current_url": "https://chat.example/c"}),
         {"event_id": u(8), "type": "custom", "name": "$pageview", "user_id": ana,
          "ts": at(9, 7)}),
        (capture(9, ben, "$screen", at(14, 0), **{"$screen_name": "Chat"}, platform="ios"),
         {"event_id": u(9), "type": "custom", "name": "$screen", "user_id": ben,
          "ts": at(14, 0), "platform": "ios"}),
        (capture(10, ana, "session_ended", at(9, 30), **{"$session_id": s1}, duration_s=1800),
         {"event_id": u(10), "type": "session_end", "user_id": ana, "ts": at(9, 30),
          "session_id": s1, "duration_s": 1800}),
        (capture(11, ben, "session_start", at(14, 1), **{"$session_id": s2}, model="m-2"),
         {"event_id": u(11), "type": "session_start", "user_id": ben, "ts": at(14, 1),
          "session_id": s2, "model": "m-2"}),
        (capture(12, ben, "message_received", at(14, 2), **{"$session_id": s2}, model="m-2",
                 message_id=f"{p}-m3"),
         {"event_id": u(12), "type": "message", "user_id": ben, "ts": at(14, 2),
          "session_id": s2, "model": "m-2", "role": "assistant", "message_id": f"{p}-m3"}),
        (capture(13, ben, "message_rated", at(14, 3), **{"$session_id": s2},
                 message_id=f"{p}-m3", rating=1),
         {"event_id": u(13), "type": "feedback", "user_id": ben, "ts": at(14, 3),
          "session_id": s2, "message_id": f"{p}-m3", "rating": 1}),
        (capture(14, ben, "risk_flag", at(14, 4), **{"$session_id": s2}, category="mania",
                 severity="critical", model="m-2"),
         {"event_id": u(14), "type": "risk_flag", "user_id": ben, "ts": at(14, 4),
          "session_id": s2, "model": "m-2", "category": "mania", "severity": "critical"}),
        # an app's own name, typed by the explicit property
        (capture(20, ben, "Safety Check", at(14, 6), **{"$session_id": s2},
                 usersignals_type="risk_flag", category="suicidal_ideation", severity="medium"),
         {"event_id": u(20), "type": "risk_flag", "user_id": ben, "ts": at(14, 6),
          "session_id": s2, "category": "suicidal_ideation", "severity": "medium"}),
        (capture(15, ben, "Chat Shared", at(14, 5), **{"$session_id": s2}, channel="link"),
         {"event_id": u(15), "type": "custom", "name": "Chat Shared", "user_id": ben,
          "ts": at(14, 5), "session_id": s2}),
        # identity calls: kept, not activity (cy does nothing else that day)
        (("set", {"distinct_id": cy, "properties": {"plan": "pro"}, "uuid": u(16),
                  "timestamp": at(8, 0)}),
         {"event_id": u(16), "type": "identify", "name": "$set", "user_id": cy, "ts": at(8, 0)}),
        (("alias", {"previous_id": f"{p}-anon-1", "distinct_id": cy, "uuid": u(17),
                    "timestamp": at(8, 1)}),
         {"event_id": u(17), "type": "identify", "name": "$create_alias",
          "user_id": f"{p}-anon-1", "ts": at(8, 1)}),
        (("group_identify", {"group_type": "company", "group_key": "acme",
                             "properties": {"seats": 12}, "distinct_id": cy, "uuid": u(18),
                             "timestamp": at(8, 2)}),
         {"event_id": u(18), "type": "identify", "name": "$groupidentify", "user_id": cy,
          "ts": at(8, 2)}),
        (capture(19, cy, "$identify", at(8, 3), **{"$set": {"email_domain": "example.com"}}),
         {"event_id": u(19), "type": "identify", "name": "$identify", "user_id": cy,
          "ts": at(8, 3)}),
    ], active={ana, ben})  # fmt: skip


def segment_day(day: date, sdk: str = "segment", p: str = "sg") -> Script:
    """segment-analytics-python (and rudder-sdk-python, the same API): ``track`` with Segment's
    Title Case event names, ``page``, ``screen``, an anonymous visitor, ``identify``, ``alias``
    and ``group``."""
    at, u = day_clock(day), ids(p)
    ana, ben, cy, visitor = f"{p}-ana", f"{p}-ben", f"{p}-cy", f"{p}-visitor"
    s1, s2 = f"{p}-s1", f"{p}-s2"
    api = {"platform": "api"}  # analytics-python's context.library, RudderStack's channel

    def track(n: int, user: str, event: str, when: datetime, **props: Any) -> Call:
        return "track", {
            "user_id": user, "event": event, "properties": props, "timestamp": when,
            "message_id": u(n),
        }  # fmt: skip

    return Script(sdk, [
        (track(1, ana, "Session Started", at(10, 0), session_id=s1, model="m-2"),
         {"event_id": u(1), "type": "session_start", "user_id": ana, "ts": at(10, 0),
          "session_id": s1, "model": "m-2", **api}),
        (track(2, ana, "Message Sent", at(10, 1), session_id=s1, message_id=f"{p}-m1"),
         {"event_id": u(2), "type": "message", "user_id": ana, "ts": at(10, 1),
          "session_id": s1, "role": "user", "message_id": f"{p}-m1"}),
        (track(3, ana, "Message Received", at(10, 2), session_id=s1, model="m-2",
               message_id=f"{p}-m2", tokens=230),
         {"event_id": u(3), "type": "message", "user_id": ana, "ts": at(10, 2),
          "session_id": s1, "model": "m-2", "role": "assistant", "message_id": f"{p}-m2",
          "tokens": 230}),
        (track(4, ana, "Thumbs Down", at(10, 3), session_id=s1, message_id=f"{p}-m2"),
         {"event_id": u(4), "type": "feedback", "user_id": ana, "ts": at(10, 3),
          "session_id": s1, "message_id": f"{p}-m2", "rating": -1}),
        # the vote changed, by a rating this time: the later one counts
        (track(5, ana, "Message Rated", at(10, 5), session_id=s1, message_id=f"{p}-m2",
               rating=1),
         {"event_id": u(5), "type": "feedback", "user_id": ana, "ts": at(10, 5),
          "session_id": s1, "message_id": f"{p}-m2", "rating": 1}),
        (track(6, ana, "Preference", at(10, 6), session_id=s1, model_a="m-1", model_b="m-2",
               winner="a"),
         {"event_id": u(6), "type": "preference", "user_id": ana, "ts": at(10, 6),
          "session_id": s1, "model_a": "m-1", "model_b": "m-2", "winner": "a"}),
        (track(7, ana, "Risk Flagged", at(10, 7), session_id=s1, model="m-2",
               category="emotional_dependence", severity="medium", source="moderator"),
         {"event_id": u(7), "type": "risk_flag", "user_id": ana, "ts": at(10, 7),
          "session_id": s1, "model": "m-2", "category": "emotional_dependence",
          "severity": "medium", "source": "moderator"}),
        (track(8, ana, "Session Ended", at(10, 40), session_id=s1, duration_s=2400),
         {"event_id": u(8), "type": "session_end", "user_id": ana, "ts": at(10, 40),
          "session_id": s1, "duration_s": 2400}),
        (("page", {"user_id": ana, "name": "Chat", "properties": {"url": "https://chat.example"},
                   "timestamp": at(10, 8), "message_id": u(9)}),
         {"event_id": u(9), "type": "custom", "name": "page", "user_id": ana, "ts": at(10, 8)}),
        (("screen", {"user_id": ben, "name": "Settings", "properties": {"platform": "android"},
                     "timestamp": at(16, 0), "message_id": u(10)}),
         {"event_id": u(10), "type": "custom", "name": "screen", "user_id": ben,
          "ts": at(16, 0), "platform": "android"}),
        (track(11, ben, "session_started", at(16, 1), session_id=s2, model="m-1"),
         {"event_id": u(11), "type": "session_start", "user_id": ben, "ts": at(16, 1),
          "session_id": s2, "model": "m-1"}),
        (track(12, ben, "Message Received", at(16, 2), session_id=s2, model="m-1",
               message_id=f"{p}-m3"),
         {"event_id": u(12), "type": "message", "user_id": ben, "ts": at(16, 2),
          "session_id": s2, "model": "m-1", "role": "assistant", "message_id": f"{p}-m3"}),
        (track(13, ben, "Thumbs Up", at(16, 3), session_id=s2, message_id=f"{p}-m3"),
         {"event_id": u(13), "type": "feedback", "user_id": ben, "ts": at(16, 3),
          "session_id": s2, "message_id": f"{p}-m3", "rating": 1}),
        (track(14, ben, "Risk-Flagged", at(16, 4), session_id=s2, category="self_harm",
               severity="high"),
         {"event_id": u(14), "type": "risk_flag", "user_id": ben, "ts": at(16, 4),
          "session_id": s2, "category": "self_harm", "severity": "high"}),
        # a visitor not signed in: the anonymous id is the user
        (("track", {"anonymous_id": visitor, "event": "Pricing Viewed", "timestamp": at(7, 0),
                    "message_id": u(15)}),
         {"event_id": u(15), "type": "custom", "name": "Pricing Viewed", "user_id": visitor,
          "ts": at(7, 0)}),
        # identity calls: kept, not activity (cy does nothing else that day)
        (("identify", {"user_id": cy, "traits": {"plan": "free"}, "timestamp": at(6, 0),
                       "message_id": u(16)}),
         {"event_id": u(16), "type": "identify", "name": "identify", "user_id": cy,
          "ts": at(6, 0)}),
        (("alias", {"previous_id": f"{p}-anon-9", "user_id": cy, "timestamp": at(6, 1),
                    "message_id": u(17)}),
         {"event_id": u(17), "type": "identify", "name": "alias", "user_id": cy,
          "ts": at(6, 1)}),
        (("group", {"user_id": cy, "group_id": "acme", "traits": {"seats": 12},
                    "timestamp": at(6, 2), "message_id": u(18)}),
         {"event_id": u(18), "type": "identify", "name": "group", "user_id": cy,
          "ts": at(6, 2)}),
    ], active={ana, ben, visitor})  # fmt: skip


def iglu(etype: str, **data: Any) -> SelfDescribingJson:
    """A usersignals event as Snowplow sends it natively (``usersignals schema --iglu``)."""
    return SelfDescribingJson(f"iglu:io.usersignals/{etype}/jsonschema/1-0-0", data)


def snowplow_day(day: date, p: str = "sp") -> Script:
    """snowplow-tracker: the usersignals types as self-describing events, a page view, a
    screen view and a structured event (all three ``custom``), with each event's true time
    (``ttm``: taken as is). The tracker makes the event ids."""
    at = day_clock(day)
    ana, ben, cy, s1, s2 = f"{p}-ana", f"{p}-ben", f"{p}-cy", f"{p}-s1", f"{p}-s2"

    def who(user: str, session: str | None = None, platform: str = "srv") -> Subject:
        subject = Subject().set_user_id(user).set_platform(platform)  # type: ignore[arg-type]
        return subject.set_domain_session_id(session) if session else subject

    def ms(moment: datetime) -> int:
        return int(moment.timestamp() * 1000)

    def sd(user: str, when: datetime, etype: str, session: str | None = None,
           **data: Any) -> SelfDescribing:  # fmt: skip
        return SelfDescribing(iglu(etype, **data), event_subject=who(user, session),
                              true_timestamp=ms(when))  # fmt: skip

    api = {"platform": "api"}  # p=srv
    return Script("snowplow", [
        (sd(ana, at(11, 0), "session_start", s1, model="m-3"),
         {"type": "session_start", "user_id": ana, "ts": at(11, 0), "session_id": s1,
          "model": "m-3", **api}),
        (sd(ana, at(11, 1), "message", s1, role="user", message_id=f"{p}-m1"),
         {"type": "message", "user_id": ana, "ts": at(11, 1), "session_id": s1, "role": "user",
          "message_id": f"{p}-m1"}),
        (sd(ana, at(11, 2), "message", s1, role="assistant", model="m-3",
            message_id=f"{p}-m2", tokens=99),
         {"type": "message", "user_id": ana, "ts": at(11, 2), "session_id": s1,
          "role": "assistant", "model": "m-3", "message_id": f"{p}-m2", "tokens": 99}),
        (sd(ana, at(11, 3), "feedback", s1, message_id=f"{p}-m2", rating=1),
         {"type": "feedback", "user_id": ana, "ts": at(11, 3), "session_id": s1,
          "message_id": f"{p}-m2", "rating": 1}),
        # the vote changed: the later one counts
        (sd(ana, at(11, 4), "feedback", s1, message_id=f"{p}-m2", rating=-1),
         {"type": "feedback", "user_id": ana, "ts": at(11, 4), "session_id": s1,
          "message_id": f"{p}-m2", "rating": -1}),
        (sd(ana, at(11, 5), "preference", s1, model_a="m-2", model_b="m-3", winner="tie"),
         {"type": "preference", "user_id": ana, "ts": at(11, 5), "session_id": s1,
          "model_a": "m-2", "model_b": "m-3", "winner": "tie"}),
        (sd(ana, at(11, 6), "risk_flag", s1, category="delusion", severity="high",
            source="user_report"),
         {"type": "risk_flag", "user_id": ana, "ts": at(11, 6), "session_id": s1,
          "category": "delusion", "severity": "high", "source": "user_report"}),
        (sd(ana, at(11, 30), "session_end", s1, duration_s=1800),
         {"type": "session_end", "user_id": ana, "ts": at(11, 30), "session_id": s1,
          "duration_s": 1800}),
        (PageView(page_url="https://chat.example/c/1", page_title="Chat",
                  event_subject=who(ben, platform="web"), true_timestamp=ms(at(15, 0))),
         {"type": "custom", "name": "page_view", "user_id": ben, "ts": at(15, 0),
          "platform": "web"}),
        (ScreenView(id_=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{p}-screen")), name="Settings",
                    event_subject=who(ben), true_timestamp=ms(at(15, 1))),
         {"type": "custom", "name": "screen_view", "user_id": ben, "ts": at(15, 1)}),
        (StructuredEvent(category="chat", action="Export Clicked", label="pdf",
                         event_subject=who(ben, s2), true_timestamp=ms(at(15, 2))),
         {"type": "custom", "name": "Export Clicked", "user_id": ben, "ts": at(15, 2),
          "session_id": s2}),
        (sd(ben, at(15, 3), "message", s2, role="assistant", model="m-2",
            message_id=f"{p}-m3"),
         {"type": "message", "user_id": ben, "ts": at(15, 3), "session_id": s2,
          "role": "assistant", "model": "m-2", "message_id": f"{p}-m3"}),
        (sd(ben, at(15, 4), "feedback", s2, message_id=f"{p}-m3", rating=-1),
         {"type": "feedback", "user_id": ben, "ts": at(15, 4), "session_id": s2,
          "message_id": f"{p}-m3", "rating": -1}),
        # an identity call, natively: kept, not activity
        (sd(cy, at(5, 0), "identify", name="login", properties={"plan": "team"}),
         {"type": "identify", "name": "login", "user_id": cy, "ts": at(5, 0)}),
    ], active={ana, ben})  # fmt: skip


NODE_SEGMENT_KEYS = {
    "user_id": "userId",
    "anonymous_id": "anonymousId",
    "message_id": "messageId",
    "previous_id": "previousId",
    "group_id": "groupId",
}


def segment_node_day(day: date) -> Script:
    """@segment/analytics-node: the Segment script, with the Node SDK's argument names."""
    script = segment_day(day, "segment-node", "sn")
    steps = [
        ((m, {NODE_SEGMENT_KEYS.get(k, k): v for k, v in kw.items()}), doc)
        for (m, kw), doc in script.steps
    ]
    return Script("segment-node", steps, script.active)


def posthog_node_day(day: date, p: str = "pn") -> Script:
    """posthog-node: ``capture`` (its arguments are an object), ``identify``, ``alias`` and
    ``groupIdentify``; the last three take no id nor time, the SDK makes both."""
    at, u = day_clock(day), ids(p)
    ana, ben, cy, s1 = f"{p}-ana", f"{p}-ben", f"{p}-cy", f"{p}-s1"

    def capture(n: int, user: str, event: str, when: datetime, **props: Any) -> Call:
        return "capture", {
            "event": event, "distinctId": user, "uuid": u(n), "timestamp": when,
            "properties": props,
        }  # fmt: skip

    return Script("posthog-node", [
        (capture(1, ana, "session_started", at(12, 0), **{"$session_id": s1}, model="m-1"),
         {"event_id": u(1), "type": "session_start", "user_id": ana, "ts": at(12, 0),
          "session_id": s1, "model": "m-1", "platform": "api"}),
        (capture(2, ana, "message_sent", at(12, 1), **{"$session_id": s1},
                 message_id=f"{p}-m1"),
         {"event_id": u(2), "type": "message", "user_id": ana, "ts": at(12, 1),
          "session_id": s1, "role": "user", "message_id": f"{p}-m1"}),
        (capture(3, ana, "message_received", at(12, 2), **{"$session_id": s1}, model="m-1",
                 message_id=f"{p}-m2"),
         {"event_id": u(3), "type": "message", "user_id": ana, "ts": at(12, 2),
          "session_id": s1, "model": "m-1", "role": "assistant", "message_id": f"{p}-m2"}),
        (capture(4, ana, "thumbs_down", at(12, 3), **{"$session_id": s1},
                 message_id=f"{p}-m2"),
         {"event_id": u(4), "type": "feedback", "user_id": ana, "ts": at(12, 3),
          "session_id": s1, "message_id": f"{p}-m2", "rating": -1}),
        # the vote changed: the later one counts
        (capture(5, ana, "thumbs_up", at(12, 4), **{"$session_id": s1}, message_id=f"{p}-m2"),
         {"event_id": u(5), "type": "feedback", "user_id": ana, "ts": at(12, 4),
          "session_id": s1, "message_id": f"{p}-m2", "rating": 1}),
        (capture(6, ana, "preference", at(12, 5), model_a="m-2", model_b="m-1",
                 winner="both_bad"),
         {"event_id": u(6), "type": "preference", "user_id": ana, "ts": at(12, 5),
          "model_a": "m-2", "model_b": "m-1", "winner": "both_bad"}),
        (capture(7, ana, "risk_flagged", at(12, 6), **{"$session_id": s1},
                 category="psychosis", severity="low"),
         {"event_id": u(7), "type": "risk_flag", "user_id": ana, "ts": at(12, 6),
          "session_id": s1, "category": "psychosis", "severity": "low"}),
        (capture(8, ana, "session_ended", at(12, 20), **{"$session_id": s1}),
         {"event_id": u(8), "type": "session_end", "user_id": ana, "ts": at(12, 20),
          "session_id": s1}),
        (capture(9, ben, "$pageview", at(13, 0), **{"$current_url": "https://chat.example"}),
         {"event_id": u(9), "type": "custom", "name": "$pageview", "user_id": ben,
          "ts": at(13, 0)}),
        (capture(10, ben, "$screen", at(13, 1), **{"$screen_name": "History"}),
         {"event_id": u(10), "type": "custom", "name": "$screen", "user_id": ben,
          "ts": at(13, 1)}),
        # identity calls: kept, not activity (cy does nothing else that day)
        (("identify", {"distinctId": cy, "properties": {"plan": "pro"}}),
         {"event_id": None, "type": "identify", "name": "$identify", "user_id": cy,
          "ts": None}),
        (("alias", {"distinctId": cy, "alias": f"{p}-anon-3"}),
         {"event_id": None, "type": "identify", "name": "$create_alias", "user_id": cy,
          "ts": None}),
        (("groupIdentify", {"groupType": "company", "groupKey": "acme", "distinctId": cy,
                            "properties": {"seats": 3}}),
         {"event_id": None, "type": "identify", "name": "$groupidentify", "user_id": cy,
          "ts": None}),
    ], active={ana, ben})  # fmt: skip


# --------------------------------------------------------------------------- running them


@dataclass
class Ran:
    """A script as it ran: what its SDK saw, and the expected events with their real ids."""

    script: Script
    observed: Observed
    expected: list[contract.Event] = field(default_factory=list)
    loose: set[str] = field(default_factory=set)
    """Ids of expected events whose id and time the SDK made (matched by type, user, name)."""
    given: dict[str, set[str]] = field(default_factory=dict)


def _resolve(ran: Ran) -> None:
    """The expected events: the tracker's ids where it made them, placeholders where the SDK
    made id and time (those are matched by type, user and name)."""
    docs = []
    for n, doc in enumerate(ran.script.docs):
        doc = dict(doc)
        if doc.get("event_id") is None:
            if ran.observed.ids:
                doc["event_id"] = ran.observed.ids[n]
            else:
                doc["event_id"] = f"loose-{ran.script.sdk}-{n}"
                ran.loose.add(doc["event_id"])
        if doc.get("ts") is None:
            doc["ts"] = datetime.now(UTC)
        doc["ts"] = doc["ts"].isoformat().replace("+00:00", "Z")
        ran.given[doc["event_id"]] = set(doc)
        docs.append(doc)
    ran.expected = expected_events(docs)


def _matched(ran: Ran, stored: dict[str, list[contract.Event]]) -> list[contract.Event]:
    """The expected events, each loose one replaced by the stored event it names."""
    out = []
    for want in ran.expected:
        if want.event_id not in ran.loose:
            out.append(want)
            continue
        found = [
            copies[0]
            for copies in stored.values()
            if (copies[0].type, copies[0].user_id, copies[0].name)
            == (want.type, want.user_id, want.name)
        ]
        assert len(found) == 1, f"{ran.script.sdk}: {len(found)} stored events like {want}"
        out.append(found[0])
    return out


def run_script(
    script: Script, url: str, node: Path | None, observed: Observed | None = None, **options: Any
) -> Ran:
    """Runs the script through its SDK against the collector at ``url``, recording into
    ``observed`` as it goes."""
    observed = Observed() if observed is None else observed
    if script.sdk == "posthog":
        run_posthog(url, script.calls, observed, **options)
    elif script.sdk == "segment":
        run_segment(url, script.calls, observed, **options)
    elif script.sdk == "rudder":
        run_rudder(url, script.calls, observed, **options)
    elif script.sdk == "snowplow":
        run_snowplow(url, script.calls, observed, **options)
    else:
        assert node is not None
        run_node(node, script.sdk.removesuffix("-node"), url, script.calls, observed, **options)
    ran = Ran(script, observed)
    _resolve(ran)
    return ran


@dataclass
class Day:
    """The scripted days as they ran through one pipeline, and what came out of it."""

    ran: dict[str, Ran]
    stored: dict[str, list[contract.Event]]
    live: dict[str, Any]
    node_skip: str
    warehouse: Path
    history: dict[str, Any]


def _corner(broker: EmbeddedBroker, tmp: Path, tag: str) -> Kafka:
    settings = Settings.load(
        environ={},
        bootstrap=broker.bootstrap,
        topic_prefix=f"{tag}{os.getpid()}",
        warehouse=tmp / "warehouse",
        state_dir=tmp / "state",
        partitions=8,
    )
    ensure_topics(broker.bootstrap, settings.partitions, settings.topics)
    return Kafka(broker, settings)


def all_scripts(days: dict[str, date]) -> list[Script]:
    return [
        posthog_day(days["posthog"]),
        segment_day(days["segment"]),
        segment_day(days["rudder"], "rudder", "rs"),
        snowplow_day(days["snowplow"]),
        posthog_node_day(days["posthog-node"]),
        segment_node_day(days["segment-node"]),
    ]


@pytest.fixture(scope="module")
def day(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Day:
    """Every SDK's day through one collector and one worker."""
    tmp = tmp_path_factory.mktemp("capture-sdks")
    node, node_skip = node_sdks()
    ran: dict[str, Ran] = {}
    with pipeline(_corner(broker, tmp, "sdk"), tmp) as p:
        for script in all_scripts(DAYS):
            if script.sdk.endswith("-node") and node is None:
                continue
            ran[script.sdk] = run_script(script, p.url, node)
        p.caught_up()
        stored = p.stored()
        live = p.live()
        # the real loader writes the topic into the warehouse
        loaded = subprocess.run(
            [sys.executable, "-m", "usersignals", "loader", "--drain"],
            env=p.kafka.env(),
            capture_output=True,
            timeout=300,
            check=False,
        )
        assert loaded.returncode == 0, loaded.stderr.decode()[-2000:]
        report = subprocess.run(
            [sys.executable, "-m", "usersignals", "report", "--json"],
            env=p.kafka.env(),
            capture_output=True,
            timeout=300,
            check=False,
        )
        assert report.returncode == 0, report.stderr.decode()[-2000:]
    history = json.loads(report.stdout)
    return Day(ran, stored, live, node_skip, p.kafka.settings.warehouse, history)


@pytest.mark.parametrize("sdk", SDKS)
def test_each_call_becomes_its_contract_event(day: Day, sdk: str) -> None:
    if sdk not in day.ran:
        pytest.skip(f"{sdk}: {day.node_skip}")
    ran = day.ran[sdk]
    assert ran.observed.errors == []
    assert ran.observed.statuses
    assert set(ran.observed.statuses) == {200}
    expected = _matched(ran, day.stored)
    assert mismatches(expected, day.stored, ran.given) == []
    # the client's own time is kept where the collector corrected ts by the send time
    # (Snowplow's true timestamp is taken as it is)
    if sdk != "snowplow":
        scripted = {e.event_id: e.ts for e in ran.expected if e.event_id not in ran.loose}
        client_ts = {
            i: datetime.fromisoformat((c.properties or {}).get("client_ts", "-"))
            for i in scripted
            for c in day.stored[i]
        }
        assert client_ts == scripted
    # nothing else of the SDK's users arrived
    users = {e.user_id for e in expected}
    others = {i for i, c in day.stored.items() if c[0].user_id in users} - {
        e.event_id for e in expected
    }
    assert others == set()


def test_live_report_equals_the_oracle(day: Day) -> None:
    expected = [e for ran in day.ran.values() for e in _matched(ran, day.stored)]
    assert live_differences(day.live, expected) == {}


def test_identity_calls_are_no_activity(day: Day) -> None:
    """A user who only identified is in no DAU: each SDK's day counts its active users only."""
    dau = {row["day"]: row["dau"] for row in day.live["active_users"]}
    events = {row["day"]: row["events"] for row in day.live["events_by_day"]}
    for sdk, ran in day.ran.items():
        on = DAYS[sdk].isoformat()
        assert dau[on] == len(ran.script.active), sdk
        counted = sum(1 for d in ran.script.docs if d["type"] != "identify")
        assert events[on] == counted, sdk


# --------------------------------------------------------------------------- retries


RETRY_OPTIONS: dict[str, dict[str, Any]] = {
    "posthog": {"gzip": True},  # 4 tries, Retry-After as the least wait: its defaults
    "segment": {},  # a 503 with Retry-After waits it out, for up to 30 min: its defaults
    "rudder": {},  # 10 retries, exponential backoff with jitter: its defaults
    "snowplow": {},  # retries until a 2xx: its defaults
    # Node: no Retry-After for a 5xx; more tries than the stall needs, and requests that
    # outlast the collector's own Kafka timeout (10 s)
    "posthog-node": {"fetchRetryCount": 10, "fetchRetryDelay": 1000, "requestTimeout": 30000},
    "segment-node": {"maxRetries": 10, "httpRequestTimeout": 30000},
}
STALL_LIMIT_S = 40.0
"""posthog-node sends a retry with the body of its first try, ``sent_at`` included, so the
clock-skew correction takes the time spent retrying for latency and its events land that much
later: up to the stall and the retries after it."""


def retry_scripts(day: date) -> list[Script]:
    """A few events per SDK, all sent while the broker is stopped."""
    at = day_clock(day)
    ph, sg, rs, sn, pn = ids("ph-r"), ids("sg-r"), ids("rs-r"), ids("sn-r"), ids("pn-r")

    def ph_call(n: int, user: str, event: str, when: datetime, **props: Any) -> Call:
        return "capture", {"event": event, "distinct_id": user, "uuid": ph(n), "timestamp": when,
                           "properties": props}  # fmt: skip

    def sg_call(u: Callable[[int], str], n: int, user: str, event: str, when: datetime,
                **props: Any) -> Call:  # fmt: skip
        return "track", {"user_id": user, "event": event, "properties": props, "timestamp": when,
                         "message_id": u(n)}  # fmt: skip

    def pn_call(n: int, user: str, event: str, when: datetime, **props: Any) -> Call:
        return "capture", {"event": event, "distinctId": user, "uuid": pn(n), "timestamp": when,
                           "properties": props}  # fmt: skip

    def to_node(call: Call) -> Call:
        return call[0], {NODE_SEGMENT_KEYS.get(k, k): v for k, v in call[1].items()}

    def ms(moment: datetime) -> int:
        return int(moment.timestamp() * 1000)

    subject = Subject().set_user_id("sp-r-ana").set_platform("srv")
    return [
        Script("posthog", [
            (ph_call(1, "ph-r-ana", "session_started", at(9, 0), model="m-1"),
             {"event_id": ph(1), "type": "session_start", "user_id": "ph-r-ana",
              "ts": at(9, 0), "model": "m-1"}),
            (ph_call(2, "ph-r-ana", "thumbs_up", at(9, 1), message_id="ph-r-m1"),
             {"event_id": ph(2), "type": "feedback", "user_id": "ph-r-ana", "ts": at(9, 1),
              "message_id": "ph-r-m1", "rating": 1}),
            (ph_call(3, "ph-r-ben", "$pageview", at(9, 2)),
             {"event_id": ph(3), "type": "custom", "name": "$pageview", "user_id": "ph-r-ben",
              "ts": at(9, 2)}),
        ], {"ph-r-ana", "ph-r-ben"}),
        Script("segment", [
            (sg_call(sg, 1, "sg-r-ana", "Message Sent", at(10, 0), model="m-2"),
             {"event_id": sg(1), "type": "message", "user_id": "sg-r-ana", "ts": at(10, 0),
              "role": "user", "model": "m-2"}),
            (sg_call(sg, 2, "sg-r-ana", "Risk Flagged", at(10, 1), category="other",
                     severity="critical"),
             {"event_id": sg(2), "type": "risk_flag", "user_id": "sg-r-ana", "ts": at(10, 1),
              "category": "other", "severity": "critical"}),
        ], {"sg-r-ana"}),
        Script("rudder", [
            (sg_call(rs, 1, "rs-r-ana", "Thumbs Down", at(11, 0), message_id="rs-r-m1",
                     model="m-1"),
             {"event_id": rs(1), "type": "feedback", "user_id": "rs-r-ana", "ts": at(11, 0),
              "message_id": "rs-r-m1", "rating": -1, "model": "m-1"}),
            (sg_call(rs, 2, "rs-r-ben", "Session Started", at(11, 1)),
             {"event_id": rs(2), "type": "session_start", "user_id": "rs-r-ben",
              "ts": at(11, 1)}),
        ], {"rs-r-ana", "rs-r-ben"}),
        Script("snowplow", [
            (SelfDescribing(iglu("message", role="assistant", model="m-3"),
                            event_subject=subject, true_timestamp=ms(at(12, 0))),
             {"type": "message", "user_id": "sp-r-ana", "ts": at(12, 0), "role": "assistant",
              "model": "m-3"}),
            (PageView(page_url="https://chat.example", event_subject=subject,
                      true_timestamp=ms(at(12, 1))),
             {"type": "custom", "name": "page_view", "user_id": "sp-r-ana", "ts": at(12, 1)}),
        ], {"sp-r-ana"}),
        Script("posthog-node", [
            (pn_call(1, "pn-r-ana", "message_received", at(13, 0), model="m-2"),
             {"event_id": pn(1), "type": "message", "user_id": "pn-r-ana", "ts": at(13, 0),
              "role": "assistant", "model": "m-2"}),
            (pn_call(2, "pn-r-ana", "preference", at(13, 1), model_a="m-1", model_b="m-2",
                     winner="a"),
             {"event_id": pn(2), "type": "preference", "user_id": "pn-r-ana", "ts": at(13, 1),
              "model_a": "m-1", "model_b": "m-2", "winner": "a"}),
        ], {"pn-r-ana"}),
        Script("segment-node", [
            (to_node(sg_call(sn, 1, "sn-r-ana", "Thumbs Up", at(14, 0), message_id="sn-r-m1")),
             {"event_id": sn(1), "type": "feedback", "user_id": "sn-r-ana", "ts": at(14, 0),
              "message_id": "sn-r-m1", "rating": 1}),
            (to_node(sg_call(sn, 2, "sn-r-ben", "Session Ended", at(14, 1), duration_s=60)),
             {"event_id": sn(2), "type": "session_end", "user_id": "sn-r-ben", "ts": at(14, 1),
              "duration_s": 60}),
        ], {"sn-r-ana", "sn-r-ben"}),
    ]  # fmt: skip


@pytest.mark.broker  # a broker of its own: it is stopped for a while
def test_sdks_retry_through_503_and_every_event_counts_once(tmp_path: Path) -> None:
    node, node_skip = node_sdks()
    scripts = [
        s for s in retry_scripts(TODAY - timedelta(days=1)) if node or not s.sdk.endswith("-node")
    ]
    with EmbeddedBroker(partitions=8, topics=(), log_path=tmp_path / "tansu.log") as own:
        assert own.pid is not None
        with pipeline(_corner(own, tmp_path, "retry"), tmp_path) as p:
            ran = _run_stalled(p, own.pid, scripts, node)
            p.caught_up()
            stored = p.stored()
            live = p.live()
    for sdk, r in ran.items():
        statuses = r.observed.statuses
        assert 503 in statuses, (sdk, statuses)  # it met the outage...
        assert statuses[-1] == 200, (sdk, statuses)  # ...and got through by retrying
        assert r.observed.errors == [], sdk
        late = timedelta(seconds=STALL_LIMIT_S + 30) if sdk == "posthog-node" else timedelta(0)
        assert mismatches(r.expected, stored, r.given, late) == [], sdk
    expected = [e for r in ran.values() for e in r.expected]
    # the first try's records reached the stopped broker, which stored them once let go on:
    # those events are in the topic twice, and count once
    twice = sorted(i for i, copies in stored.items() if len(copies) > 1)
    print(f"{len(twice)} of {len(expected)} events stored twice")
    assert twice
    assert live_differences(live, expected) == {}
    assert sum(row["events"] for row in live["events_by_day"]) == len(expected)
    if node is None:
        pytest.skip(f"the Python SDKs passed; the Node ones did not run: {node_skip}")


def _run_stalled(
    p: Pipeline, broker_pid: int, scripts: list[Script], node: Path | None
) -> dict[str, Ran]:
    """Stops the broker, starts every SDK at once, lets the broker go on once each SDK has been
    answered 503 twice (the broker is always let go on), and waits for every SDK to finish.

    The first request of each waits out the collector's Kafka timeout (10 s: the stopped
    broker still holds its connections), the next ones are refused at once (no connection to
    the partition leaders): about 20 s in all, within posthog-python's 4 tries."""
    ran: dict[str, Ran] = {}
    observed = {s.sdk: Observed() for s in scripts}
    failures: list[BaseException] = []

    def play(script: Script) -> None:
        try:
            options = RETRY_OPTIONS[script.sdk]
            ran[script.sdk] = run_script(script, p.url, node, observed[script.sdk], **options)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=play, args=(s,), daemon=True) for s in scripts]
    os.kill(broker_pid, signal.SIGSTOP)
    stopped = time.monotonic()
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + STALL_LIMIT_S
        while time.monotonic() < deadline and not failures:
            if all(o.statuses.count(503) >= 2 for o in observed.values()):
                break
            time.sleep(0.2)
    finally:
        os.kill(broker_pid, signal.SIGCONT)
    for t in threads:
        t.join(180)
    timeline = {
        sdk: [
            (status, round(at - stopped, 1)) for status, at in zip(o.statuses, o.times, strict=True)
        ]
        for sdk, o in observed.items()
    }
    print("statuses (and seconds after SIGSTOP):", timeline)
    assert not failures, failures
    assert sorted(ran) == sorted(s.sdk for s in scripts)
    return ran


def test_the_warehouse_keeps_identity_calls_and_counts_as_live(day: Day) -> None:
    """Loaded by the real loader: every identity call the SDKs made is in ``identities``, as
    sent, and nowhere in the metrics; the warehouse's report equals the live one."""
    from usersignals.warehouse.db import connect

    expected = [e for ran in day.ran.values() for e in _matched(ran, day.stored)]
    identify = {e.event_id: e for e in expected if e.type == "identify"}
    assert identify
    con = connect(day.warehouse)
    try:
        rows = con.sql("SELECT event_id, user_id, name FROM identities").fetchall()
    finally:
        con.close()
    assert {r[0]: (r[1], r[2]) for r in rows} == {
        i: (e.user_id, e.name) for i, e in identify.items()
    }
    shared = (set(day.live) & set(day.history)) - {"wellbeing_weekly"}
    assert {"active_users", "events_by_day", "arena"} <= shared
    assert {k: day.history[k] for k in shared} == {k: day.live[k] for k in shared}
