"""Feedback, live (docs/metrics.md): the latest vote per user and message, thumbs up and down
per day and model.

For each (``user_id``, ``message_id``) only the vote with the greatest (``ts``, ``event_id``)
counts, on its day, under its attributed model (its own, else its message's, else its
session's: :mod:`usersignals.metrics.attribution`); a latest vote of 0 (withdrawn) counts
nowhere. :class:`Feedback` is that last-writer-wins register; the per-day counts it keeps
(``DayState.fb``) are what every surface reads. The same metric from history is
``feedback.sql`` beside this file.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from usersignals.metrics.attribution import Key, ModelRefs
from usersignals.metrics.day import DayState

if TYPE_CHECKING:
    from usersignals.ingest.contract import Event

__all__ = ["Feedback", "Vote", "feedback_rows"]

VoteKey = tuple[str, "str | None"]
Vote = tuple[tuple[Any, str], int, "str | None", "int | None", "str | None", "str | None"]
"""A latest vote: ((ts, event_id), day ordinal, model counted under (the attributed one),
rating, the vote's own model, its session_id)."""


class Feedback:
    """The latest-vote register of one partition, counting into the days of ``days``."""

    def __init__(self, days: Mapping[int, DayState], refs: ModelRefs) -> None:
        self.days = days
        self.refs = refs
        self.votes: dict[VoteKey, Vote] = {}
        # latest votes without a model of their own, by the session they may take it from
        self.sess_votes: dict[Key, set[VoteKey]] = {}

    def add(self, ev: Event, uid: str, o: int, day: DayState) -> None:
        """A ``feedback`` event on day ``o`` (``uid``: its user, interned)."""
        key = (uid, ev.message_id)
        rank = (ev.ts, ev.event_id)
        old = self.votes.get(key)
        if old is not None:
            if rank < old[0]:
                return
            self.days[old[1]].votes.discard(key)
            self._count(old, -1)
            if old[4] is None and old[5] is not None:
                self._unindex(key, old[5])
        own = ev.model
        sid = ev.session_id
        model = own
        if own is None:
            model = self._model(key, sid)
            if sid is not None:
                found = self.sess_votes.get((uid, sid))
                if found is None:
                    found = self.sess_votes[(uid, sid)] = set()
                found.add(key)
        vote = (rank, o, model, ev.rating, own, sid)
        self.votes[key] = vote
        day.votes.add(key)
        self._count(vote, 1)

    def revote(self, key: VoteKey) -> None:
        """Resolves a latest vote without a model of its own again; moves its count."""
        vote = self.votes.get(key)
        if vote is None or vote[4] is not None:
            return
        model = self._model(key, vote[5])
        if model != vote[2]:
            self._count(vote, -1)
            vote = (vote[0], vote[1], model, vote[3], vote[4], vote[5])
            self.votes[key] = vote
            self._count(vote, 1)

    def drop_day(self, day: DayState) -> None:
        """Forgets the votes whose latest is on a pruned day."""
        for key in day.votes:
            vote = self.votes.pop(key)
            if vote[4] is None and vote[5] is not None:
                self._unindex(key, vote[5])

    def _model(self, key: VoteKey, sid: str | None) -> str | None:
        """The model of a vote without one of its own: its message's, else its session's."""
        model = self.refs.message_model(key)
        if model is not None:
            return model
        return None if sid is None else self.refs.session_model((key[0], sid))

    def _count(self, vote: Vote, n: int) -> None:
        """Adds ``n`` to the thumbs count of a latest vote (withdrawn votes count nowhere)."""
        rating = vote[3]
        if rating == 1 or rating == -1:
            fb = self.days[vote[1]].fb
            fk = (vote[2], rating)
            left = fb.get(fk, 0) + n
            if left:
                fb[fk] = left
            else:
                del fb[fk]

    def _unindex(self, key: VoteKey, sid: str) -> None:
        sk = (key[0], sid)
        found = self.sess_votes[sk]
        found.discard(key)
        if not found:
            del self.sess_votes[sk]


def feedback_rows(iso: str, fb: dict[tuple[str | None, int], int]) -> list[list[Any]]:
    """[day, model, thumbs up, thumbs down] rows of one day's counts."""
    models = {m for m, _ in fb}
    return [[iso, m, fb.get((m, 1), 0), fb.get((m, -1), 0)] for m in models]
