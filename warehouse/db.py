"""DuckDB over the warehouse: one in-process connection with the metric views.

Every reader takes the warehouse's files from its manifest (:mod:`usersignals.warehouse.
manifest`), never from a directory listing, so that it sees one consistent version whatever
the loader and compaction are doing. :func:`connect` reads the manifest once, makes the two
source relations ``events_raw`` and ``deadletter_raw`` over the files it names, and runs
:func:`views_sql`: the base relations of ``views.sql``, then each metric's SQL from
``metrics/<metric>.sql``, where every metric is defined beside its live fold. It also makes
the relations a report reads (:mod:`usersignals.warehouse.plan`): ``tail_raw`` and
``compacted_raw`` (live files not served / served by rollups) and ``rollup_<kind>``,
``rollup_weeks``, ``rollup_week_<kind>``, ``rollup_users``. The connection sees the manifest
that was current when it was made; call :func:`connect` again to see newer loads.
:func:`views_script` is the same read path for DuckDB outside this package (Grafana's DuckDB
datasource): SQL that reads the manifest itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import duckdb
import pyarrow as pa

from usersignals.config import Settings
from usersignals.errors import ConfigError, WarehouseNotFoundError
from usersignals.warehouse.derived import ARENA_RATINGS, ARENA_RATINGS_SCHEMA
from usersignals.warehouse.layout import (
    DEADLETTER_DIR,
    DEADLETTER_SCHEMA,
    EVENTS_DIR,
    EVENTS_SCHEMA,
)
from usersignals.warehouse.manifest import MANIFEST, Manifest, read_manifest
from usersignals.warehouse.plan import (
    ROLLUP_SCHEMAS,
    USERS_SCHEMA,
    WEEK_ROLLUP_SCHEMAS,
    WEEK_SCHEMA,
    Plan,
    empty_sql,
    plan,
)

__all__ = [
    "VIEWS",
    "WEEK_STARTS",
    "WarehouseNotFoundError",
    "connect",
    "views_script",
    "views_sql",
]

VIEWS = (
    "event_copies",
    "unique_events",
    "events",
    "identities",
    "user_days",
    "model_user_days",
    "feedback_candidates",
    "flag_cells",
    "model_refs",
    "message_models",
    "session_models",
    "feedback_votes",
    "risk_cells",
    "events_by_day",
    "data_span",
    "report_days",
    "event_counts",
    "active_users",
    "retention",
    "lifecycle",
    "stickiness_distribution",
    "session_parts",
    "session_lengths",
    "sessions_daily",
    "feedback_latest",
    "feedback_by_model",
    "risk_flags_daily",
    "users_at_risk_weekly",
    "risk_categories",
    "wellbeing_week_users",
    "wellbeing_model_week_users",
    "wellbeing_weekly",
    "user_messages",
    "risk_concentration",
    "event_keys",
    "breakdown_values",
    "key_user_days",
    "active_users_by",
    "feedback_by_key",
    "risk_flags_by_key",
    "sessions",
    "deadletter",
    "rejected_daily",
    "rejected",
    "arena_ratings",
)
"""The views :func:`connect` creates from ``views.sql`` (besides the ``*_raw`` sources)."""

METRIC_SQL = (
    "attribution",
    "activity",
    "engagement",
    "feedback",
    "risk",
    "rejected",
    "flattery",
    "wellbeing",
    "breakdown",
)
"""The metric SQL files of :mod:`usersignals.metrics` (``<name>.sql``), in the order they run
after the base relations of ``views.sql``: each metric's SQL sits beside its live fold."""


def views_sql() -> str:
    """The warehouse's SQL: the base relations (``views.sql``), then every metric's SQL."""
    parts = [resources.files("usersignals.warehouse").joinpath("views.sql").read_text("utf-8")]
    metrics = resources.files("usersignals.metrics")
    parts += [metrics.joinpath(f"{name}.sql").read_text("utf-8") for name in METRIC_SQL]
    return "\n".join(parts)


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _source(
    name: str, files: Sequence[str], where: str | None = None, *, tz: str | None = None
) -> str:
    listed = ", ".join(_sql_string(f) for f in files)
    filtered = f" WHERE {where}" if where else ""
    # in zone tz: the calendar day of ts there instead of the stored UTC day
    columns = "*"
    if tz is not None:
        columns = f"* REPLACE (CAST(timezone({_sql_string(tz)}, ts) AS DATE) AS day)"
    return (
        f"CREATE OR REPLACE VIEW {name} AS SELECT {columns} FROM read_parquet([{listed}], "
        f"hive_partitioning = false){filtered};\n"
    )


