"""The analyst's notebook runs top to bottom on a generated warehouse, so it cannot rot; its
frames hold integer counts and its charts are readable; `make notebook` installs JupyterLab once."""

from __future__ import annotations

import colorsys
import json
import os
import random
import shutil
import subprocess
from datetime import UTC, date, datetime, timedelta
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

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
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


# Run before the notebook: keep every figure the notebook shows (the inline backend closes them).
SPY = """\
import matplotlib.pyplot as _plt

_shown, _show = [], _plt.show


def _keep_and_show(*args, **kwargs):
    _shown.extend(f for f in map(_plt.figure, _plt.get_fignums()) if f not in _shown)
    return _show(*args, **kwargs)


_plt.show = _keep_and_show
"""

# Run after it: the frames' schemas and, per figure as drawn, its x ticks and whether any two
# overlap, its legend and the days at the centre of its hatched (incomplete) patches.
INSPECT = """\
import json as _json

import matplotlib.colors as _colors
import matplotlib.dates as _dates
import polars as _pl
from matplotlib.backends.backend_agg import FigureCanvasAgg as _Agg


def _describe(fig):
    canvas = _Agg(fig)  # closed by the inline backend, drawn again as it drew it
    canvas.draw()
    renderer = canvas.get_renderer()
    ax = fig.axes[0]
    ticks = [t for t in ax.get_xticklabels() if t.get_visible() and t.get_text()]
    boxes = [t.get_window_extent(renderer) for t in ticks]
    legend = ax.get_legend()
    handles = legend.legend_handles if legend else []
    return {
        "title": ax.get_title(),
        "formatter": type(ax.xaxis.get_major_formatter()).__name__,
        "ticks": [t.get_text() for t in ticks],
        "overlaps": int(sum(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])),
        "legend": [t.get_text() for t in legend.get_texts()] if legend else [],
        "colours": [
            _colors.to_hex(h.get_facecolor()) if hasattr(h, "get_facecolor") else None
            for h in handles
        ],
        "hatched": sorted(
            {
                _dates.num2date(p.get_x() + p.get_width() / 2).date().isoformat()
                for p in ax.patches
                if p.get_hatch() == "//"
            }
        ),
    }


print("INSPECT" + _json.dumps({
    "frames": {
        k: {c: str(t) for c, t in v.schema.items()}
        for k, v in dict(globals()).items()
        if isinstance(v, _pl.DataFrame) and not k.startswith("_")
    },
    "figures": [_describe(f) for f in _shown],
}))
"""


def run_notebook(tmp_path: Path) -> tuple[list[Any], dict[str, Any]]:
    """Execute the notebook (on $USERSIGNALS_WAREHOUSE): its outputs, and what INSPECT saw."""
    notebook = nbformat.read(NOTEBOOKS / "analyst.ipynb", as_version=4)
    notebook.cells.insert(0, nbformat.v4.new_code_cell(SPY))
    notebook.cells.append(nbformat.v4.new_code_cell(INSPECT))
    NotebookClient(
        notebook, kernel_name="python3", timeout=120, resources={"metadata": {"path": tmp_path}}
    ).execute()
    cells = [c for c in notebook.cells[1:-1] if c.cell_type == "code"]
    outputs = [o for cell in cells for o in cell.outputs]
    inspect = notebook.cells[-1].outputs
    assert [o.output_type for o in inspect] == ["stream"], inspect
    return outputs, json.loads(inspect[0].text.removeprefix("INSPECT"))


def monday(day: str) -> str:
    """The Monday of the ISO week of day."""
    d = date.fromisoformat(day)
    return (d - timedelta(days=d.weekday())).isoformat()


