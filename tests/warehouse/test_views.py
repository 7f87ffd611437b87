"""The DuckDB views over real Parquet files: names, sessions, dead letters, files, conversions."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pytest

from tests.warehouse.parquetfixtures import events_table, write_warehouse
from usersignals.ingest.contract import Event
from usersignals.warehouse.commit import write_parquet, write_range
from usersignals.warehouse.compact import compact
from usersignals.warehouse.db import VIEWS, WarehouseNotFoundError, connect, views_script
from usersignals.warehouse.layout import DEADLETTER_SCHEMA, FileRange, day_dir, range_name
from usersignals.warehouse.manifest import PartitionState, replace_manifest
from usersignals.warehouse.report import warehouse_report

T0 = datetime(2026, 9, 1, 10, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


SESSION = [
    Event(
        event_id="s1", type="session_start", user_id="ann", session_id="A", ts=at(0), platform="web"
    ),
    Event(event_id="m1", type="message", user_id="ann", session_id="A", role="user", ts=at(1)),
    Event(
        event_id="m2",
        type="message",
        user_id="ann",
        session_id="A",
        role="assistant",
        model="m-1",
        ts=at(2),
    ),
    Event(
        event_id="m3",
        type="message",
        user_id="ann",
        session_id="A",
        role="assistant",
        model="m-2",
        ts=at(3),
    ),
    Event(
        event_id="s2", type="session_end", user_id="ann", session_id="A", ts=at(9), duration_s=500.0
    ),
    # no start or end event: first and last events stand in, duration from them
    Event(event_id="m4", type="message", user_id="bo", session_id="B", role="user", ts=at(5)),
    Event(event_id="m5", type="message", user_id="bo", session_id="B", role="user", ts=at(6.5)),
    Event(event_id="m6", type="message", user_id="bo", role="user", ts=at(7)),  # no session
]


@pytest.fixture
def warehouse(tmp_path: Path) -> Path:
    root = tmp_path / "wh"
    write_warehouse(root, SESSION, rejected=["not_json", "too_large"])
    return root


def test_every_view_exists(warehouse: Path) -> None:
    con = connect(warehouse)
    names = {
        r[0] for r in con.sql("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()
    }
    assert set(VIEWS) | {"events_raw", "deadletter_raw", "flattery_watch"} <= names


def test_sessions(warehouse: Path) -> None:
    con = connect(warehouse)
    rows = con.sql(
        "SELECT user_id, session_id, day, started_at, ended_at, duration_s, messages, model, "
        "platform FROM sessions ORDER BY session_id"
    ).fetchall()
    assert rows == [
        ("ann", "A", date(2026, 9, 1), at(0), at(9), 500.0, 3, "m-2", "web"),
        ("bo", "B", date(2026, 9, 1), at(5), at(6.5), 90.0, 2, None, None),
    ]


def test_deadletter_and_rejected(warehouse: Path) -> None:
    con = connect(warehouse)
    assert con.sql("SELECT reason, batch_index, raw FROM deadletter ORDER BY 2").fetchall() == [
        ("not_json", 0, b"not json"),
        ("too_large", 1, b"not json"),
    ]
    assert con.sql("SELECT * FROM rejected ORDER BY reason").fetchall() == [
        ("not_json", 1),
        ("too_large", 1),
    ]


def test_results_convert_to_polars_and_arrow(warehouse: Path) -> None:
    con = connect(warehouse)
    frame = con.sql("SELECT day, dau, wau, mau FROM active_users").pl()
    assert frame.schema == pl.Schema(
        {"day": pl.Date, "dau": pl.Int64, "wau": pl.Int64, "mau": pl.Int64}
    )
    assert frame.rows() == [(date(2026, 9, 1), 2, 2, 2)]
    table = con.sql("SELECT event_id, ts FROM events ORDER BY event_id").to_arrow_table()
    assert table.schema.field("ts").type == pa.timestamp("us", tz="UTC")
    assert table.column("event_id").to_pylist() == ["m1", "m2", "m3", "m4", "m5", "m6", "s1", "s2"]


def test_read_only_connection_cannot_write_or_read_elsewhere(
    warehouse: Path, tmp_path: Path
) -> None:
    con = connect(warehouse)
    target = tmp_path / "out.csv"
    with pytest.raises(duckdb.PermissionException):
        con.execute(f"COPY (SELECT 1) TO '{target}'")
    with pytest.raises(duckdb.PermissionException):
        con.execute("SELECT * FROM read_csv('/etc/hostname')")
    with pytest.raises(duckdb.InvalidInputException):
        con.execute("SET enable_external_access = true")
    writable = connect(warehouse, read_only=False)
    writable.execute(f"COPY (SELECT 1 AS one) TO '{target}'")
    assert target.read_text() == "one\n1\n"


def test_missing_warehouse(tmp_path: Path) -> None:
    with pytest.raises(WarehouseNotFoundError) as exc:
        connect(tmp_path / "nowhere")
    assert str(exc.value) == (
        f"No warehouse at {str(tmp_path / 'nowhere')!r} (run the loader or pass --warehouse)"
    )
    assert exc.value.path == tmp_path / "nowhere"


def test_uncommitted_files_are_not_read(warehouse: Path) -> None:
    stray = Event(event_id="late", type="message", user_id="cy", role="user", ts=at(60 * 24))
    r = FileRange(0, 1000, 1000)  # past the last commit marker: a crash mid-flush
    path = day_dir(warehouse, "2026-09-02") / range_name(r)
    path.parent.mkdir(parents=True)
    write_parquet(events_table([(stray, 0, 1000, 0)]), path)
    con = connect(warehouse)
    assert con.sql("SELECT count(*) FROM events").fetchall() == [(8,)]


def test_compaction_changes_nothing(tmp_path: Path) -> None:
    events = [*SESSION, SESSION[1], SESSION[4]]  # redelivered copies
    root = tmp_path / "wh"
    write_warehouse(root, events, per_record=2, per_flush=1, rejected=["bad_value"])
    before = warehouse_report(connect(root))
    compact(root)
    assert len(list(day_dir(root, "2026-09-01").iterdir())) == 1
    assert warehouse_report(connect(root)) == before


def test_views_script_runs_anywhere(warehouse: Path) -> None:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'Pacific/Kiritimati'")  # a host far from UTC (+14)
    con.execute(views_script(warehouse))
    assert con.sql("SELECT current_setting('TimeZone')").fetchall() == [("UTC",)]
    expected = connect(warehouse).sql("FROM active_users").fetchall()
    assert con.sql("FROM active_users").fetchall() == expected
    assert con.sql("SELECT count(*) FROM events").fetchall() == [(8,)]


@pytest.mark.parametrize(
    ("name", "rejected"),
    [("wh", []), ("it's a warehouse", ["not_json"]), ("no-dead-letters", [])],
)
def test_views_script_reads_the_manifest_whatever_the_path_or_the_lists(
    tmp_path: Path, name: str, rejected: list[str]
) -> None:
    root = tmp_path / name
    write_warehouse(root, SESSION, rejected=rejected)
    stray = day_dir(root, "2026-09-02") / range_name(FileRange(0, 1000, 1000))
    stray.parent.mkdir(parents=True)
    write_parquet(events_table([(SESSION[0], 0, 1000, 0)]), stray)  # on disk, not in the manifest
    con = duckdb.connect()
    con.execute(views_script(root))
    assert con.sql("SELECT count(*) FROM events_raw").fetchall() == [(8,)]
    assert con.sql("SELECT * FROM rejected").fetchall() == [(r, 1) for r in rejected]


def test_views_script_over_an_empty_manifest(tmp_path: Path) -> None:
    write_range(tmp_path, FileRange(0, 0, 0), events_table([]), DEADLETTER_SCHEMA.empty_table())
    con = duckdb.connect()
    con.execute(views_script(tmp_path))
    assert con.sql("SELECT count(*) FROM events").fetchall() == [(0,)]
    assert con.sql("FROM active_users").fetchall() == []


def test_current_epoch_reads_only_the_rows_of_the_current_incarnation(tmp_path: Path) -> None:
    early, late = SESSION[:5], SESSION[5:]
    write_range(
        tmp_path,
        FileRange(0, 0, 4),
        events_table([(e, 0, i, 0) for i, e in enumerate(early)]),
        DEADLETTER_SCHEMA.empty_table(),
    )
    replace_manifest(
        tmp_path,
        lambda m: dataclasses.replace(m, epoch=1, partitions={0: PartitionState(base=5)}),
    )
    rows = [(e, 0, 5 + i, 0) for i, e in enumerate(late)]
    state = PartitionState(base=5, last=len(late) - 1, fingerprint="f")
    write_range(
        tmp_path,
        FileRange(0, 5, 7),
        events_table(rows),
        DEADLETTER_SCHEMA.empty_table(),
        state=state,
    )
    everything = connect(tmp_path).sql("SELECT event_id FROM events ORDER BY 1").fetchall()
    assert everything == sorted((e.event_id,) for e in SESSION)
    current = connect(tmp_path, current_epoch=True)
    assert current.sql("SELECT event_id FROM events ORDER BY 1").fetchall() == sorted(
        (e.event_id,) for e in late
    )
    assert warehouse_report(current)["events_by_day"][0]["events"] == len(late)
