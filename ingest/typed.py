"""The SDK's typed calls: one method per event type, each with the fields that type takes.

:class:`TypedEvents` is mixed into :class:`~usersignals.ingest.tracker.Tracker`: each method
builds the event's wire bytes with the contract's checks
(:func:`~usersignals.ingest.batching.encode_call`, which raises
:class:`~usersignals.ingest.contract.EventError` naming the field) and hands them to the
tracker's queue.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from usersignals.ingest.batching import Item, encode_call

__all__ = ["METHOD_FIELDS", "TypedEvents"]

_SESSION_START = ("session_id", "model", "platform", "properties")
_SESSION_END = ("session_id", "model", "platform", "properties", "duration_s")
_MESSAGE = ("session_id", "model", "platform", "properties", "role", "tokens", "message_id")
_FEEDBACK = ("session_id", "model", "platform", "properties", "message_id", "rating")
_PREFERENCE = ("session_id", "model", "platform", "properties", "model_a", "model_b", "winner")
_RISK_FLAG = ("session_id", "model", "platform", "properties", "category", "severity", "source")
_NAMED = ("session_id", "model", "platform", "properties", "name")
METHOD_FIELDS = {
    "session_start": _SESSION_START,
    "session_end": _SESSION_END,
    "message": _MESSAGE,
    "feedback": _FEEDBACK,
    "preference": _PREFERENCE,
    "risk_flag": _RISK_FLAG,
    "custom": _NAMED,
    "identify": _NAMED,
}
"""Per typed method: the event fields it takes besides ``user_id``, ``event_id`` and ``ts``,
in the contract's order (a test checks them against the signatures)."""


class TypedEvents:
    """``session_start``, ``session_end``, ``message``, ``feedback``, ``preference``,
    ``risk_flag``, ``custom`` and ``identify``: keyword arguments in, the ``event_id`` out."""

    def _enqueue(self, event_id: str, item: Item) -> str:
        raise NotImplementedError

    def session_start(
        self,
        user_id: str,
        *,
        session_id: str | None = None,
        ts: datetime | str | int | None = None,
        event_id: str | None = None,
        model: str | None = None,
        platform: str | None = None,
        properties: Mapping[str, Any] | None = None,
    ) -> str:
        """Records the start of a session; returns the event's ``event_id``.

        Raises:
            EventError: the event breaks the contract (the message names the field).
            TrackerClosedError: the tracker is closed.
        """
        values = (session_id, model, platform, properties)
        return self._enqueue(
            *encode_call("session_start", user_id, event_id, ts, _SESSION_START, values)
        )

    def session_end(
        self,
        user_id: str,
        *,
        session_id: str | None = None,
        duration_s: float | None = None,
        ts: datetime | str | int | None = None,
        event_id: str | None = None,
        model: str | None = None,
        platform: str | None = None,
        properties: Mapping[str, Any] | None = None,
    ) -> str:
        """Records the end of a session (``duration_s`` >= 0); returns the ``event_id``.

        Raises:
            EventError: the event breaks the contract (the message names the field).
            TrackerClosedError: the tracker is closed.
        """
        values = (session_id, model, platform, properties, duration_s)
        return self._enqueue(
            *encode_call("session_end", user_id, event_id, ts, _SESSION_END, values)
        )

    def message(
        self,
        user_id: str,
        role: str,
        *,
        tokens: int | None = None,
        message_id: str | None = None,
        session_id: str | None = None,
        ts: datetime | str | int | None = None,
        event_id: str | None = None,
        model: str | None = None,
        platform: str | None = None,
        properties: Mapping[str, Any] | None = None,
    ) -> str:
        """Records one chat message (``role``: user, assistant, system, tool).

        Raises:
            EventError: the event breaks the contract (the message names the field).
            TrackerClosedError: the tracker is closed.
        """
        values = (session_id, model, platform, properties, role, tokens, message_id)
        return self._enqueue(*encode_call("message", user_id, event_id, ts, _MESSAGE, values))

    def feedback(
        self,
        user_id: str,
        message_id: str,
        rating: int,
        *,
        session_id: str | None = None,
        ts: datetime | str | int | None = None,
        event_id: str | None = None,
        model: str | None = None,
        platform: str | None = None,
        properties: Mapping[str, Any] | None = None,
    ) -> str:
        """Records a vote on a message: ``rating`` 1 (up), -1 (down) or 0 (withdrawn).

        Raises:
            EventError: the event breaks the contract (the message names the field).
            TrackerClosedError: the tracker is closed.
        """
        values = (session_id, model, platform, properties, message_id, rating)
        return self._enqueue(*encode_call("feedback", user_id, event_id, ts, _FEEDBACK, values))

    def preference(
        self,
        user_id: str,
        model_a: str,
        model_b: str,
        winner: str,
        *,
        session_id: str | None = None,
        ts: datetime | str | int | None = None,
        event_id: str | None = None,
        model: str | None = None,
        platform: str | None = None,
        properties: Mapping[str, Any] | None = None,
    ) -> str:
        """Records a side-by-side vote (``winner``: a, b, tie, both_bad).

        Raises:
            EventError: the event breaks the contract (the message names the field).
            TrackerClosedError: the tracker is closed.
        """
        values = (session_id, model, platform, properties, model_a, model_b, winner)
        return self._enqueue(*encode_call("preference", user_id, event_id, ts, _PREFERENCE, values))

    def risk_flag(
        self,
        user_id: str,
        category: str,
        severity: str,
        *,
        source: str | None = None,
        session_id: str | None = None,
        ts: datetime | str | int | None = None,
        event_id: str | None = None,
        model: str | None = None,
        platform: str | None = None,
        properties: Mapping[str, Any] | None = None,
    ) -> str:
        """Records a wellbeing risk flag (``category``, ``severity``, optional ``source``).

        Raises:
            EventError: the event breaks the contract (the message names the field).
            TrackerClosedError: the tracker is closed.
        """
        values = (session_id, model, platform, properties, category, severity, source)
        return self._enqueue(*encode_call("risk_flag", user_id, event_id, ts, _RISK_FLAG, values))

    def custom(
        self,
        user_id: str,
        name: str,
        *,
        session_id: str | None = None,
        ts: datetime | str | int | None = None,
        event_id: str | None = None,
        model: str | None = None,
        platform: str | None = None,
        properties: Mapping[str, Any] | None = None,
    ) -> str:
        """Records an app event that is not a signal (a page view, a screen, a click named
        ``name``): the user counts as active, and nothing else is counted.

        Raises:
            EventError: the event breaks the contract (the message names the field).
            TrackerClosedError: the tracker is closed.
        """
        values = (session_id, model, platform, properties, name)
        return self._enqueue(*encode_call("custom", user_id, event_id, ts, _NAMED, values))

    def identify(
        self,
        user_id: str,
        name: str = "identify",
        *,
        session_id: str | None = None,
        ts: datetime | str | int | None = None,
        event_id: str | None = None,
        model: str | None = None,
        platform: str | None = None,
        properties: Mapping[str, Any] | None = None,
    ) -> str:
        """Records an identity call (``name``: identify, alias, group, ...; traits in
        ``properties``): kept in the warehouse's ``identities`` table, not counted as activity.

        Raises:
            EventError: the event breaks the contract (the message names the field).
            TrackerClosedError: the tracker is closed.
        """
        values = (session_id, model, platform, properties, name)
        return self._enqueue(*encode_call("identify", user_id, event_id, ts, _NAMED, values))
