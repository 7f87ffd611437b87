"""Which files a report reads: rollups for compacted days, raw rows for everything else.

Compaction (:mod:`usersignals.warehouse.rollup`) writes next to each compacted file
``events/day=D/c-{digest}.parquet`` the day's rollups, named after the same digest::

    rollups/users-{n:012d}.parquet                 user_id -> uid, a dense dictionary of n users
    rollups/day=YYYY-MM-DD/{kind}-{digest}.parquet one file per kind of ROLLUP_SCHEMAS
    rollups/week=YYYY-MM-DD/w-{digest}.parquet     distinct users of an ISO week (Monday's date)
    rollups/week=YYYY-MM-DD/{kind}-{digest}.parquet one file per kind of WEEK_ROLLUP_SCHEMAS

Only files the manifest names count (:mod:`usersignals.warehouse.manifest`): compaction writes
a day's rollups and merged file first and puts them in the manifest in one replace. A day is
*served* by rollups when its live compacted file has every kind of rollup; its rows are
then never read by a report, unless an ``event_id`` of the day also occurs in another day or in
the tail (the report reads such *dirty* days raw, so the first-copy rule stays exact). The
*tail* is every other live events file. A weekly file counts only when its footer (``covers``)
names exactly the served days of its week, no tail file falls in that week, and the week's
files of every kind of :data:`WEEK_ROLLUP_SCHEMAS` carry its digest (the digest of the covers):
a week written by an older version without them is counted from its days instead.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from usersignals.warehouse.layout import COVERS_KEY
from usersignals.warehouse.manifest import Manifest, read_manifest

__all__ = [
    "ROLLUPS_DIR",
    "ROLLUP_RELATIONS",
    "ROLLUP_SCHEMAS",
    "USERS_SCHEMA",
    "WEEK_ROLLUP_SCHEMAS",
    "WEEK_SCHEMA",
    "Plan",
    "digest_of",
    "empty_sql",
    "monday_of",
    "parquet_sql",
    "plan",
    "rollup_path",
    "users_files",
    "week_dir",
    "week_rollup_path",
]

ROLLUPS_DIR = "rollups"

_DAY = pa.date32()
_KEY = pa.int64()
_TEXT = pa.string()

ROLLUP_SCHEMAS: dict[str, pa.Schema] = {
    "ids": pa.schema([("day", _DAY), ("h", pa.uint64())]),
    "shared": pa.schema([("day", _DAY), ("other_day", _DAY)]),
    "user_days": pa.schema([("user_id", _KEY), ("day", _DAY)]),
    "model_user_days": pa.schema([("day", _DAY), ("model", _TEXT), ("user_id", _KEY)]),
    "events_by_day": pa.schema([("day", _DAY), ("events", pa.int64())]),
    "feedback_votes": pa.schema(
        [
            ("user_id", _KEY),
            ("message_id", _TEXT),
            ("day", _DAY),
            ("ts", pa.timestamp("us", tz="UTC")),
            ("model", _TEXT),
            ("rating", pa.int32()),
            ("event_id", _TEXT),
            ("session_id", _TEXT),
        ]
    ),
    "risk_cells": pa.schema(
        [
            ("day", _DAY),
            ("user_id", _KEY),
            ("model", _TEXT),
            ("category", _TEXT),
            ("severity", _TEXT),
            ("flags", pa.int64()),
            ("session_id", _TEXT),
        ]
    ),
    "model_refs": pa.schema(
        [
            ("kind", _TEXT),
            ("user_id", _KEY),
            ("ref", _TEXT),
            ("day", _DAY),
            ("ts", pa.timestamp("us", tz="UTC")),
            ("event_id", _TEXT),
            ("model", _TEXT),
        ]
    ),
    "session_parts": pa.schema(
        [
            ("day", _DAY),
            ("user_id", _KEY),
            ("session_id", _TEXT),
            ("first_ts", pa.timestamp("us", tz="UTC")),
            ("last_ts", pa.timestamp("us", tz="UTC")),
            ("end_duration_s", pa.float64()),
            ("messages", pa.int64()),
        ]
    ),
    "user_messages": pa.schema([("day", _DAY), ("user_id", _KEY), ("messages", pa.int64())]),
    "arena_daily": pa.schema(
        [
            ("day", _DAY),
            ("model_a", _TEXT),
            ("model_b", _TEXT),
            ("winner", _TEXT),
            ("votes", pa.int64()),
        ]
    ),
}
"""Columns of each kind of day rollup. ``ids``: 64-bit hashes of the day's event ids;
``shared``: other compacted days holding one of those hashes when the day was compacted; the
rest: the relations of the same name in the metric SQL (or of :data:`ROLLUP_RELATIONS`), over
the day's events, users as uids."""

ROLLUP_RELATIONS = {"feedback_votes": "feedback_candidates", "risk_cells": "flag_cells"}
"""Kinds holding another relation of the metric SQL than their name: votes and flags before
attribution (own model and session_id), attributed at report time through ``model_refs``, so
that a message or session on another day than its votes and flags still names their model
(docs/attribution.md)."""

WEEK_SCHEMA = pa.schema([("monday", _DAY), ("model", _TEXT), ("users", pa.int64())])
"""A weekly file: distinct users per model (``model`` NULL: over all events) in the week."""

