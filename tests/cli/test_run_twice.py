"""``usersignals run`` into a warehouse that already holds data: nothing skipped, nothing twice.

Every ``run`` starts a fresh embedded broker, whose topic begins at offset 0 again; the loader
must see a new incarnation of the topic rather than offsets "already committed".
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.oracle import oracle_report
from tests.warehouse.test_compact_kill import project
from usersignals.cli.run import mismatch
from usersignals.ingest.contract import Event, decode_record
from usersignals.warehouse.db import connect
from usersignals.warehouse.manifest import read_manifest
from usersignals.warehouse.report import warehouse_report

KEYS = ("active_users", "events_by_day", "feedback_by_model", "risk_flags_daily", "rejected")


def lines(prefix: str, users: int, day: int) -> list[str]:
    """Sessions of ``users`` users on 2026-11-``day``, with votes and a flag; one bad line."""
    out: list[str] = []
    for u in range(users):
        user = f"{prefix}-user-{u}"
        ts = f"2026-11-{day:02d}T{8 + u % 10:02d}:00:00Z"
        base = {"user_id": user, "ts": ts, "session_id": f"{user}-s", "model": "m-1"}
        out.append(json.dumps({**base, "event_id": f"{user}-0", "type": "session_start"}))
        out.append(
            json.dumps(
                {**base, "event_id": f"{user}-1", "type": "message", "role": "assistant"}
                | {"message_id": f"{user}-m"}
            )
        )
        rating = 1 if u % 3 else -1
        out.append(
            json.dumps(
                {**base, "event_id": f"{user}-2", "type": "feedback", "message_id": f"{user}-m"}
                | {"rating": rating}
            )
        )
        if u % 4 == 0:
            flag = {"type": "risk_flag", "category": "sycophancy", "severity": "high"}
            out.append(json.dumps({**base, "event_id": f"{user}-3", **flag}))
    out.append("this line is not JSON")
    return out


def events_of(text: list[str]) -> list[Event]:
    out: list[Event] = []
    for line in text:
        events, rejections = decode_record(line.encode())
        out += events if not rejections else []
    return out


def run(tmp_path: Path, file: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("USERSIGNALS_")}
    env["USERSIGNALS_STATE_DIR"] = str(tmp_path / "state")
    cmd = [sys.executable, "-m", "usersignals", "run", str(file), "--json", "--partitions", "2"]
    return subprocess.run(
        [*cmd, "--warehouse", str(tmp_path / "warehouse")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.mark.slow
@pytest.mark.broker
def test_two_runs_into_one_warehouse_keep_both_data_sets(tmp_path: Path) -> None:
    first, second = lines("a", 12, 2), lines("b", 7, 3)
    for name, text in (("first.jsonl", first), ("second.jsonl", second)):
        (tmp_path / name).write_text("\n".join(text) + "\n")

    one = run(tmp_path, tmp_path / "first.jsonl")
    assert one.returncode == 0, one.stderr
    assert "live metrics and warehouse history agree" in one.stderr
    two = run(tmp_path, tmp_path / "second.jsonl")
    assert two.returncode == 0, two.stderr
    assert "live metrics and warehouse history agree" in two.stderr

    root = tmp_path / "warehouse"
    both = events_of(first) + events_of(second)
    con = connect(root)
    ids = [r[0] for r in con.sql("SELECT event_id FROM events").fetchall()]
    assert sorted(ids) == sorted(e.event_id for e in both)  # both data sets, each event once
    raw = con.sql("SELECT count(*) FROM events_raw").fetchall()
    assert raw == [(len(both),)]  # not even a duplicate row for the dedupe to drop
    report = warehouse_report(con)
    con.close()
    oracle = oracle_report(both, {"not_json": 2})
    for key in KEYS:
        assert project(report[key], oracle[key]) == oracle[key], key
    printed = json.loads(two.stdout)
    assert printed["events_by_day"] == report["events_by_day"]
    assert read_manifest(root).epoch == 1


LIVE = {"events_by_day": [{"day": "2026-11-02", "events": 3}], "rejected": []}


@pytest.mark.parametrize(
    ("live", "history", "reason"),
    [
        (LIVE, LIVE, None),
        (LIVE, {**LIVE, "arena": []}, None),
        (
            LIVE,
            {"events_by_day": [], "rejected": []},
            "live metrics and the warehouse history of this run's records differ in events_by_day",
        ),
        (
            {"events_by_day": [], "rejected": [{"reason": "not_json", "count": 1}]},
            LIVE,
            "live metrics and the warehouse history of this run's records differ in "
            "events_by_day, rejected",
        ),
        (
            None,
            LIVE,
            "the worker's live report could not be read, so it was not checked against history",
        ),
    ],
)
def test_mismatch_names_what_differs(
    live: dict[str, Any] | None, history: dict[str, Any], reason: str | None
) -> None:
    assert mismatch(live, history) == reason


@pytest.mark.broker
def test_a_file_longer_than_the_retention_agrees(tmp_path: Path) -> None:
    """`run`'s worker holds the whole file: a file spanning more days than the live retention
    (35 by default) is not a live/history mismatch."""
    text: list[str] = []
    for day, first in ((1, 0), (20, 1), (45, 2)):  # 2026-10-01 .. 2026-11-14: 45 days
        for line in lines(f"d{day}", 3, 1)[:-1]:
            obj = json.loads(line)
            obj["ts"] = f"2026-{10 + (day - 1) // 31:02d}-{(day - 1) % 31 + 1:02d}T10:0{first}:00Z"
            text.append(json.dumps(obj))
    file = tmp_path / "long.jsonl"
    file.write_text("\n".join(text) + "\n", encoding="utf-8")
    proc = run(tmp_path, file)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stderr.endswith("live metrics and warehouse history agree\n")
