"""Training-data export: exact rows and exclusions on a data set built to known counts."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from tests.warehouse.test_flattery import memory_warehouse
from usersignals.ingest.contract import Event
from usersignals.warehouse.export import ExportError, export, export_table, write_table

START = datetime(2026, 5, 4, 9, tzinfo=UTC)
USERS = [f"u{i:02d}" for i in range(12)]
WINNERS = ("a", "b", "tie", "both_bad")

# properties of one session_start per user: only the JSON value false withdraws consent
CONSENT = {"u01": {"consent": False}, "u02": {"consent": "false"}, "u03": {"consent": True}}
# risk flags: session -> severity ("u08-x" is a flag without a session id)
FLAGS = {"u04-a": "low", "u05-a": "medium", "u06-a": "high", "u07-b": "critical", "u01-b": "high"}


def dataset() -> list[Event]:
    """12 users x 2 sessions; each session: 2 labels (a changed vote, a withdrawn one) + 1 pair."""
    events: list[Event] = []
    clock = iter(range(10**6))

    def add(type_: str, user: str, session: str | None, **fields: Any) -> Event:
        n = next(clock)
        e = Event(
            event_id=f"{user}-{n:05d}",
            type=type_,
            user_id=user,
            ts=START + timedelta(minutes=n),
            session_id=session,
            **fields,
        )
        events.append(e)
        return e

    for u, user in enumerate(USERS):
        for s, tag in enumerate(("a", "b")):
            session = f"{user}-{tag}"
            props = CONSENT.get(user) if tag == "a" else None
            model = ("m-1", "m-2")[s]
            add("session_start", user, session, properties=props)
            add("feedback", user, session, model=model, message_id=f"{session}-1", rating=1)
            add("feedback", user, session, model=model, message_id=f"{session}-2", rating=1)
            voted = add("feedback", user, session, model=model, message_id=f"{session}-3", rating=1)
            add("feedback", user, session, model=model, message_id=f"{session}-2", rating=-1)
            add("feedback", user, session, model=model, message_id=f"{session}-3", rating=0)
            events.append(voted)  # a client retry of an old vote: the same event, once
            add("preference", user, session, model_a="m-1", model_b="m-2", winner=WINNERS[u % 4])
            if session in FLAGS:
                add("risk_flag", user, session, model=model, category="other",
                    severity=FLAGS[session])  # fmt: skip
    add("risk_flag", "u08", None, category="other", severity="critical")
    add("feedback", "u09", None, model="m-1", message_id="loose", rating=1)
    return events


@pytest.fixture(scope="module")
def con() -> Any:
    return memory_warehouse(dataset())


# 24 sessions x 2 labels + 1 loose label = 49 candidates; u01 (2 sessions) refused consent.
# Sessions flagged at or above:  low -> u04-a u05-a u06-a u07-b, medium -> 3, high -> 2,
# critical -> u07-b (u01-b is flagged high too, but already out for consent).
@pytest.mark.parametrize(
    ("kind", "severity", "rows", "dropped_risk"),
    [
        ("feedback", None, 45, 0),
        ("feedback", "low", 37, 8),
        ("feedback", "medium", 39, 6),
        ("feedback", "high", 41, 4),
        ("feedback", "critical", 43, 2),
        ("preferences", None, 22, 0),
        ("preferences", "low", 18, 4),
        ("preferences", "high", 20, 2),
        ("preferences", "critical", 21, 1),
    ],
)
def test_counts_and_exclusions(
    con: Any, kind: str, severity: str | None, rows: int, dropped_risk: int
) -> None:
    result = export_table(con, kind, exclude_risk=severity)
    per_session = 2 if kind == "feedback" else 1
    assert result.summary() == {
        "rows": rows,
        "dropped_consent": 2 * per_session,
        "dropped_risk": dropped_risk,
    }
    sessions = set(result.table["session_id"].to_pylist())
    assert not sessions & {"u01-a", "u01-b"}
    threshold = ("low", "medium", "high", "critical").index(severity) if severity else 4
    flagged = {s for s, sev in FLAGS.items() if ("low", "medium", "high", "critical").index(sev)
               >= threshold}  # fmt: skip
    assert not sessions & flagged
    assert {"u02-a", "u03-a", "u08-a"} <= sessions


def test_feedback_rows_are_the_latest_binary_votes(con: Any) -> None:
    table = export_table(con, "feedback").table
    assert table.column_names == ["message_id", "session_id", "model", "label"]
    rows = table.to_pylist()
    assert rows[:3] == [
        {"message_id": "u00-a-1", "session_id": "u00-a", "model": "m-1", "label": 1},
        {"message_id": "u00-a-2", "session_id": "u00-a", "model": "m-1", "label": -1},
        {"message_id": "u00-b-1", "session_id": "u00-b", "model": "m-2", "label": 1},
    ]
    assert rows[-1] == {"message_id": "loose", "session_id": None, "model": "m-1", "label": 1}
    assert not any(r["message_id"].endswith("-3") for r in rows)  # withdrawn votes
    assert sum(r["label"] for r in rows) == 1  # 22 up and 22 down in sessions, plus "loose"


def test_preference_rows(con: Any) -> None:
    table = export_table(con, "preferences").table
    assert table.column_names == ["session_id", "model_a", "model_b", "winner"]
    rows = table.to_pylist()
    assert rows[0] == {"session_id": "u00-a", "model_a": "m-1", "model_b": "m-2", "winner": "a"}
    assert [r["winner"] for r in rows[::2]] == ["a", "tie", "both_bad", "a", "b", "tie",
                                               "both_bad", "a", "b", "tie", "both_bad"]  # fmt: skip


@pytest.mark.parametrize("kind", ["feedback", "preferences"])
def test_parquet_and_jsonl_hold_the_same_rows(con: Any, tmp_path: Path, kind: str) -> None:
    expected = export_table(con, kind, exclude_risk="high").table.to_pylist()
    summary = export(con, kind, tmp_path / "out.parquet", exclude_risk="high")
    assert summary["rows"] == len(expected)
    assert pq.read_table(tmp_path / "out.parquet").to_pylist() == expected
    export(con, kind, tmp_path / "out.jsonl", fmt="jsonl", exclude_risk="high")
    lines = (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl", "out.parquet"]


def test_writers_take_a_file_object(con: Any) -> None:
    table = export_table(con, "preferences").table
    buffer = io.BytesIO()
    write_table(table.slice(0, 2), buffer, "jsonl")
    assert buffer.getvalue() == (
        b'{"session_id": "u00-a", "model_a": "m-1", "model_b": "m-2", "winner": "a"}\n'
        b'{"session_id": "u00-b", "model_a": "m-1", "model_b": "m-2", "winner": "a"}\n'
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "labels"}, "Invalid kind: 'labels' (choose from feedback, preferences)"),
        ({"fmt": "csv"}, "Invalid format: 'csv' (choose from parquet, jsonl)"),
        ({"exclude_risk": "severe"},
         "Invalid severity: 'severe' (choose from low, medium, high, critical)"),
    ],
)  # fmt: skip
def test_bad_arguments_write_nothing(
    con: Any, tmp_path: Path, kwargs: dict[str, Any], message: str
) -> None:
    args = {"kind": "feedback", **kwargs}
    with pytest.raises(ExportError) as exc:
        export(con, args.pop("kind"), tmp_path / "out", **args)
    assert str(exc.value) == message
    assert list(tmp_path.iterdir()) == []


def _bare_vote_events() -> list[Event]:
    """Votes without a model of their own: one on a message with a model (in a session with
    another), one in a session whose start has one, one with neither; and a changed vote with
    its own model (the latest vote counts, under its model)."""
    t = iter(START + timedelta(minutes=n) for n in range(100))

    def e(i: int, type_: str, **fields: Any) -> Event:
        return Event(event_id=f"b{i:02d}", type=type_, user_id="u", ts=next(t), **fields)

    return [
        e(0, "session_start", session_id="s1", model="m-s"),
        e(1, "message", session_id="s1", message_id="m1", model="m-msg", role="assistant"),
        e(2, "feedback", session_id="s1", message_id="m1", rating=1),
        e(3, "feedback", session_id="s1", message_id="m2", rating=-1),
        e(4, "feedback", session_id="s2", message_id="m3", rating=1),
        e(5, "feedback", session_id="s1", message_id="m4", rating=1, model="m-old"),
        e(6, "feedback", session_id="s1", message_id="m4", rating=-1, model="m-own"),
    ]


def test_feedback_model_is_the_attributed_one() -> None:
    """The export's vote is feedback_latest's: its own model, else its message's, else its
    session's (docs/attribution.md), the same rule the metrics count it under."""
    con = memory_warehouse(_bare_vote_events())
    rows = export_table(con, "feedback").table.to_pylist()
    assert rows == [
        {"message_id": "m1", "session_id": "s1", "model": "m-msg", "label": 1},
        {"message_id": "m2", "session_id": "s1", "model": "m-s", "label": -1},
        {"message_id": "m3", "session_id": "s2", "model": None, "label": 1},
        {"message_id": "m4", "session_id": "s1", "model": "m-own", "label": -1},
    ]
    latest = con.sql(
        "SELECT message_id, model, rating FROM feedback_latest WHERE rating IN (1, -1) "
        "ORDER BY ts, event_id"
    ).fetchall()
    assert [(r["message_id"], r["model"], r["label"]) for r in rows] == latest