WEEK_ROLLUP_SCHEMAS: dict[str, pa.Schema] = {
    "user_weeks": pa.schema([("user_id", _KEY), ("week", _DAY)]),
    "stickiness_distribution": pa.schema(
        [("week", _DAY), ("days_active", pa.int64()), ("users", pa.int64())]
    ),
    "risk_concentration": pa.schema(
        [("week", _DAY), ("band", pa.int64()), ("users", pa.int64()), ("flagged_users", pa.int64())]
    ),
}
"""Columns of each kind of week rollup: the metric SQL's rows of a whole ISO week, computed at
compaction from the week's day rollups (``user_weeks``: each user active in the week once), so
that a report reads a compacted week's rows instead of its users' days (relations
``rolled_<kind>`` of the metric SQL, empty unless a report merges rollups)."""

USERS_SCHEMA = pa.schema([("user_id", _TEXT), ("uid", _KEY)])


@dataclass
class Plan:
    """The live files of a warehouse, split between rollup-served days and the raw tail."""

    served: dict[str, str] = field(default_factory=dict)
    """Served day (``YYYY-MM-DD``) -> digest of its compacted file."""
    compacted: list[Path] = field(default_factory=list)
    tail: list[Path] = field(default_factory=list)
    rollups: dict[str, list[Path]] = field(default_factory=dict)
    weeks: list[Path] = field(default_factory=list)
    week_rollups: dict[str, list[Path]] = field(
        default_factory=lambda: {kind: [] for kind in WEEK_ROLLUP_SCHEMAS}
    )
    users: Path | None = None


_SQL_TYPES = {
    pa.date32(): "DATE",
    pa.int64(): "BIGINT",
    pa.uint64(): "UBIGINT",
    pa.int32(): "INTEGER",
    pa.string(): "VARCHAR",
    pa.timestamp("us", tz="UTC"): "TIMESTAMPTZ",
    pa.float64(): "DOUBLE",
    pa.binary(): "BLOB",
}


def empty_sql(schema: pa.Schema) -> str:
    """A query of no rows with the columns of ``schema``."""
    cols = ", ".join(f"CAST(NULL AS {_SQL_TYPES[f.type]}) AS {f.name}" for f in schema)
    return f"SELECT {cols} LIMIT 0"


def parquet_sql(paths: Sequence[Path | str], schema: pa.Schema) -> str:
    """SQL reading ``paths``; with none, an empty relation with the columns of ``schema``."""
    if not paths:
        return f"({empty_sql(schema)})"
    listed = ", ".join("'" + str(p).replace("'", "''") + "'" for p in paths)
    return f"read_parquet([{listed}])"


def digest_of(compacted: Path) -> str:
    """``abc`` for ``c-abc.parquet``."""
    return compacted.name.removeprefix("c-").removesuffix(".parquet")


def monday_of(day: str) -> str:
    d = date.fromisoformat(day)
    return (d - timedelta(days=d.weekday())).isoformat()


def rollup_path(root: Path, day: str, kind: str, digest: str) -> Path:
    return Path(root) / ROLLUPS_DIR / f"day={day}" / f"{kind}-{digest}.parquet"


def week_dir(root: Path, monday: str) -> Path:
    return Path(root) / ROLLUPS_DIR / f"week={monday}"


def week_rollup_path(root: Path, monday: str, kind: str, digest: str) -> Path:
    return week_dir(root, monday) / f"{kind}-{digest}.parquet"


def users_files(root: Path, manifest: Manifest | None = None) -> list[Path]:
    """Live versions of the user dictionary, oldest first (the last is the newest)."""
    m = manifest or read_manifest(Path(root))
    prefix = f"{ROLLUPS_DIR}/users-"
    return [Path(root) / f for f in m.rollups() if f.startswith(prefix)]


def week_covers(path: Path) -> list[str]:
    """The days a weekly file counts; none when it is gone (replaced since the manifest was read:
    the report then counts the week from its day rollups)."""
    try:
        schema = pq.read_schema(path)
    except FileNotFoundError:
        return []
    raw = (schema.metadata or {}).get(COVERS_KEY)
    return [] if raw is None else [str(c) for c in json.loads(raw)]


def plan(root: Path, manifest: Manifest | None = None) -> Plan:
    """The report's reading plan of the warehouse at ``root``, from its manifest."""
    root = Path(root)
    m = manifest or read_manifest(root)
    live = set(m.rollups())
    out = Plan(rollups={kind: [] for kind in ROLLUP_SCHEMAS})
    for name in m.events():
        f = root / name
        day = f.parent.name.removeprefix("day=")
        digest = digest_of(f)
        names = [f"{ROLLUPS_DIR}/day={day}/{kind}-{digest}.parquet" for kind in ROLLUP_SCHEMAS]
        if f.name.startswith("c-") and set(names) <= live:
            out.served[day] = digest
            out.compacted.append(f)
            for kind, rollup in zip(ROLLUP_SCHEMAS, names, strict=True):
                out.rollups[kind].append(root / rollup)
        else:
            out.tail.append(f)
    tail_weeks = {monday_of(f.parent.name.removeprefix("day=")) for f in out.tail}
    expected: dict[str, set[str]] = {}
    for day, digest in out.served.items():
        expected.setdefault(monday_of(day), set()).add(f"{day}/{digest}")
    for monday, covers in expected.items():
        if monday in tail_weeks:
            continue
        prefix = f"{ROLLUPS_DIR}/week={monday}/w-"
        for w in sorted(f for f in live if f.startswith(prefix)):
            if set(week_covers(root / w)) != covers:
                continue
            digest = w.removeprefix(prefix).removesuffix(".parquet")
            kinds = {k: week_rollup_path(root, monday, k, digest) for k in WEEK_ROLLUP_SCHEMAS}
            if all(str(f.relative_to(root)) in live for f in kinds.values()):
                out.weeks.append(root / w)
                for kind, f in kinds.items():
                    out.week_rollups[kind].append(f)
            break
    users = users_files(root, m)
    out.users = users[-1] if users else None
    return out
