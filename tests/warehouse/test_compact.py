"""Compaction: one file per day, each event_id once (first copy wins), atomic and idempotent."""

from __future__ import annotations

import json
import shutil
import signal
import time
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import Kafka
from tests.warehouse.test_loader import events_glob, make_records, produce, start_loader
from usersignals.cli import cli
from usersignals.warehouse.commit import write_range
from usersignals.warehouse.compact import DayNotFoundError, compact, compact_day, dedupe_first
from usersignals.warehouse.db import connect
from usersignals.warehouse.layout import (
    DEADLETTER_SCHEMA,
    EVENTS_SCHEMA,
    FileRange,
    committed_offsets,
    compacted_covers,
    live_event_files,
)
from usersignals.warehouse.plan import plan as rollup_plan
from usersignals.warehouse.report import warehouse_report

DAY = date(2026, 1, 1)
NO_DEAD = DEADLETTER_SCHEMA.empty_table()

Row = tuple[str, int, int, int]  # event_id, partition, offset, index


def table(rows: list[Row], day: date = DAY) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {
                "event_id": e,
                "type": "session_start",
                "user_id": f"u{p}",
                "ts": datetime(day.year, day.month, day.day, tzinfo=UTC),
                "day": day,
                "source_partition": p,
                "source_offset": o,
                "batch_index": i,
            }
            for e, p, o, i in rows
        ],
        schema=EVENTS_SCHEMA,
    )


def positions(t: pa.Table) -> list[Row]:
    cols = ("event_id", "source_partition", "source_offset", "batch_index")
    return list(zip(*(t.column(c).to_pylist() for c in cols), strict=True))


@pytest.mark.parametrize(
    ("rows", "kept"),
    [
        ([], []),
        ([("a", 0, 1, 0)], [("a", 0, 1, 0)]),
        ([("a", 0, 5, 0), ("a", 0, 1, 3)], [("a", 0, 1, 3)]),
        ([("a", 0, 1, 3), ("a", 0, 1, 2), ("b", 0, 1, 4)], [("a", 0, 1, 2), ("b", 0, 1, 4)]),
        ([("a", 2, 0, 0), ("a", 1, 9, 0), ("b", 0, 3, 0)], [("b", 0, 3, 0), ("a", 1, 9, 0)]),
    ],
)
def test_dedupe_first_keeps_the_first_copy_in_log_order(rows: list[Row], kept: list[Row]) -> None:
    assert positions(dedupe_first(table(rows))) == kept


@given(
    st.lists(
        st.tuples(
            st.sampled_from("abcde"), st.integers(0, 3), st.integers(0, 50), st.integers(0, 5)
        ),
        unique_by=lambda r: r[1:],
    )
)
def test_dedupe_first_matches_the_rule(rows: list[Row]) -> None:
    first: dict[str, Row] = {}
    for row in sorted(rows, key=lambda r: r[1:]):
        first.setdefault(row[0], row)
    expected = sorted(first.values(), key=lambda r: r[1:])
    assert positions(dedupe_first(table(rows))) == expected


def load(root: Path, partition: int, first: int, rows: list[Row]) -> None:
    last = max([first, *(o for _, _, o, _ in rows)])
    write_range(root, FileRange(partition, first, last), table(rows), NO_DEAD)


def day_files(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "events" / "day=2026-01-01").iterdir())


def live_positions(root: Path) -> list[Row]:
    out: list[Row] = []
    for f in live_event_files(root):
        out += positions(pq.read_table(f, schema=EVENTS_SCHEMA))
    return sorted(out, key=lambda r: r[1:])


def test_compact_merges_drops_duplicates_and_is_idempotent(tmp_path: Path) -> None:
    load(tmp_path, 0, 0, [("a", 0, 0, 0), ("b", 0, 0, 1)])
    load(tmp_path, 0, 1, [("a", 0, 1, 0), ("c", 0, 2, 0)])  # a retried at offset 1
    load(tmp_path, 5, 0, [("b", 5, 0, 0), ("d", 5, 0, 1)])  # b seen first in partition 0
    [result] = compact(tmp_path)
    assert (result.day, result.inputs, result.rows_in, result.rows_out, result.duplicates) == (
        "2026-01-01",
        3,
        6,
        4,
        2,
    )
    expected = [("a", 0, 0, 0), ("b", 0, 0, 1), ("c", 0, 2, 0), ("d", 5, 0, 1)]
    assert live_positions(tmp_path) == expected
    assert day_files(tmp_path) == [result.output]
    out = tmp_path / "events" / "day=2026-01-01" / str(result.output)
    assert compacted_covers(out) == [
        "p000-000000000000-000000000000.parquet",
        "p000-000000000001-000000000002.parquet",
        "p005-000000000000-000000000000.parquet",
    ]
    before = out.read_bytes()
    again = compact_day(tmp_path, "2026-01-01")
    assert (again.inputs, again.rows_in, again.rows_out, again.output) == (1, 4, 4, None)
    assert day_files(tmp_path) == [result.output]
    assert out.read_bytes() == before


def test_compacting_new_files_into_a_compacted_day(tmp_path: Path) -> None:
    load(tmp_path, 0, 0, [("a", 0, 0, 0)])
    first = compact_day(tmp_path, "2026-01-01")
    load(tmp_path, 0, 1, [("a", 0, 1, 0), ("b", 0, 1, 1)])
    second = compact_day(tmp_path, "2026-01-01")
    assert (second.inputs, second.rows_in, second.rows_out) == (2, 3, 2)
    assert day_files(tmp_path) == [second.output]
    assert second.output != first.output
    assert live_positions(tmp_path) == [("a", 0, 0, 0), ("b", 0, 1, 1)]


