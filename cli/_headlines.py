"""The headline tables of a report, for people: what ``usersignals run`` (and ``make demo``) print.

The full report has a row per day and model; the headlines fold it into what a product and a
safety team look at first: recent active users, feedback per model, risk flags, arena ratings,
the flattery watch and rejects.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from rich.console import Console
from rich.table import Table

__all__ = ["render_headlines"]

SEVERITY_ORDER = {"critical": 0, "high": 1, "medium": 2, "low": 3}


def _table(title: str, *columns: str) -> Table:
    table = Table(title=title, title_justify="left", title_style="bold", min_width=len(title) + 2)
    for n, name in enumerate(columns):
        table.add_column(name, justify="left" if n == 0 else "right")
    return table


def _rate(up: int, down: int) -> str:
    return f"{up / (up + down):.1%}" if up + down else "-"


def render_headlines(report: dict[str, Any], console: Console | None = None) -> None:
    """Prints the headline tables of a report (the shape of ``report --json``)."""
    out = console or Console()

    active = _table("Active users (last 7 days)", "day", "DAU", "WAU", "MAU", "stickiness")
    for row in report["active_users"][-7:]:
        active.add_row(
            row["day"],
            str(row["dau"]),
            str(row["wau"]),
            str(row["mau"]),
            f"{row['stickiness']:.3f}",
        )
    out.print(active)

    votes: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for row in report["feedback_by_model"]:
        votes[row["model"] or "(none)"][0] += row["thumbs_up"]
        votes[row["model"] or "(none)"][1] += row["thumbs_down"]
    feedback = _table(
        "Feedback per model (latest vote per message)", "model", "up", "down", "up rate"
    )
    for model, (up, down) in sorted(votes.items()):
        feedback.add_row(model, f"{up:,}", f"{down:,}", _rate(up, down))
    out.print(feedback)

    flags: dict[tuple[str, str], int] = defaultdict(int)
    for row in report["risk_flags_daily"]:
        flags[(row["category"], row["severity"])] += row["flags"]
    risk = _table("Risk flags (whole period)", "category", "severity", "flags")
    for (category, severity), n in sorted(
        flags.items(), key=lambda kv: (SEVERITY_ORDER.get(kv[0][1], 9), -kv[1], kv[0][0])
    ):
        risk.add_row(category, severity, f"{n:,}")
    out.print(risk)

    arena = _table(
        "Arena ratings (Bradley-Terry, 95 % bootstrap interval)",
        "model",
        "rank",
        "rating",
        "interval",
        "votes",
    )
    for row in sorted(report.get("arena", []), key=lambda r: (r["rank"], -r["rating"])):
        arena.add_row(
            row["model"],
            str(row["rank"]),
            f"{row['rating']:.0f}",
            f"{row['ci_low']:.0f} to {row['ci_high']:.0f}",
            f"{row['votes']:,}",
        )
    out.print(arena)

    weeks = sorted({row["week"] for row in report.get("flattery_watch", [])})[-2:]
    watch = _table(
        "Flattery watch (last two ISO weeks)",
        "model",
        "week",
        "up rate",
        "user share",
        "risk flags / 1k users",
        "users at risk",
        "flag",
    )
    for row in report.get("flattery_watch", []):
        if row["week"] not in weeks:
            continue
        rate = row["thumbs_up_rate"]
        watch.add_row(
            row["model"],
            row["week"],
            "-" if rate is None else f"{rate:.1%}",
            f"{row['active_share']:.1%}",
            f"{row['risk_flags_per_1k']:.1f}",
            str(row["users_at_risk"]),
            "[bold red]both rising[/]" if row["flagged"] else "",
        )
    out.print(watch)

    rejected = _table("Rejected records by reason (dead-letter)", "reason", "records")
    for row in report["rejected"]:
        rejected.add_row(row["reason"], f"{row['count']:,}")
    if not report["rejected"]:
        rejected.add_row("(none)", "0")
    out.print(rejected)
