"""The analyst's notebook runs top to bottom on a generated warehouse, so it cannot rot."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jupytext
import nbformat
import pytest
from nbclient import NotebookClient

from tests.warehouse.parquetfixtures import write_warehouse
from usersignals.ingest.contract import Event
from usersignals.warehouse.db import connect
from usersignals.warehouse.history import history_report
from usersignals.warehouse.report import warehouse_report

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
START = datetime(2026, 9, 7, tzinfo=UTC)


def synthetic_events(seed: int = 11, users: int = 40, days: int = 30) -> list[Event]:
    """Sessions of chat traffic: a start, messages, some votes and flags, an end."""
    rng = random.Random(seed)
    out: list[Event] = []
    n = 0

    def add(kind: str, user: str, ts: datetime, **fields: Any) -> None:
        nonlocal n
        n += 1
        out.append(Event(event_id=f"ev-{n}", type=kind, user_id=user, ts=ts, **fields))

    for u in range(users):
        user = f"user-{u}"
        for day in sorted(rng.sample(range(days), rng.randint(1, 12))):
            session = f"{user}-s{day}"
            model = rng.choice(["m-5.1", "m-5.2", "m-6.0"])
            ts = START + timedelta(days=day, seconds=rng.randint(0, 80_000))
            add("session_start", user, ts, session_id=session, model=model, platform="web")
            for k in range(rng.randint(1, 6)):
                ts += timedelta(seconds=rng.randint(5, 90))
                mid = f"{session}-m{k}"
                add(
                    "message",
                    user,
                    ts,
                    session_id=session,
                    model=model,
                    role="assistant",
                    message_id=mid,
                    tokens=rng.randint(10, 500),
                )
                if rng.random() < 0.3:
                    add(
                        "feedback",
                        user,
                        ts + timedelta(seconds=3),
                        session_id=session,
                        model=model,
                        message_id=mid,
                        rating=rng.choice([1, 1, 1, -1, 0]),
                    )
                if rng.random() < 0.05:
                    add(
                        "risk_flag",
                        user,
                        ts + timedelta(seconds=1),
                        session_id=session,
                        model=model,
                        category=rng.choice(["sycophancy", "mania"]),
                        severity=rng.choice(["low", "medium", "high", "critical"]),
                    )
            add(
                "session_end",
                user,
                ts + timedelta(seconds=30),
                session_id=session,
                model=model,
                duration_s=float(rng.randint(60, 3600)),
            )
    return out


def test_notebook_and_py_are_in_sync() -> None:
    script = jupytext.read(NOTEBOOKS / "analyst.py")
    notebook = nbformat.read(NOTEBOOKS / "analyst.ipynb", as_version=4)
    assert [c.source for c in notebook.cells] == [c.source for c in script.cells]


def test_notebook_runs_on_a_generated_warehouse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "warehouse"
    write_warehouse(root, synthetic_events(), partitions=4, per_record=20, per_flush=25)
    report = warehouse_report(connect(root))
    monkeypatch.setenv("USERSIGNALS_WAREHOUSE", str(root))
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend (Agg) draws PNGs
    notebook = nbformat.read(NOTEBOOKS / "analyst.ipynb", as_version=4)
    NotebookClient(
        notebook, kernel_name="python3", timeout=120, resources={"metadata": {"path": tmp_path}}
    ).execute()

    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    printed = "".join(o.text for o in outputs if o.output_type == "stream")
    active = report["active_users"]
    flags = sum(r["flags"] for r in report["risk_flags_daily"])
    assert (
        f"days={len(active)} peak_mau={max(r['mau'] for r in active)} "
        f"last_dau={active[-1]['dau']}\n" in printed
    )
    assert f" flags={flags}\n" in printed
    history = history_report(connect(root))
    cohorts = {r["cohort"] for r in history["retention"]}
    assert f"cohorts={len(cohorts)} cells={len(history['retention'])}\n" in printed
    lifecycle = history["lifecycle"]
    new = sum(r["users"] for r in lifecycle if r["status"] == "new")
    dormant = sum(r["users"] for r in lifecycle if r["status"] == "dormant")
    weeks = len({r["period"] for r in lifecycle})
    assert f"lifecycle weeks={weeks} new={new} dormant={dormant}\n" in printed
    assert new == len({e.user_id for e in synthetic_events()})
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 5
    tables = [o for o in outputs if "text/html" in o.get("data", {})]
    assert len(tables) == 3  # the view list, feedback by model, the ad-hoc query