def test_uncommitted_files_are_left_alone(tmp_path: Path) -> None:
    load(tmp_path, 0, 0, [("a", 0, 0, 0)])
    d = tmp_path / "events" / "day=2026-01-01"
    pq.write_table(table([("b", 0, 1, 0)]), d / "p000-000000000001-000000000001.parquet")
    result = compact_day(tmp_path, "2026-01-01")
    assert (result.inputs, result.rows_out) == (1, 1)
    assert day_files(tmp_path) == [str(result.output), "p000-000000000001-000000000001.parquet"]


def test_a_crash_after_the_rename_is_finished_by_the_next_run(tmp_path: Path) -> None:
    load(tmp_path, 0, 0, [("a", 0, 0, 0)])
    load(tmp_path, 0, 1, [("a", 0, 1, 0)])
    d = tmp_path / "events" / "day=2026-01-01"
    saved = tmp_path / "saved"
    shutil.copytree(d, saved)
    result = compact_day(tmp_path, "2026-01-01")
    for f in saved.iterdir():  # as if the inputs had not been deleted yet
        shutil.copy(f, d / f.name)
    (d / ".c-x.parquet.compact.tmp").write_bytes(b"partial")
    assert live_positions(tmp_path) == [("a", 0, 0, 0)]
    again = compact_day(tmp_path, "2026-01-01")
    assert again.output is None
    assert day_files(tmp_path) == [result.output]


def test_unknown_day(tmp_path: Path) -> None:
    with pytest.raises(DayNotFoundError) as exc:
        compact_day(tmp_path, "2026-02-30")
    assert str(exc.value) == "No events for day '2026-02-30'"
    assert compact(tmp_path) == []


def test_compaction_while_the_loader_runs(kafka: Kafka) -> None:
    root = kafka.settings.warehouse
    plan = produce(kafka, make_records(160, per_record=50))
    first = plan.first_copies()
    assert (sum(plan.events.values()), len(first)) == (7_997, 7_197)
    last = {p: max(o for q, o, *_ in [*plan.events, *plan.dead] if q == p) for p in range(8)}
    proc = start_loader(kafka, "--roll-events", "100", "--roll-seconds", "0.1")
    merged = 0
    try:
        deadline = time.monotonic() + 120
        while committed_offsets(root) != last:
            assert time.monotonic() < deadline, f"committed {committed_offsets(root)}, want {last}"
            merged += sum(r.output is not None for r in compact(root))
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()
    assert merged >= 2
    results = compact(root)
    assert [r.day for r in results] == ["2026-03-01", "2026-03-02"]
    assert sum(r.rows_out for r in results) == 7_197
    assert all(r.output is None for r in compact(root))  # idempotent
    for day in ("2026-03-01", "2026-03-02"):
        assert [p.name[:2] for p in (root / "events" / f"day={day}").iterdir()] == ["c-"]
    rows = duckdb.sql(
        "SELECT event_id, source_partition, source_offset, batch_index "
        f"FROM read_parquet('{events_glob(root)}')"
    ).fetchall()
    assert {e: (p, o, i) for e, p, o, i in rows} == first
    assert len(rows) == len(first)


def test_compact_command(tmp_path: Path) -> None:
    load(tmp_path, 0, 0, [("a", 0, 0, 0)])
    load(tmp_path, 0, 1, [("a", 0, 1, 0), ("b", 0, 1, 1)])
    runner = CliRunner()
    args = ["warehouse", "compact", "--warehouse", str(tmp_path), "--day", "2026-01-01", "--json"]
    out = runner.invoke(cli, args)
    assert out.exit_code == 0, out.output
    result = json.loads(out.output)
    assert {k: result[k] for k in ("day", "inputs", "rows_in", "rows_out", "duplicates")} == {
        "day": "2026-01-01",
        "inputs": 2,
        "rows_in": 3,
        "rows_out": 2,
        "duplicates": 1,
    }
    again = runner.invoke(cli, args[:-1])
    assert again.output == "2026-01-01: nothing to do (2 rows)\n"


def test_the_loader_compacts_quiet_days_itself(kafka: Kafka) -> None:
    root = kafka.settings.warehouse
    plan = produce(kafka, make_records(160, per_record=50))
    last = {p: max(o for q, o, *_ in [*plan.events, *plan.dead] if q == p) for p in range(8)}
    args = ("--roll-events", "100", "--roll-seconds", "0.1", "--compact-after", "0.5")
    proc = start_loader(kafka, *args)
    days_dir = root / "events"
    try:
        deadline = time.monotonic() + 60
        while committed_offsets(root) != last or any(
            not f.name.startswith("c-") for f in days_dir.glob("day=*/*.parquet")
        ):
            assert time.monotonic() < deadline, "the loader did not compact its days"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()
    assert json.loads(out)["compactions"] >= 2
    layout = rollup_plan(root)
    assert (sorted(layout.served), layout.tail) == (["2026-03-01", "2026-03-02"], [])
    con = connect(root)
    try:
        report = warehouse_report(con)
    finally:
        con.close()
    assert sum(r["events"] for r in report["events_by_day"]) == 7_197
    rows = duckdb.sql(
        "SELECT event_id, source_partition, source_offset, batch_index "
        f"FROM read_parquet('{events_glob(root)}')"
    ).fetchall()
    assert {e: (p, o, i) for e, p, o, i in rows} == plan.first_copies()
