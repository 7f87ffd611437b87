"""Rollups of a compacted day: what a report needs of the day, computed once at compaction.

Compaction calls :func:`write_day_rollups` (under its lock) with the day's deduplicated rows
before it renames the compacted file in, then :func:`write_week` for the day's ISO week (from
the week's day rollups, never its rows). They
only write files and return their paths: compaction puts them in the manifest (and takes the
versions they replace out) in its own replace, and deletes what the manifest no longer names.
Every
rollup is the relation of the same name in the metric SQL over the day's events (users replaced
by their uid in the append-only dictionary), so the metric definitions stay in one place; see
:mod:`usersignals.warehouse.plan` for the names and for how a report picks its files.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import duckdb
import pyarrow as pa

from usersignals.warehouse.arena import ARENA_DAILY_SQL
from usersignals.warehouse.commit import temp_path, write_parquet
from usersignals.warehouse.db import views_sql
from usersignals.warehouse.layout import COVERS_KEY, DEADLETTER_SCHEMA, EVENTS_SCHEMA
from usersignals.warehouse.manifest import Manifest
from usersignals.warehouse.plan import (
    ROLLUP_RELATIONS,
    ROLLUP_SCHEMAS,
    ROLLUPS_DIR,
    USERS_SCHEMA,
    WEEK_ROLLUP_SCHEMAS,
    WEEK_SCHEMA,
    monday_of,
    parquet_sql,
    plan,
    rollup_path,
    users_files,
    week_dir,
    week_rollup_path,
)

__all__ = ["ROLLUP_SUFFIX", "write_day_rollups", "write_week"]

ROLLUP_SUFFIX = ".rollup.tmp"

UID_SQL = """
WITH known AS (
    SELECT r.*, u.uid FROM {source} AS r LEFT JOIN {users} AS u USING (user_id)
),
fresh AS (
    SELECT user_id,
           (SELECT coalesce(max(uid), -1) FROM {users}) + row_number() OVER (ORDER BY user_id)
               AS uid
    FROM (SELECT DISTINCT user_id FROM known WHERE uid IS NULL)
)
SELECT k.* EXCLUDE (uid, user_id), CAST(coalesce(k.uid, f.uid) AS BIGINT) AS user_id
FROM known AS k LEFT JOIN fresh AS f ON f.user_id = k.user_id
"""
"""Rows of ``source`` with ``user_id`` replaced by its uid in ``users``; users not there yet get
the next uids in ``user_id`` order (so a report maps the tail's new users the same way)."""

_WEEK_SQL = {
    "user_weeks": "SELECT user_id, period AS week FROM user_periods('week')",
    "stickiness_distribution": "SELECT * FROM stickiness_distribution",
    "risk_concentration": "SELECT * FROM risk_concentration",
}
"""The rows of each week rollup: relations of the metric SQL."""

_EVENTS_BY_UID = EVENTS_SCHEMA.empty_table().set_column(
    EVENTS_SCHEMA.get_field_index("user_id"), "user_id", pa.array([], pa.int64())
)
"""No raw rows, users as uids (as in the rollups)."""

_KIND_SQL = {
    kind: ARENA_DAILY_SQL
    if kind == "arena_daily"
    else f"SELECT * FROM {ROLLUP_RELATIONS.get(kind, kind)}"
    for kind in ROLLUP_SCHEMAS
    if kind not in ("ids", "shared")
}


def _connect() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET threads = 2")
    con.execute("SET enable_progress_bar = false")
    return con


def _metric_views(con: duckdb.DuckDBPyConnection) -> None:
    """The metric SQL over ``events_raw`` (made by the caller: rows with users as uids) and no
    dead letters."""
    con.register("deadletter_raw", DEADLETTER_SCHEMA.empty_table())
    con.execute(views_sql())


def _write(table: pa.Table, final: Path, metadata: dict[bytes, bytes] | None = None) -> None:
    final.parent.mkdir(parents=True, exist_ok=True)
    temp = temp_path(final, ROLLUP_SUFFIX)
    write_parquet(table, temp, metadata)
    os.replace(temp, final)


def _update_users(root: Path, con: duckdb.DuckDBPyConnection, manifest: Manifest) -> Path | None:
    """Writes the dictionary with the day's new users appended (a new file), if there are any.

    Uids already given never change, so rollups made with an older version stay valid.
    """
    files = users_files(root, manifest)
    con.execute(f"CREATE TEMP TABLE users AS SELECT * FROM {parquet_sql(files[-1:], USERS_SCHEMA)}")
    new = con.execute(
        "SELECT user_id FROM (SELECT DISTINCT user_id FROM day_rows) "
        "ANTI JOIN users USING (user_id) ORDER BY user_id"
    ).fetchall()
    if not new:
        return None
    con.execute(
        "INSERT INTO users SELECT user_id, (SELECT coalesce(max(uid), -1) FROM users) "
        "+ row_number() OVER (ORDER BY user_id) FROM (SELECT DISTINCT user_id FROM day_rows) "
        "ANTI JOIN users USING (user_id)"
    )
    table = con.sql("SELECT * FROM users ORDER BY uid").to_arrow_table().cast(USERS_SCHEMA)
    final = Path(root) / ROLLUPS_DIR / f"users-{table.num_rows:012d}.parquet"
    _write(table, final)
    return final


def write_day_rollups(
    root: Path, day: str, digest: str, rows: pa.Table, manifest: Manifest
) -> list[Path]:
    """Writes every rollup of ``day`` for the compacted file ``c-{digest}.parquet``.

    Args:
        root: The warehouse.
        day: The event day, ``YYYY-MM-DD``.
        digest: The digest in the compacted file's name.
        rows: The compacted file's rows (each event id once; ``EVENTS_SCHEMA``).
        manifest: The manifest the compaction started from.

    Returns:
        The files written: a new user dictionary first, if there are new users, then the
        day's rollups.
    """
    root = Path(root)
    con = _connect()
    written: list[Path] = []
    try:
        con.register("day_rows", rows)
        users = _update_users(root, con, manifest)
        written += [users] if users is not None else []
        con.execute(
            f"CREATE TEMP TABLE events_raw AS {UID_SQL.format(source='day_rows', users='users')}"
        )
        _metric_views(con)
        # the day's rows hold each event id once already: skip the views' deduplication
        con.execute("CREATE TEMP TABLE unique_events AS SELECT * FROM events_raw")
        tables = {kind: con.sql(sql).to_arrow_table() for kind, sql in _KIND_SQL.items()}
        con.execute(
            "CREATE TEMP TABLE ids AS SELECT DISTINCT day, hash(event_id) AS h FROM events_raw"
        )
        tables["ids"] = con.sql("SELECT * FROM ids ORDER BY h").to_arrow_table()
        p = plan(root, manifest)
        others = [f for f in p.rollups["ids"] if f.parent.name != f"day={day}"]
        tables["shared"] = con.sql(
            "SELECT DISTINCT CAST($day AS DATE) AS day, o.day AS other_day "
            f"FROM {parquet_sql(others, ROLLUP_SCHEMAS['ids'])} AS o SEMI JOIN ids USING (h)",
            params={"day": day},
        ).to_arrow_table()
    finally:
        con.close()
    for kind, schema in ROLLUP_SCHEMAS.items():
        final = rollup_path(root, day, kind, digest)
        _write(tables[kind].select(schema.names).cast(schema), final)
        written.append(final)
    return written


def write_week(root: Path, monday: str, manifest: Manifest) -> list[Path]:
    """Writes the weekly rollups of the ISO week starting on ``monday``.

    Covers the week's days served by rollups in ``manifest``: the distinct-user counts
    (``w-{digest}``, the covered days in its footer), then one file per kind of
    ``WEEK_ROLLUP_SCHEMAS``, all named after the digest of the covered days. Returns the files
    written; none when no day of the week is served.
    """
    root = Path(root)
    p = plan(root, manifest)
    days = sorted(d for d in p.served if monday_of(d) == monday)
    if not days:
        return []
    covers = [f"{day}/{p.served[day]}" for day in days]

    def of_week(kind: str) -> str:
        files = [f for f in p.rollups[kind] if f.parent.name[4:] in days]
        return parquet_sql(files, ROLLUP_SCHEMAS[kind])

    con = _connect()
    try:
        counts = con.sql(
            # no row for a week without active users (its days hold only identity calls):
            # the week is then no week of the metrics, as when read from raw rows
            "SELECT CAST($monday AS DATE) AS monday, NULL AS model, "
            f"count(DISTINCT user_id) AS users FROM {of_week('user_days')} "
            "HAVING count(DISTINCT user_id) > 0 "
            "UNION ALL SELECT CAST($monday AS DATE), model, count(DISTINCT user_id) "
            f"FROM {of_week('model_user_days')} GROUP BY model",
            params={"monday": monday},
        ).to_arrow_table()
        # the metric SQL over the week's day rollups (no rolled weeks: every row from the days)
        con.register("events_raw", _EVENTS_BY_UID)
        _metric_views(con)
        for kind in ("user_days", "user_messages"):
            con.execute(f"CREATE TEMP TABLE {kind} AS SELECT * FROM {of_week(kind)}")
        con.execute(f"CREATE TEMP TABLE flag_cells AS SELECT * FROM {of_week('risk_cells')}")
        tables = {kind: con.sql(sql).to_arrow_table() for kind, sql in _WEEK_SQL.items()}
    finally:
        con.close()
    digest = hashlib.sha256("\n".join(covers).encode()).hexdigest()[:16]
    final = week_dir(root, monday) / f"w-{digest}.parquet"
    counts = counts.rename_columns(WEEK_SCHEMA.names).cast(WEEK_SCHEMA)
    _write(counts, final, {COVERS_KEY: json.dumps(covers).encode()})
    written = [final]
    for kind, schema in WEEK_ROLLUP_SCHEMAS.items():
        path = week_rollup_path(root, monday, kind, digest)
        _write(tables[kind].select(schema.names).cast(schema), path)
        written.append(path)
    return written
