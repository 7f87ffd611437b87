"""usersignals.warehouse: exactly-once Parquet, compaction, DuckDB views, metric SQL, arena.

The loader writes events by event day; reports and analysts read them through DuckDB views
that implement the same metric definitions as the live path.

Names are imported on first use, so importing the package stays cheap. The functions
``compact`` and ``export`` share their modules' names, so they are reached through their
modules (``usersignals.warehouse.compact.compact``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from usersignals._exports import lazy_exports

if TYPE_CHECKING:
    from usersignals.warehouse.arena import (
        ArenaInputError,
        arena_counts,
        arena_report,
        fit_arena,
    )
    from usersignals.warehouse.compact import (
        CompactResult,
        DayNotFoundError,
        compact_day,
    )
    from usersignals.warehouse.db import (
        VIEWS,
        WarehouseNotFoundError,
        connect,
        views_script,
    )
    from usersignals.warehouse.deadletter import (
        ReplayResult,
        read_deadletter,
        replay,
    )
    from usersignals.warehouse.export import (
        ExportError,
        ExportResult,
        export_table,
    )
    from usersignals.warehouse.layout import (
        DEADLETTER_SCHEMA,
        EVENTS_SCHEMA,
        committed_offsets,
        live_event_files,
    )
    from usersignals.warehouse.loader import (
        Loader,
        LoaderBusyError,
        LoaderError,
        LoaderStats,
        RollPolicy,
        run_loader,
    )
    from usersignals.warehouse.report import (
        REPORT_KEYS,
        render_report,
        warehouse_report,
    )

_EXPORTS = {
    **dict.fromkeys(
        (
            "ArenaInputError",
            "arena_counts",
            "arena_report",
            "fit_arena",
        ),
        "arena",
    ),
    **dict.fromkeys(
        (
            "CompactResult",
            "DayNotFoundError",
            "compact_day",
        ),
        "compact",
    ),
    **dict.fromkeys(
        (
            "VIEWS",
            "WarehouseNotFoundError",
            "connect",
            "views_script",
        ),
        "db",
    ),
    **dict.fromkeys(
        (
            "ReplayResult",
            "read_deadletter",
            "replay",
        ),
        "deadletter",
    ),
    **dict.fromkeys(
        (
            "ExportError",
            "ExportResult",
            "export_table",
        ),
        "export",
    ),
    **dict.fromkeys(
        (
            "EVENTS_SCHEMA",
            "DEADLETTER_SCHEMA",
            "committed_offsets",
            "live_event_files",
        ),
        "layout",
    ),
    **dict.fromkeys(
        (
            "Loader",
            "LoaderBusyError",
            "LoaderError",
            "LoaderStats",
            "RollPolicy",
            "run_loader",
        ),
        "loader",
    ),
    **dict.fromkeys(
        (
            "REPORT_KEYS",
            "render_report",
            "warehouse_report",
        ),
        "report",
    ),
}

__all__ = [
    "DEADLETTER_SCHEMA",
    "EVENTS_SCHEMA",
    "REPORT_KEYS",
    "VIEWS",
    "ArenaInputError",
    "CompactResult",
    "DayNotFoundError",
    "ExportError",
    "ExportResult",
    "Loader",
    "LoaderBusyError",
    "LoaderError",
    "LoaderStats",
    "ReplayResult",
    "RollPolicy",
    "WarehouseNotFoundError",
    "arena_counts",
    "arena_report",
    "committed_offsets",
    "compact_day",
    "connect",
    "export_table",
    "fit_arena",
    "live_event_files",
    "read_deadletter",
    "render_report",
    "replay",
    "run_loader",
    "views_script",
    "warehouse_report",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

# The folder is linked into the package: each module has one name, so no class exists twice.
if __name__ != "usersignals.warehouse":
    raise ImportError(f"import usersignals.warehouse, not {__name__!r}: each module has one name")
