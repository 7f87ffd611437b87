"""Compaction killed with SIGKILL after each of its steps: every read path still equals the oracle.

A real compaction process runs on a copy of one warehouse and kills itself right after step k
(k = 1 .. all of ``compact.STEPS``). After each kill the report, ``usersignals sql``,
``connect``, the views script run by a plain DuckDB the way Grafana runs it, and the feedback
export are compared with the oracle; then compaction runs again to the end, and they are
compared once more.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import msgspec
import pytest
from click.testing import CliRunner

from tests.oracle import dedupe, oracle_report
from tests.warehouse.parquetfixtures import write_warehouse
from tests.warehouse.test_notebook import synthetic_events
from usersignals.cli import cli
from usersignals.dashboards.provisioning import duckdb_init_sql
from usersignals.ingest.contract import Event
from usersignals.warehouse.compact import STEPS, compact_day
from usersignals.warehouse.db import connect
from usersignals.warehouse.export import export_table
from usersignals.warehouse.report import warehouse_report

KEYS = (
    "active_users",
    "events_by_day",
    "feedback_by_model",
    "risk_flags_daily",
    "users_at_risk_weekly",
    "rejected",
)
"""The report keys the oracle computes (it leaves arena empty; the flattery watch has its own)."""

FIRST_DAY, KILLED_DAY = "2026-09-07", "2026-09-08"

KILL_AFTER = """
import os, signal, sys
from usersignals.warehouse.compact import compact_day

target = int(sys.argv[3])
done = []

def step(name):
    done.append(name)
    print(name, flush=True)
    if len(done) == target:
        os.kill(os.getpid(), signal.SIGKILL)

compact_day(sys.argv[1], sys.argv[2], step=step)
"""


def log_of_events() -> list[Event]:
    """Twelve days, with redelivered copies in the same day and across days."""
    events = synthetic_events(seed=5, users=8, days=12)
    copies = events[::7]  # redelivered later in the log: the first copies win
    moved = msgspec.structs.replace(events[0], ts=events[0].ts + timedelta(days=1))
    return [*events, *copies, moved]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Event]]:
    """A warehouse of many small files with its first day compacted; the events in log order."""
    root = tmp_path_factory.mktemp("template") / "warehouse"
    ordered = write_warehouse(
        root, log_of_events(), rejected=["not_json"], partitions=2, per_record=3, per_flush=2
    )
    compact_day(root, FIRST_DAY)
    return root, ordered


def project(rows: list[dict[str, Any]], like: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` with only the fields of the oracle's rows (reports may carry more)."""
    fields = list(like[0]) if like else []
    return [{k: row[k] for k in fields} for row in rows]


def expected_feedback(ordered: list[Event]) -> list[tuple[Any, ...]]:
    latest: dict[tuple[str, str | None], Event] = {}
    for e in dedupe(ordered):
        key = (e.user_id, e.message_id)
        if e.type == "feedback" and (key not in latest or (e.ts, e.event_id) > key_of(latest[key])):
            latest[key] = e
    votes = sorted((v for v in latest.values() if v.rating in (1, -1)), key=key_of)
    return [(v.message_id, v.session_id, v.model, v.rating) for v in votes]


def key_of(e: Event) -> tuple[Any, str]:
    return (e.ts, e.event_id)


def check_every_read_path(root: Path, ordered: list[Event]) -> None:
    oracle = oracle_report(ordered, {"not_json": 1})
    first = dedupe(ordered)

    # report
    con = connect(root)
    report = warehouse_report(con)
    for key in KEYS:
        assert project(report[key], oracle[key]) == oracle[key], key

    # connect: each event once, exactly the first copies
    rows = con.sql("SELECT event_id, user_id, ts FROM events").fetchall()
    assert sorted(rows) == sorted((e.event_id, e.user_id, e.ts) for e in first)

    # export
    exported = export_table(con, "feedback").table
    got = list(zip(*(exported.column(c).to_pylist() for c in exported.column_names), strict=True))
    assert got == expected_feedback(ordered)
    con.close()

    # usersignals sql
    out = CliRunner().invoke(
        cli,
        [
            "sql",
            "--warehouse",
            str(root),
            "--format",
            "json",
            "SELECT day, events FROM events_by_day ORDER BY day",
        ],
    )
    assert out.exit_code == 0, out.output
    by_day = json.loads(out.output)
    assert by_day == [{"day": r["day"], "events": r["events"]} for r in oracle["events_by_day"]]

    # the views script, as Grafana's DuckDB datasource runs it
    grafana = duckdb.connect()
    grafana.execute(duckdb_init_sql(root))
    active = grafana.sql("SELECT day, dau, wau, mau FROM active_users ORDER BY day").fetchall()
    assert [(d.isoformat(), a, w, m) for d, a, w, m in active] == [
        (r["day"], r["dau"], r["wau"], r["mau"]) for r in oracle["active_users"]
    ]
    assert grafana.sql("SELECT count(*) FROM events").fetchall() == [(len(first),)]
    assert grafana.sql("SELECT reason, count FROM rejected").fetchall() == [("not_json", 1)]
    grafana.close()


def test_the_template_itself_reads_right(template: tuple[Path, list[Event]]) -> None:
    root, ordered = template
    day = root / "events" / f"day={KILLED_DAY}"
    assert len(list(day.iterdir())) > 5  # many files to merge, with duplicates among them
    assert len(ordered) > len(dedupe(ordered))
    check_every_read_path(root, ordered)


@pytest.mark.parametrize("k", range(1, len(STEPS) + 1), ids=lambda k: STEPS[k - 1])
def test_sigkill_after_each_step_leaves_every_read_path_exact(
    template: tuple[Path, list[Event]], tmp_path: Path, k: int
) -> None:
    source, ordered = template
    root = tmp_path / "warehouse"
    shutil.copytree(source, root)
    proc = subprocess.run(
        [sys.executable, "-c", KILL_AFTER, str(root), KILLED_DAY, str(k)],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == -9, proc.stderr.decode()
    assert proc.stdout.decode().splitlines() == list(STEPS[:k])
    check_every_read_path(root, ordered)

    again = compact_day(root, KILLED_DAY)
    check_every_read_path(root, ordered)
    committed = k > STEPS.index("merged written") + 1  # the kill came after the manifest replace
    assert (again.output is None) == committed
    day = root / "events" / f"day={KILLED_DAY}"
    assert [p.name[:2] for p in day.iterdir()] == ["c-"]
    assert [p.name for p in root.rglob(".*")] == []
