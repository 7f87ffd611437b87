"""Attribution to a model, live (docs/attribution.md): which model a vote or flag without one
counts for, whatever order the events arrive in.

:class:`ModelRefs` keeps, per day, the earliest model-carrying event of each message and
session (``DayState.msg_refs`` / ``sess_refs``) and, per message and session, the day holding
its earliest one. A register's model is the model of its earliest candidate. When it changes
(an earlier candidate in any arrival order, or the earliest day pruned), the votes
(:class:`~usersignals.metrics.feedback.Feedback`) and flags
(:class:`~usersignals.metrics.risk.Risk`) resolved through it are resolved again and their
counts move, so the state stays a function of the set of events folded. The same rule from
history is ``attribution.sql`` beside this file.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from usersignals.metrics.day import DayState

if TYPE_CHECKING:
    from usersignals.ingest.contract import Event
    from usersignals.metrics.feedback import Feedback
    from usersignals.metrics.risk import Risk

__all__ = ["Key", "ModelRefs", "Ref"]

Key = tuple[str, str]
"""(user_id, message_id) or (user_id, session_id)."""
Ref = tuple[Any, str, str]
"""A model reference: (ts, event_id, model)."""
_MsgKey = tuple[str, "str | None"]


class ModelRefs:
    """The message and session registers of one partition, over its ``days``."""

    def __init__(self, days: Mapping[int, DayState]) -> None:
        self.days = days
        self.msg_day: dict[_MsgKey, int] = {}
        self.sess_day: dict[Key, int] = {}
        self._feedback: Feedback
        self._risk: Risk

    def bind(self, feedback: Feedback, risk: Risk) -> None:
        """The units whose counts follow a register when its model changes (once, before
        anything is folded)."""
        self._feedback = feedback
        self._risk = risk

    # -- reading -------------------------------------------------------------------------

    def message_model(self, mk: _MsgKey) -> str | None:
        """The model of a message (user_id, message_id), None when none is known."""
        o = self.msg_day.get(mk)
        return None if o is None else self.days[o].msg_refs[mk][2]

    def session_model(self, sk: Key) -> str | None:
        """The model of a session (user_id, session_id), None when none is known."""
        o = self.sess_day.get(sk)
        return None if o is None else self.days[o].sess_refs[sk][2]

    # -- folding -------------------------------------------------------------------------

    def add(self, ev: Event, uid: str, o: int, day: DayState) -> None:
        """A ``message`` or ``session_start`` event that carries a model, on day ``o``."""
        model: str = ev.model  # type: ignore[assignment]  # the caller checked it is set
        eid = ev.event_id
        sid = ev.session_id
        if sid is not None:
            rk = (uid, sid)
            ref = day.sess_refs.get(rk)
            if ref is not None:  # mostly a later event of the day's session
                ts = ev.ts
                if ts < ref[0] or (ts == ref[0] and eid < ref[1]):
                    self._session_ref(rk, ref, (ts, eid, model), o)
            elif rk not in self.sess_day:
                day.sess_refs[rk] = (ev.ts, eid, model)
                self.sess_day[rk] = o
                if self._depends_on(rk):
                    self._session_moved(rk, None, model)
            else:
                self._session_ref(rk, None, (ev.ts, eid, model), o)
        mid = ev.message_id
        if mid is not None and ev.type == "message":
            mk = (uid, mid)
            if mk not in self.msg_day:  # mostly a message seen for the first time
                day.msg_refs[mk] = (ev.ts, eid, model)
                self.msg_day[mk] = o
                self._revote(mk)
            else:
                mref = day.msg_refs.get(mk)
                ts = ev.ts
                if mref is None or ts < mref[0] or (ts == mref[0] and eid < mref[1]):
                    self._message_ref(mk, mref, (ts, eid, model), o)

    def _message_ref(self, mk: _MsgKey, ref: Ref | None, new: Ref, o: int) -> None:
        """A message event with a model that is its day's earliest for (user, message_id)."""
        self.days[o].msg_refs[mk] = new
        model = new[2]
        best = self.msg_day.get(mk)
        if best is not None and best < o:
            return
        before = None
        if best is None:
            self.msg_day[mk] = o
        elif best > o:
            before = self.days[best].msg_refs[mk][2]
            self.msg_day[mk] = o
        elif ref is not None:
            before = ref[2]
        if before != model:
            self._revote(mk)

    def _session_ref(self, sk: Key, ref: Ref | None, new: Ref, o: int) -> None:
        """A session event with a model that is its day's earliest for (user, session_id)."""
        self.days[o].sess_refs[sk] = new
        model = new[2]
        best = self.sess_day.get(sk)
        if best is not None and best < o:
            return
        before = None
        if best is None:
            self.sess_day[sk] = o
        elif best > o:
            before = self.days[best].sess_refs[sk][2]
            self.sess_day[sk] = o
        elif ref is not None:
            before = ref[2]
        if before != model and self._depends_on(sk):
            self._session_moved(sk, before, model)

    # -- what depends on a register ------------------------------------------------------

    def _depends_on(self, sk: Key) -> bool:
        return sk in self._feedback.sess_votes or sk in self._risk.sess_flags

    def _revote(self, mk: _MsgKey) -> None:
        if mk in self._feedback.votes:
            self._feedback.revote(mk)

    def _session_moved(self, sk: Key, before: str | None, after: str | None) -> None:
        """A session's model changed: its dependent votes and flags follow."""
        for key in list(self._feedback.sess_votes.get(sk, ())):
            self._feedback.revote(key)
        self._risk.move(sk, before, after)

    # -- retention -----------------------------------------------------------------------

    def drop_day(self, o: int, day: DayState) -> None:
        """Registers whose earliest candidate was on the pruned day ``o`` fall back to the next
        held day's candidate (or to none), and what they attribute follows (``o`` is no longer
        in ``days``)."""
        later = sorted(self.days)
        messages: list[_MsgKey] = []
        for mk, ref in day.msg_refs.items():
            if self.msg_day.get(mk) == o:
                nxt = next((d for d in later if mk in self.days[d].msg_refs), None)
                if nxt is None:
                    del self.msg_day[mk]
                else:
                    self.msg_day[mk] = nxt
                if nxt is None or self.days[nxt].msg_refs[mk][2] != ref[2]:
                    messages.append(mk)
        sessions: list[tuple[Key, str, str | None]] = []
        for sk, ref in day.sess_refs.items():
            if self.sess_day.get(sk) == o:
                nxt = next((d for d in later if sk in self.days[d].sess_refs), None)
                after = None
                if nxt is None:
                    del self.sess_day[sk]
                else:
                    self.sess_day[sk] = nxt
                    after = self.days[nxt].sess_refs[sk][2]
                if after != ref[2]:
                    sessions.append((sk, ref[2], after))
        # every register is current now: resolve what depends on the changed ones
        for mk in messages:
            self._revote(mk)
        for sk, before, after in sessions:
            if self._depends_on(sk):
                self._session_moved(sk, before, after)