WEEK_STARTS = {"monday": 1, "sunday": 0}
"""The first day of a week (``--week-start``) -> its DuckDB ``dayofweek`` (Sunday 0)."""


def _time_zone(con: duckdb.DuckDBPyConnection, tz: str) -> None:
    """Sets the time zone of every cursor of ``con`` (casts of ts to DATE give its days)."""
    try:
        con.execute(f"SET GLOBAL TimeZone = {_sql_string(tz)}")
    except duckdb.Error:
        raise ConfigError("tz", tz, "not a time zone name such as Europe/Berlin") from None


_QUOTE = "''''"
"""A SQL string literal holding one single quote."""


def _manifest_source(name: str, root: Path, folder: str, schema: pa.Schema) -> str:
    """SQL making view ``name`` over the manifest's files under ``folder``, read by DuckDB.

    ``read_parquet`` needs its list of files when a query is bound and no subquery can give
    it, so the list goes through a variable: the SQL of the relation is built from the
    manifest (a typed empty relation when the list is empty) and run by ``query()``.
    """
    prefix = _sql_string(f"{root}/")
    quoted = f"{_QUOTE} || replace({prefix} || f, {_QUOTE}, '''''') || {_QUOTE}"
    variable = f"usersignals_{name}"
    return (
        f"SET VARIABLE {variable} = (\n"
        f"    SELECT CASE WHEN len(files) = 0 THEN {_sql_string(empty_sql(schema))}\n"
        "    ELSE 'SELECT * FROM read_parquet([' "
        f"|| array_to_string(list_transform(files, lambda f: {quoted}), ', ') "
        "|| '], hive_partitioning = false)' END\n"
        "    FROM (SELECT list_filter(getvariable('usersignals_files'), "
        f"lambda f: starts_with(f, {_sql_string(folder + '/')})) AS files)\n"
        ");\n"
        f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM query(getvariable('{variable}'));\n"
    )


def _derived_source(name: str, path: Path, schema: pa.Schema) -> str:
    """SQL making view ``name`` over the derived file at ``path``, or a typed empty relation
    while there is none (whether it exists is looked at when the script runs)."""
    quoted = _sql_string(str(path))
    read = f"SELECT * FROM read_parquet({quoted})"
    variable = f"usersignals_{name}"
    return (
        f"SET VARIABLE {variable} = (\n"
        f"    SELECT CASE WHEN count(*) = 0 THEN {_sql_string(empty_sql(schema))}\n"
        f"    ELSE {_sql_string(read)} END FROM glob({quoted})\n"
        ");\n"
        f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM query(getvariable('{variable}'));\n"
    )


def views_script(root: Path | str) -> str:
    """A self-contained SQL script that creates the views over the warehouse's manifest.

    For DuckDB outside this package (the DuckDB CLI, Grafana's DuckDB datasource, which runs
    it as ``initSql`` on its connections): it reads ``manifest.json`` at ``root`` when it runs
    and makes ``events_raw`` and ``deadletter_raw`` over exactly the files listed there, the
    files :func:`connect` reads, and ``arena_ratings_raw`` over the derived ratings file
    (:mod:`usersignals.warehouse.derived`; empty if there was none when it ran, read afresh by
    every query once there was). Run it again to see a newer manifest.
    """
    root = Path(root)
    manifest = _sql_string(str(root / MANIFEST))
    return (
        "SET TimeZone = 'UTC';\n"  # days are UTC days, as in connect(), whatever the host's zone
        "SET VARIABLE usersignals_files = (\n"
        f"    SELECT files FROM read_json({manifest}, columns = {{files: 'VARCHAR[]'}})\n"
        ");\n"
        + _manifest_source("events_raw", root, EVENTS_DIR, EVENTS_SCHEMA)
        + _manifest_source("deadletter_raw", root, DEADLETTER_DIR, DEADLETTER_SCHEMA)
        + _derived_source("arena_ratings_raw", root / ARENA_RATINGS, ARENA_RATINGS_SCHEMA)
        + views_sql()
    )


def _empty(con: duckdb.DuckDBPyConnection, name: str, schema: pa.Schema) -> None:
    empty = schema.empty_table()
    con.register("_usersignals_empty", empty)
    con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM _usersignals_empty")
    con.unregister("_usersignals_empty")


