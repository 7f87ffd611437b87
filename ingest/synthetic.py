"""Realistic synthetic chat traffic, for demos, benchmarks and end-to-end tests.

The data set is what a chat product's clients really send, warts included: heavy-tailed user
activity (a few people chat every day, most now and then), sessions that cross midnight, several
model versions that behave differently (one "warm" version earns more thumbs up *and* more risk
flags, its rollout grows over the period and it grows warmer week after week), pairwise
preference votes, votes changed or withdrawn later, client retries (the same event sent
twice), sessions uploaded days late by offline mobile clients, every ``ts`` wire form, odd user
ids, and a small share of invalid records.

Generation is streamed day by day and seeded: the same arguments give the same lines, and memory
stays flat however many events are asked for.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import msgspec

__all__ = ["DEFAULT_MODELS", "GeneratorConfig", "ModelProfile", "generate"]


@dataclass(frozen=True)
class ModelProfile:
    """How one model version behaves in the synthetic world.

    Attributes:
        name: Model version as clients report it.
        thumbs_up: Probability that a vote on one of its answers is a thumbs up.
        risk_rate: Probability that a session with it raises a risk flag.
        rating: True arena rating (Elo scale) that preference votes are drawn from.
        rollout: Share of new sessions it serves on the first and on the last day.
        warming: How much ``thumbs_up`` and ``risk_rate`` have grown by the last day (linear
            from nothing on the first day): a version drifting into flattery.
    """

    name: str
    thumbs_up: float
    risk_rate: float
    rating: float
    rollout: tuple[float, float]
    warming: tuple[float, float] = (0.0, 0.0)

    def rates(self, progress: float) -> tuple[float, float]:
        """Thumbs-up probability and risk rate at ``progress`` (0: first day, 1: last day)."""
        return (
            self.thumbs_up + self.warming[0] * progress,
            self.risk_rate + self.warming[1] * progress,
        )


DEFAULT_MODELS: tuple[ModelProfile, ...] = (
    ModelProfile("m-5.0", thumbs_up=0.62, risk_rate=0.010, rating=1000.0, rollout=(0.6, 0.2)),
    ModelProfile("m-5.1", thumbs_up=0.68, risk_rate=0.008, rating=1060.0, rollout=(0.4, 0.45)),
    ModelProfile(
        "m-5.2-warm",
        thumbs_up=0.70,
        risk_rate=0.010,
        rating=1090.0,
        rollout=(0.0, 0.35),
        warming=(0.24, 0.08),
    ),
)

_CATEGORIES = (
    ("emotional_dependence", 30),
    ("sycophancy", 25),
    ("self_harm", 8),
    ("suicidal_ideation", 6),
    ("mania", 5),
    ("psychosis", 3),
    ("delusion", 8),
    ("other", 15),
)
_SEVERITIES = (("low", 50), ("medium", 30), ("high", 15), ("critical", 5))
_SOURCES = ("classifier", "classifier", "moderator", "user_report")
_PLATFORMS = (("web", 45), ("ios", 25), ("android", 20), ("desktop", 7), ("api", 3))
_INVALID = (
    '{"event_id":"%s","type":"feedback","user_id":"u-bad","ts":"%s","message_id":"m","rating":2}',
    '{"event_id":"%s","type":"thumbs","user_id":"u-bad","ts":"%s"}',
    '{"event_id":"%s","type":"session_start","user_id":12345,"ts":"%s"}',
    '{"event_id":"%s","type":"message","user_id":"u-bad","ts":"%s"}',
    '{"event_id":"%s","type":"session_start","user_id":"u-bad","ts":"%s+99:00"}',
    '{"event_id":"%s","type":"preference","user_id":"u-bad","ts":"%s",'
    '"model_a":"m-5.0","model_b":"m-5.0","winner":"a"}',
    '{"event_id":"%s","type":"risk_flag","user_id":"u-bad","ts":"%s",'
    '"category":"self_harm","severity":"extreme"}',
    "{oops %s %s",
)


@dataclass(frozen=True)
class GeneratorConfig:
    """What to generate.

    Attributes:
        users: Size of the user population (not all are active every day).
        days: Number of calendar days, ending with ``end``.
        end: Last day (UTC); yesterday when ``None``.
        seed: Seed of the random generator.
        invalid_rate: Share of extra lines that break the contract.
        retry_rate: Share of events a client sends twice (the same ``event_id``).
        late_rate: Share of sessions uploaded one to four days late.
        models: Model versions and how they behave.
    """

    users: int = 1000
    days: int = 14
    end: date | None = None
    seed: int = 0
    invalid_rate: float = 0.002
    retry_rate: float = 0.01
    late_rate: float = 0.01
    models: tuple[ModelProfile, ...] = field(default=DEFAULT_MODELS)

    @property
    def last_day(self) -> date:
        return self.end or (datetime.now(UTC).date() - timedelta(days=1))


def _weighted(rng: random.Random, table: tuple[tuple[str, int], ...]) -> str:
    return rng.choices([k for k, _ in table], weights=[w for _, w in table])[0]


class _World:
    """The generator's state: users, counters and the queue of late uploads."""

    def __init__(self, config: GeneratorConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.counter = 0
        self.encoder = msgspec.json.Encoder()
        rng = self.rng
        self.user_ids = [self._user_id(i) for i in range(config.users)]
        # Heavy tail: most people come now and then, a few every day.
        self.activity = [min(0.95, 0.04 * rng.paretovariate(1.3)) for _ in range(config.users)]
        self.no_consent = {i for i in range(config.users) if rng.random() < 0.01}
        self.platform = [_weighted(rng, _PLATFORMS) for _ in range(config.users)]
        self.late: list[tuple[int, int, list[bytes]]] = []  # (release day ordinal, seq, lines)

    def _user_id(self, i: int) -> str:
        kind = i % 97
        if kind == 13:
            return f"用户-{i}"
        if kind == 29:
            return f'o"brien, {i}'
        if kind == 41:
            return f"{i}-" + "x" * 120
        return f"u-{i:07d}"

    def next_id(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.config.seed:x}-{self.counter:x}"

    def ts(self, moment: datetime) -> str | int:
        """One of the wire forms a real client sends, for the same instant."""
        r = self.rng.random()
        if r < 0.70:
            return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
        if r < 0.85:
            return int(moment.timestamp() * 1000)
        offset = timedelta(hours=5, minutes=30)
        local = (moment + offset).replace(tzinfo=None)
        return local.strftime("%Y-%m-%dT%H:%M:%S.%f") + "+05:30"

    def model_for(self, progress: float) -> ModelProfile:
        models = self.config.models
        weights = [m.rollout[0] + (m.rollout[1] - m.rollout[0]) * progress for m in models]
        return self.rng.choices(models, weights=weights)[0]

    def encode(self, event: dict[str, Any]) -> bytes:
        return self.encoder.encode(event)


def _session(world: _World, user: int, start: datetime, progress: float) -> list[bytes]:
    """The events of one chat session, in the order the client sends them."""
    rng = world.rng
    uid = world.user_ids[user]
    model = world.model_for(progress)
    thumbs_up, risk_rate = model.rates(progress)
    sid = world.next_id("s-")
    base: dict[str, Any] = {"user_id": uid, "session_id": sid, "platform": world.platform[user]}
    out: list[dict[str, Any]] = []
    t = start

    def emit(kind: str, moment: datetime, **fields: Any) -> None:
        out.append(
            {
                "event_id": world.next_id("e-"),
                "type": kind,
                "ts": world.ts(moment),
                **base,
                **fields,
            }
        )

    props: dict[str, Any] = {"app_version": f"{rng.randint(3, 5)}.{rng.randint(0, 9)}"}
    if user in world.no_consent:
        props["consent"] = False
    emit("session_start", t, model=model.name, properties=props)
    turns = 1 + int(rng.expovariate(0.35))
    for _ in range(turns):
        t += timedelta(seconds=rng.randint(5, 240), milliseconds=rng.randint(0, 999))
        emit("message", t, role="user", tokens=rng.randint(3, 300))
        t += timedelta(seconds=rng.randint(1, 20), milliseconds=rng.randint(0, 999))
        mid = world.next_id("msg-")
        emit("message", t, role="assistant", model=model.name, message_id=mid,
             tokens=rng.randint(20, 1500))  # fmt: skip
        if rng.random() < 0.25:
            rating = 1 if rng.random() < thumbs_up else -1
            vote_at = t + timedelta(seconds=rng.randint(2, 60))
            emit("feedback", vote_at, model=model.name, message_id=mid, rating=rating)
            if rng.random() < 0.08:  # changed their mind, sometimes the next day
                later = vote_at + timedelta(minutes=rng.choice((3, 90, 60 * 20)))
                emit("feedback", later, model=model.name, message_id=mid,
                     rating=rng.choice((0, -rating)))  # fmt: skip
    if rng.random() < 0.10 and len(world.config.models) > 1:
        other = rng.choice([m for m in world.config.models if m is not model])
        p_a = 1.0 / (1.0 + 10 ** ((other.rating - model.rating) / 400.0))
        r = rng.random()
        winner = (
            "tie" if r < 0.10 else "both_bad" if r < 0.13 else ("a" if rng.random() < p_a else "b")
        )
        emit("preference", t + timedelta(seconds=5), model_a=model.name, model_b=other.name,
             winner=winner)  # fmt: skip
    if rng.random() < risk_rate:
        emit("risk_flag", t + timedelta(seconds=1), model=model.name,
             category=_weighted(rng, _CATEGORIES), severity=_weighted(rng, _SEVERITIES),
             source=rng.choice(_SOURCES))  # fmt: skip
    t += timedelta(seconds=rng.randint(10, 600))
    emit("session_end", t, duration_s=round((t - start).total_seconds(), 3))
    lines = [world.encode(e) for e in out]
    retried: list[bytes] = []
    for line in lines:
        retried.append(line)
        if rng.random() < world.config.retry_rate:
            retried.append(line)  # a client retry after a lost acknowledgement
    return retried


def generate(config: GeneratorConfig) -> Iterator[bytes]:
    """Yields the data set as JSON lines (bytes, no newline), in the order clients send them."""
    world = _World(config)
    rng = world.rng
    last = config.last_day
    first = last - timedelta(days=config.days - 1)
    seq = 0
    for n in range(config.days):
        day = first + timedelta(days=n)
        progress = n / max(1, config.days - 1)
        midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
        while world.late and world.late[0][0] <= day.toordinal():
            yield from heapq.heappop(world.late)[2]
        for user in range(config.users):
            if rng.random() >= world.activity[user]:
                continue
            for _ in range(1 + int(rng.expovariate(1.5))):
                # Evening-heavy hours; a session that starts late runs past midnight.
                hour = min(23.99, rng.triangular(0.0, 24.0, 21.0))
                start = midnight + timedelta(
                    seconds=int(hour * 3600), milliseconds=rng.randint(0, 999)
                )
                lines = _session(world, user, start, progress)
                if rng.random() < config.late_rate:
                    release = day.toordinal() + rng.randint(1, 4)
                    seq += 1
                    heapq.heappush(world.late, (release, seq, lines))
                    continue
                for line in lines:
                    yield line
                    if rng.random() < config.invalid_rate:
                        yield _invalid(world, midnight)
    while world.late:
        yield from heapq.heappop(world.late)[2]


def _invalid(world: _World, midnight: datetime) -> bytes:
    template = world.rng.choice(_INVALID)
    stamp = (midnight + timedelta(hours=12)).strftime("%Y-%m-%dT%H:%M:%S")
    if template.endswith('+99:00"}'):
        return (template % (world.next_id("bad-"), stamp)).encode()
    return (template % (world.next_id("bad-"), stamp + "Z")).encode()