@pytest.mark.parametrize(("users", "days"), [(40, 30), (25, 200)])
def test_notebook_runs_on_a_generated_warehouse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, users: int, days: int
) -> None:
    events = synthetic_events(users=users, days=days)
    root = tmp_path / "warehouse"
    write_warehouse(root, events, partitions=4, per_record=20, per_flush=25)
    report = warehouse_report(connect(root))
    monkeypatch.setenv("USERSIGNALS_WAREHOUSE", str(root))
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend (Agg) draws PNGs
    outputs, seen = run_notebook(tmp_path)

    assert not [o for o in outputs if o.output_type == "error"]
    printed = "".join(o.text for o in outputs if o.output_type == "stream")
    active = report["active_users"]
    flags = sum(r["flags"] for r in report["risk_flags_daily"])
    incomplete_days = [r["day"] for r in active if not r["complete"]]
    assert incomplete_days == [active[-1]["day"]]  # the last day with data, its events may come
    assert (
        f"days={len(active)} peak_mau={max(r['mau'] for r in active)} "
        f"last_dau={active[-1]['dau']}\n" in printed
    )
    assert f"incomplete days: {', '.join(incomplete_days)}\n" in printed
    assert f" flags={flags}\n" in printed
    history = history_report(connect(root))
    cohorts = {r["cohort"] for r in history["retention"]}
    assert f"cohorts={len(cohorts)} cells={len(history['retention'])}\n" in printed
    lifecycle = history["lifecycle"]
    new = sum(r["users"] for r in lifecycle if r["status"] == "new")
    dormant = sum(r["users"] for r in lifecycle if r["status"] == "dormant")
    weeks = len({r["period"] for r in lifecycle})
    assert f"lifecycle weeks={weeks} new={new} dormant={dormant}\n" in printed
    assert new == len({e.user_id for e in events}) == users
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 5
    tables = [o for o in outputs if "text/html" in o.get("data", {})]
    assert len(tables) == 3  # the view list, feedback by model, the ad-hoc query

    # Counts are integers: no DuckDB HUGEINT arrives in polars as decimal[38,0].
    shown = [v for o in outputs for v in o.get("data", {}).values() if isinstance(v, str)]
    assert not [t for t in shown if "decimal" in t.lower()]
    severities = ["low", "medium", "high", "critical"]
    assert {k: v for k, v in seen["frames"].items() if k != "rows"} == {
        "active": {
            "day": "Date",
            **dict.fromkeys(["dau", "wau", "mau"], "Int64"),
            "stickiness": "Float64",
            **dict.fromkeys(["complete", "wau_complete", "mau_complete"], "Boolean"),
        },
        "retention": {
            "cohort": "Date",
            **dict.fromkeys(["period", "cohort_users", "users"], "Int64"),
        },
        "lifecycle": {
            "period": "Date",
            **dict.fromkeys(["new", "returning", "resurrecting", "dormant"], "Int64"),
            "complete": "Boolean",
        },
        "feedback": {"model": "String", "up": "Int64", "down": "Int64", "up_rate": "Float64"},
        "risk": {"week": "Date", **dict.fromkeys(severities, "Int64"), "complete": "Boolean"},
    }

    figures = {f["title"]: f for f in seen["figures"]}
    assert list(figures) == [
        "Active users",
        "Retention",
        "Lifecycle per week",
        "Thumbs-up rate by model",
        "Risk flags per week",
    ]
    # Dates on the x axis: placed by a date locator, concisely labelled, no two labels overlap.
    for title in ("Active users", "Lifecycle per week", "Risk flags per week"):
        figure = figures[title]
        assert figure["formatter"] == "ConciseDateFormatter", title
        assert 3 <= len(figure["ticks"]) <= 9, figure
        assert figure["overlaps"] == 0, figure
    assert all(f["overlaps"] == 0 for f in figures.values())

    # Incomplete days and weeks are hatched and named in the legend. A week (its Monday) is
    # complete when the 7-day window ending on its Sunday is.
    chart = figures["Active users"]
    assert chart["legend"] == ["DAU", "WAU", "MAU", "incomplete day", "incomplete window"]
    assert chart["hatched"] == incomplete_days
    complete_weeks = {
        (date.fromisoformat(r["day"]) - timedelta(days=6)).isoformat()
        for r in active
        if r["wau_complete"] and date.fromisoformat(r["day"]).isoweekday() == 7
    }
    for title, periods in (
        ("Lifecycle per week", {r["period"] for r in lifecycle}),
        ("Risk flags per week", {monday(r["day"]) for r in report["risk_flags_daily"]}),
    ):
        incomplete = sorted(
            (date.fromisoformat(w) + timedelta(days=3)).isoformat()  # a bar spans Mon-Sat
            for w in periods - complete_weeks
        )
        # the newest week has users, so it is among lifecycle's; it may have no flag
        assert incomplete or title == "Risk flags per week"
        assert figures[title]["hatched"] == incomplete, title
        assert ("incomplete week" in figures[title]["legend"]) == bool(incomplete), title

    # Severity: stacked low to critical, listed critical first as in the stack, coloured from
    # calm (light) to alarming (dark red).
    risk = figures["Risk flags per week"]
    assert risk["legend"][:4] == severities[::-1]
    hls = [
        colorsys.rgb_to_hls(*(int(c[i : i + 2], 16) / 255 for i in (1, 3, 5)))
        for c in risk["colours"][:4]
    ]
    lightness = [light for _, light, _ in hls]
    assert lightness == sorted(lightness)  # critical darkest
    assert len(set(lightness)) == 4
    away_from_red = [min(h, 1 - h) for h, _, _ in hls]  # the hue circle's distance to red
    assert max(away_from_red) <= 1 / 6, risk["colours"]  # yellow to red: no calm blue or green
    assert away_from_red[0] < 0.06, risk["colours"]  # critical is red


def test_make_notebook_installs_jupyterlab_once(tmp_path: Path) -> None:
    """The stamp rule runs pip once (here a stand-in python that logs its arguments), then is
    up to date; `make -n notebook` then plans no install, only JupyterLab itself."""
    make = shutil.which("make")
    if make is None:
        pytest.skip("no make")
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    (tmp_path / "pyproject.toml").touch()
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    log = tmp_path / "python.log"
    python = bin_dir / "python"
    python.write_text(f'#!/bin/sh\necho "$@" >> {log}\n')
    python.chmod(0o755)
    installed = tmp_path / ".venv" / ".installed"
    installed.touch()
    os.utime(tmp_path / "pyproject.toml", (1_000_000_000, 1_000_000_000))  # older than the venv

    def run(*args: str) -> str:
        done = subprocess.run(
            [make, "--no-print-directory", *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "MAKEFLAGS": ""},
        )
        return done.stdout

    plan = run("-n", "notebook")
    assert ".venv/bin/python -m pip install -q jupyterlab" in plan
    assert "jupyter lab notebooks/analyst.ipynb" in plan
    run(".venv/.jupyterlab")
    assert log.read_text() == "-m pip install -q jupyterlab\n"
    assert "is up to date" in run(".venv/.jupyterlab")
    assert log.read_text() == "-m pip install -q jupyterlab\n"  # once
    plan = run("-n", "notebook")
    assert "pip install -q jupyterlab" not in plan
    assert ".venv/bin/jupyter lab notebooks/analyst.ipynb" in plan

    # A venv that has JupyterLab already (no stamp yet): no pip at all.
    log.unlink()
    (tmp_path / ".venv" / ".jupyterlab").unlink()
    (bin_dir / "jupyter-lab").write_text("#!/bin/sh\n")
    (bin_dir / "jupyter-lab").chmod(0o755)
    run(".venv/.jupyterlab")
    assert not log.exists()
    assert (tmp_path / ".venv" / ".jupyterlab").exists()