def _epoch_filter(m: Manifest) -> str | None:
    """SQL keeping the rows loaded in the manifest's current epoch (None: every row is)."""
    bases = {p: s.base for p, s in m.partitions.items() if s.base > 0}
    if not bases:
        return None
    cases = " ".join(f"WHEN {p} THEN {b}" for p, b in sorted(bases.items()))
    return f"source_offset >= CASE source_partition {cases} ELSE 0 END"


def connect(
    path: Path | str | None = None,
    *,
    read_only: bool = True,
    current_epoch: bool = False,
    tz: str = "UTC",
    week_start: str = "monday",
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the metric views over the warehouse at ``path``.

    Args:
        path: The warehouse directory; default ``Settings.load().warehouse``
            (``USERSIGNALS_WAREHOUSE``).
        read_only: Confine the connection's file access to reading the warehouse files it
            was made over (no COPY to other places, no ATTACH, no reading other files), and
            lock that setting. ``False`` leaves DuckDB's file access as it is.
        current_epoch: Only the rows loaded from the current incarnation of the events topic
            (see :mod:`usersignals.warehouse.manifest`), all read raw: what live metrics of
            the same records must equal (``usersignals run`` checks it).
        tz: The time zone of days (an IANA name, ``--tz``): each event's day is the calendar
            day of its ``ts`` there. Rollups hold UTC days, so in any other zone every row is
            read raw (exact, slower).
        week_start: ``monday`` (ISO weeks) or ``sunday`` (``--week-start``): the first day of
            the weeks of retention, lifecycle, the stickiness distribution, the weekly flagged
            share and the usage bands (the flattery watch keeps ISO weeks).

    Returns:
        The connection; its views are listed in :data:`VIEWS`.

    Raises:
        WarehouseNotFoundError: ``path`` is not a directory.
        ConfigError: ``tz`` is not a time zone, or ``week_start`` not monday or sunday.
    """
    if week_start not in WEEK_STARTS:
        raise ConfigError("week_start", week_start, "must be monday or sunday")
    root = Path(path) if path is not None else Settings.load().warehouse
    if not root.is_dir():
        raise WarehouseNotFoundError(root)
    m = read_manifest(root)
    events = [str(root / f) for f in m.events()]
    dead = [str(root / f) for f in m.deadletter()]
    where = _epoch_filter(m) if current_epoch else None
    zoned = tz != "UTC"  # rollups and the stored day column hold UTC days
    if current_epoch or zoned:
        layout = Plan(rollups={k: [] for k in ROLLUP_SCHEMAS}, tail=[Path(f) for f in events])
    else:
        layout = plan(root, m)
    con = duckdb.connect(":memory:")
    con.execute("SET parquet_metadata_cache = true")
    try:
        _time_zone(con, tz)  # UTC by default: the days of the live metrics
    except ConfigError:
        con.close()
        raise
    sources: list[tuple[str, Sequence[Path | str], pa.Schema]] = [
        ("events_raw", events, EVENTS_SCHEMA),
        ("deadletter_raw", dead, DEADLETTER_SCHEMA),
        ("tail_raw", layout.tail, EVENTS_SCHEMA),
        ("compacted_raw", layout.compacted, EVENTS_SCHEMA),
        ("rollup_weeks", layout.weeks, WEEK_SCHEMA),
        ("rollup_users", [layout.users] if layout.users else [], USERS_SCHEMA),
    ]
    sources += [(f"rollup_{k}", layout.rollups[k], ROLLUP_SCHEMAS[k]) for k in ROLLUP_SCHEMAS]
    ratings = root / ARENA_RATINGS  # derived, not in the manifest: read if it is there
    sources.append(
        ("arena_ratings_raw", [ratings] if ratings.is_file() else [], ARENA_RATINGS_SCHEMA)
    )
    sources += [
        (f"rollup_week_{k}", layout.week_rollups[k], WEEK_ROLLUP_SCHEMAS[k])
        for k in WEEK_ROLLUP_SCHEMAS
    ]
    readable = list(dead)
    raw = {"events_raw", "deadletter_raw", "tail_raw"}
    for name, files, schema in sources:
        readable += [str(f) for f in files]
        if files:
            filtered = where if name in raw else None
            zone = tz if zoned and name in {"events_raw", "tail_raw", "compacted_raw"} else None
            con.execute(_source(name, [str(f) for f in files], filtered, tz=zone))
        else:
            _empty(con, name, schema)
    con.execute(views_sql())
    if WEEK_STARTS[week_start] != 1:
        con.execute(f"CREATE OR REPLACE MACRO week_start_dow() AS {WEEK_STARTS[week_start]}")
    if read_only:
        con.execute("SET allowed_paths = $1", [sorted(set(readable))])
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
    return con
