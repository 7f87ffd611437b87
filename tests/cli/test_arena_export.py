"""``usersignals arena`` and ``usersignals export`` as processes over a Parquet warehouse."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.warehouse.parquetfixtures import write_warehouse
from tests.warehouse.test_arena import FIXED
from tests.warehouse.test_export import dataset
from usersignals.cli.arena import format_table
from usersignals.ingest.contract import Event
from usersignals.warehouse.arena import fit_arena

Key = tuple[str, str, str]


def preference_events() -> list[Event]:
    """FIXED's votes, one user per vote, spread over three days."""
    start = datetime(2026, 5, 1, 10, tzinfo=UTC)
    out = []
    for (a, b, winner), n in sorted(FIXED.items()):
        for _ in range(n):
            i = len(out)
            out.append(Event(event_id=f"p{i:04d}", type="preference", user_id=f"v{i % 40}",
                             ts=start + timedelta(days=i % 3, seconds=i), model_a=a, model_b=b,
                             winner=winner))  # fmt: skip
    return out


def all_events() -> list[Event]:
    """The export data set (24 m-1/m-2 pairs among its events) and the arena votes."""
    return dataset() + preference_events()


def vote_counts(since: date | None = None, cap: int | None = None) -> dict[Key, int]:
    """The count table, recomputed naively: each event once, first N votes of a user's day."""
    seen: set[str] = set()
    votes = []
    for e in all_events():
        if e.event_id not in seen and e.type == "preference":
            seen.add(e.event_id)
            votes.append(e)
    kept: Counter[Key] = Counter()
    per_user_day: Counter[tuple[str, date]] = Counter()
    for v in sorted(votes, key=lambda v: (v.ts, v.event_id)):
        per_user_day[(v.user_id, v.ts.date())] += 1
        if since is not None and v.ts.date() < since:
            continue
        if cap is not None and per_user_day[(v.user_id, v.ts.date())] > cap:
            continue
        kept[(str(v.model_a), str(v.model_b), str(v.winner))] += 1
    return dict(kept)


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A warehouse in the loader's layout: the export data set and the arena votes."""
    root = tmp_path_factory.mktemp("warehouse")
    write_warehouse(root, all_events(), partitions=4)
    return root


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("USERSIGNALS_")}
    return subprocess.run(
        [sys.executable, "-m", "usersignals", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=env,
        check=False,
    )


def test_arena_json_is_the_pure_fit(warehouse: Path, tmp_path: Path) -> None:
    result = run("arena", "--warehouse", str(warehouse), "--json", "--seed", "4", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == fit_arena(vote_counts(), resamples=200, seed=4)


def test_arena_table(warehouse: Path, tmp_path: Path) -> None:
    result = run("arena", "--warehouse", str(warehouse), "--resamples", "100", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == format_table(fit_arena(vote_counts(), resamples=100)) + "\n"
    # the data set's m-1/m-2 pairs never meet the other models: that piece is centred apart
    assert result.stdout == (
        "rank  model        rating             95% CI    votes\n"
        "   1  gpt-x        1131.0    1074.6 - 1186.5      147\n"
        "   1  claude-y     1111.5    1075.7 - 1171.9      143\n"
        "   3  m-1          1000.0     956.3 - 1053.8       24\n"
        "   3  m-2          1000.0     946.2 - 1043.7       24\n"
        "   3  gemini-z      974.2     906.8 - 1040.7       80\n"
        "   3  llama-w       953.8     889.7 - 1011.5       84\n"
        "   6  mistral-v     829.4      730.2 - 897.8       34\n"
    )


def test_arena_since_and_cap(warehouse: Path, tmp_path: Path) -> None:
    since = date(2026, 5, 2)
    kept = vote_counts(since=since, cap=2)
    assert sum(kept.values()) == 184
    result = run(
        "arena", "--warehouse", str(warehouse), "--json", "--since", since.isoformat(),
        "--cap-per-user-day", "2", "--resamples", "100", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == fit_arena(kept, resamples=100)


def test_export_feedback_jsonl(warehouse: Path, tmp_path: Path) -> None:
    out = tmp_path / "labels.jsonl"
    args = ("export", "feedback", "--warehouse", str(warehouse), "--out", str(out))
    result = run(*args, "--exclude-risk", "high", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "kind": "feedback",
        "format": "jsonl",
        "rows": 41,
        "dropped_consent": 4,
        "dropped_risk": 4,
        "out": str(out),
    }
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 41
    assert set(rows[0]) == {"message_id", "session_id", "model", "label"}


def test_export_preferences_parquet(warehouse: Path, tmp_path: Path) -> None:
    out = tmp_path / "pairs.parquet"
    args = ("export", "preferences", "--warehouse", str(warehouse), "--out", str(out))
    result = run(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    # the data set's 22 consenting pairs plus the 244 arena votes (no session, no consent flag)
    assert result.stdout == (
        f"wrote 266 preferences rows to {out} (parquet); left out 2 without consent, "
        "0 in flagged sessions\n"
    )
    table = pq.read_table(out)
    assert table.num_rows == 266
    assert table.column_names == ["session_id", "model_a", "model_b", "winner"]


@pytest.mark.parametrize(
    ("args", "code", "stderr_end"),
    [
        (("export", "feedback", "--out", "x", "--exclude-risk", "severe"), 2,
         "Invalid value for '--exclude-risk': 'severe' is not one of 'low', 'medium', 'high', "
         "'critical'.\n"),
        (("arena", "--cap-per-user-day", "0"), 2,
         "Invalid value for '--cap-per-user-day': 0 is not in the range x>=1.\n"),
    ],
)  # fmt: skip
def test_bad_options(
    warehouse: Path, tmp_path: Path, args: tuple[str, ...], code: int, stderr_end: str
) -> None:
    result = run(*args, "--warehouse", str(warehouse), cwd=tmp_path)
    assert result.returncode == code
    assert result.stderr.endswith(stderr_end)
    assert list(tmp_path.iterdir()) == []


def test_missing_warehouse(tmp_path: Path) -> None:
    result = run("arena", "--warehouse", str(tmp_path / "nowhere"), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == (
        f"error: No warehouse at {str(tmp_path / 'nowhere')!r} (run the loader or pass "
        "--warehouse)\n"
    )
