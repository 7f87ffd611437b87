"""The headline tables fold the report's daily rows into what people look at first."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from usersignals.cli._headlines import render_headlines

REPORT: dict[str, Any] = {
    "active_users": [
        {"day": f"2026-09-{d:02d}", "dau": d, "wau": 2 * d, "mau": 4 * d, "stickiness": 0.25}
        for d in range(1, 10)
    ],
    "events_by_day": [],
    "feedback_by_model": [
        {"day": "2026-09-01", "model": "warm", "thumbs_up": 3, "thumbs_down": 1},
        {"day": "2026-09-02", "model": "warm", "thumbs_up": 3, "thumbs_down": 1},
        {"day": "2026-09-02", "model": None, "thumbs_up": 0, "thumbs_down": 2},
    ],
    "risk_flags_daily": [
        {"day": "2026-09-01", "category": "mania", "severity": "low", "flags": 4, "users": 1},
        {
            "day": "2026-09-02",
            "category": "self_harm",
            "severity": "critical",
            "flags": 1,
            "users": 1,
        },
        {"day": "2026-09-03", "category": "mania", "severity": "low", "flags": 2, "users": 2},
    ],
    "users_at_risk_weekly": [],
    "rejected": [],
    "arena": [
        {"model": "a", "rating": 950.2, "ci_low": 900.0, "ci_high": 990.0, "votes": 40, "rank": 2},
        {
            "model": "b",
            "rating": 1049.8,
            "ci_low": 1001.0,
            "ci_high": 1100.0,
            "votes": 40,
            "rank": 1,
        },
    ],
    "flattery_watch": [
        {
            "model": "warm",
            "week": w,
            "thumbs_up_rate": r,
            "active_share": 0.5,
            "risk_flags_per_1k": k,
            "users_at_risk": 1,
            "flagged": f,
        }
        for w, r, k, f in [
            ("2026-W34", 0.5, 1.0, False),
            ("2026-W35", 0.6, 2.0, False),
            ("2026-W36", 0.7, 3.0, True),
        ]
    ],
}


def _lines() -> list[str]:
    console = Console(record=True, width=140)
    render_headlines(REPORT, console)
    return [" ".join(line.replace("│", " ").split()) for line in console.export_text().splitlines()]


def test_headlines() -> None:
    lines = _lines()
    assert "2026-09-03 3 6 12 0.250" in lines
    assert "2026-09-02 2 4 8 0.250" not in lines  # only the last 7 days
    assert "warm 6 2 75.0%" in lines
    assert "(none) 0 2 0.0%" in lines
    risk = [x for x in lines if x.startswith(("self_harm", "mania"))]
    assert risk == ["self_harm critical 1", "mania low 6"]  # most severe first
    assert [x for x in lines if x.startswith(("a ", "b "))] == [
        "b 1 1050 1001 to 1100 40",
        "a 2 950 900 to 990 40",
    ]
    assert "warm 2026-W34 50.0% 50.0% 1.0 1" not in lines  # only the last two weeks
    assert "warm 2026-W36 70.0% 50.0% 3.0 1 both rising" in lines
    assert "(none) 0" in lines  # no rejects is said, not left blank
