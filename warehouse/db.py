"""DuckDB over the warehouse: one in-process connection with the metric views.

:func:`connect` lists the warehouse's live Parquet files (``layout.live_event_files``: committed
ranges, compacted files instead of the ones they replaced), makes the two source relations
``events_raw`` and ``deadletter_raw`` over them, and runs ``views.sql``, where every metric is
defined. It also makes the relations a report reads (:mod:`usersignals.warehouse.plan`):
``tail_raw`` and ``compacted_raw`` (live files not served / served by rollups) and
``rollup_<kind>``, ``rollup_weeks``, ``rollup_users``. The connection sees the files that
existed when it was made; call :func:`connect` again to see newer loads.

Results convert without copying where the types allow::

    con = connect("warehouse")
    con.sql("SELECT * FROM active_users").pl()                   # polars DataFrame
    con.sql("SELECT * FROM feedback_by_model").to_arrow_table()  # pyarrow Table
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import duckdb
import pyarrow as pa

from usersignals.config import Settings, UsersignalsError
from usersignals.warehouse.layout import (
    DEADLETTER_SCHEMA,
    EVENTS_SCHEMA,
    deadletter_glob,
    events_glob,
    live_deadletter_files,
    live_event_files,
)
from usersignals.warehouse.plan import ROLLUP_SCHEMAS, USERS_SCHEMA, WEEK_SCHEMA, plan

__all__ = [
    "VIEWS",
    "WarehouseNotFoundError",
    "connect",
    "views_script",
    "views_sql",
]

VIEWS = (
    "event_copies",
    "events",
    "user_days",
    "model_user_days",
    "feedback_votes",
    "risk_cells",
    "events_by_day",
    "report_days",
    "active_users",
    "feedback_latest",
    "feedback_by_model",
    "risk_flags_daily",
    "users_at_risk_weekly",
    "sessions",
    "deadletter",
    "rejected",
)
"""The views :func:`connect` creates from ``views.sql`` (besides the two ``*_raw`` sources)."""

_EXTRA_SQL = ("flattery.sql",)
"""Further view files of the package, run after ``views.sql`` when present."""


class WarehouseNotFoundError(UsersignalsError):
    """The warehouse directory does not exist (nothing was ever loaded there)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        super().__init__(f"No warehouse at {str(path)!r} (run the loader or pass --warehouse)")


def views_sql() -> str:
    """The metric SQL (``views.sql`` and any further view files), in the order to run it."""
    package = resources.files("usersignals.warehouse")
    parts = [package.joinpath("views.sql").read_text(encoding="utf-8")]
    for name in _EXTRA_SQL:
        extra = package.joinpath(name)
        if extra.is_file():
            parts.append(extra.read_text(encoding="utf-8"))
    return "\n".join(parts)


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _source(name: str, files: Sequence[str]) -> str:
    listed = ", ".join(_sql_string(f) for f in files)
    return (
        f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM read_parquet([{listed}], "
        "hive_partitioning = false);\n"
    )


def views_script(root: Path | str) -> str:
    """A self-contained SQL script that creates the views over the warehouse by glob.

    For DuckDB outside this package (the DuckDB CLI, Grafana's DuckDB datasource): the globs
    match every events file, which the ``events`` view deduplicates anyway. The warehouse
    must hold at least one events and one dead-letter file.
    """
    root = Path(root)
    return (
        _source("events_raw", [events_glob(root)])
        + _source("deadletter_raw", [deadletter_glob(root)])
        + views_sql()
    )


def _empty(con: duckdb.DuckDBPyConnection, name: str, schema: pa.Schema) -> None:
    empty = schema.empty_table()
    con.register("_usersignals_empty", empty)
    con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM _usersignals_empty")
    con.unregister("_usersignals_empty")


def connect(path: Path | str | None = None, *, read_only: bool = True) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the metric views over the warehouse at ``path``.

    Args:
        path: The warehouse directory; default ``Settings.load().warehouse``
            (``USERSIGNALS_WAREHOUSE``).
        read_only: Confine the connection's file access to reading the warehouse files it
            was made over (no COPY to other places, no ATTACH, no reading other files), and
            lock that setting. ``False`` leaves DuckDB's file access as it is.

    Returns:
        The connection; its views are listed in :data:`VIEWS`.

    Raises:
        WarehouseNotFoundError: ``path`` is not a directory.
    """
    root = Path(path) if path is not None else Settings.load().warehouse
    if not root.is_dir():
        raise WarehouseNotFoundError(root)
    events = [str(p) for p in live_event_files(root)]
    dead = [str(p) for p in live_deadletter_files(root)]
    layout = plan(root)
    con = duckdb.connect(":memory:")
    con.execute("SET parquet_metadata_cache = true")
    con.execute("SET TimeZone = 'UTC'")  # casts of ts to DATE give the UTC day, as metrics do
    sources: list[tuple[str, Sequence[Path | str], pa.Schema]] = [
        ("events_raw", events, EVENTS_SCHEMA),
        ("deadletter_raw", dead, DEADLETTER_SCHEMA),
        ("tail_raw", layout.tail, EVENTS_SCHEMA),
        ("compacted_raw", layout.compacted, EVENTS_SCHEMA),
        ("rollup_weeks", layout.weeks, WEEK_SCHEMA),
        ("rollup_users", [layout.users] if layout.users else [], USERS_SCHEMA),
    ]
    sources += [(f"rollup_{k}", layout.rollups[k], ROLLUP_SCHEMAS[k]) for k in ROLLUP_SCHEMAS]
    readable = list(dead)
    for name, files, schema in sources:
        readable += [str(f) for f in files]
        if files:
            con.execute(_source(name, [str(f) for f in files]))
        else:
            _empty(con, name, schema)
    con.execute(views_sql())
    if read_only:
        con.execute("SET allowed_paths = $1", [sorted(set(readable))])
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
    return con
