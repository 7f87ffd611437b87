"""``usersignals sql`` and ``usersignals report`` as processes, over a small real warehouse."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from tests.conftest import require_tool
from tests.oracle_history import oracle_history
from tests.warehouse.parquetfixtures import write_warehouse
from usersignals.ingest.contract import Event
from usersignals.warehouse.db import connect
from usersignals.warehouse.history import history_report
from usersignals.warehouse.report import warehouse_report

T0 = datetime(2026, 9, 1, 12, tzinfo=UTC)
CHROMIUM = "/usr/bin/chromium"


def log_of(warehouse: Path) -> list[Event]:
    """The events of the module's warehouse (one partition: log order is their order)."""
    return _events()


def _events() -> list[Event]:
    out = []
    for i, (user, day) in enumerate([("ann", 0), ("bo", 0), ("ann", 1), ("cy", 3), ("bo", 3)]):
        out.append(
            Event(
                event_id=f"e{i}",
                type="message",
                user_id=user,
                role="user",
                ts=T0 + timedelta(days=day),
                model="m-1",
            )
        )
    out.append(
        Event(
            event_id="f1",
            type="feedback",
            user_id="ann",
            message_id="x",
            rating=1,
            ts=T0 + timedelta(days=1),
            model="m-1",
        )
    )
    out.append(
        Event(
            event_id="r1",
            type="risk_flag",
            user_id="cy",
            category="mania",
            severity="high",
            ts=T0 + timedelta(days=3),
        )
    )
    return out


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli") / "warehouse"
    write_warehouse(root, _events(), rejected=["not_json"])
    return root


def usersignals(
    warehouse: Path, *args: str, stdin: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, USERSIGNALS_WAREHOUSE=str(warehouse), COLUMNS="200")
    proc = subprocess.run(
        [sys.executable, "-m", "usersignals", *args],
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


QUERY = "SELECT day, dau, wau FROM active_users ORDER BY day"


def test_sql_prints_a_plain_table_when_piped(warehouse: Path) -> None:
    out = usersignals(warehouse, "sql", QUERY).stdout
    assert out == (
        "day         dau  wau\n"
        "----------  ---  ---\n"
        "2026-09-01  2    2\n"
        "2026-09-02  1    2\n"
        "2026-09-03  0    2\n"
        "2026-09-04  2    3\n"
    )


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ("csv", "day,dau,wau\n2026-09-01,2,2\n2026-09-02,1,2\n2026-09-03,0,2\n2026-09-04,2,3\n"),
        (
            "json",
            '[{"day": "2026-09-01", "dau": 2, "wau": 2}, {"day": "2026-09-02", "dau": 1, '
            '"wau": 2}, {"day": "2026-09-03", "dau": 0, "wau": 2}, {"day": "2026-09-04", '
            '"dau": 2, "wau": 3}]\n',
        ),
    ],
)
def test_sql_formats(warehouse: Path, fmt: str, expected: str) -> None:
    assert usersignals(warehouse, "sql", "--format", fmt, QUERY).stdout == expected


def test_sql_parquet_goes_to_a_file(warehouse: Path, tmp_path: Path) -> None:
    out = tmp_path / "au.parquet"
    usersignals(warehouse, "sql", "--format", "parquet", "--out", str(out), QUERY)
    table = pq.read_table(out)
    assert table.column_names == ["day", "dau", "wau"]
    assert table.column("dau").to_pylist() == [2, 1, 0, 2]


def test_sql_parquet_needs_out(warehouse: Path) -> None:
    proc = usersignals(warehouse, "sql", "--format", "parquet", QUERY, check=False)
    assert proc.returncode == 2
    assert "Error: --format parquet needs --out FILE" in proc.stderr


def test_sql_bad_query_is_an_error(warehouse: Path) -> None:
    proc = usersignals(warehouse, "sql", "SELECT nope FROM events", check=False)
    assert proc.returncode == 1
    assert proc.stderr.startswith('Error: Binder Error: Referenced column "nope" not found')


def test_sql_cannot_write_files_outside(warehouse: Path, tmp_path: Path) -> None:
    target = tmp_path / "leak.csv"
    proc = usersignals(warehouse, "sql", f"COPY (SELECT 1) TO '{target}'", check=False)
    assert proc.returncode == 1
    assert "Permission Error" in proc.stderr
    assert not target.exists()


def test_shell_reads_statements_from_stdin(warehouse: Path) -> None:
    script = "SELECT count(*) AS n\nFROM events;\n.tables\nSELECT 1 AS one;\n.quit\nSELECT 3;\n"
    out = usersignals(warehouse, "sql", stdin=script).stdout
    assert out.startswith("n\n-\n7\nname\n-")
    names = out.split("name\n", 1)[1].splitlines()[1:]
    assert "active_users" in names
    assert "flattery_watch" in names
    assert out.endswith("one\n---\n1\n")


def test_shell_reports_errors_and_goes_on(warehouse: Path) -> None:
    proc = usersignals(warehouse, "sql", stdin="SELECT nope;\nSELECT 2 AS two;\n", check=False)
    assert proc.returncode == 1
    assert proc.stdout.startswith("error: Binder Error")
    assert proc.stdout.endswith("two\n---\n2\n")


def test_report_json_is_the_warehouse_report(warehouse: Path) -> None:
    got: dict[str, Any] = json.loads(usersignals(warehouse, "report", "--json").stdout)
    con = connect(warehouse)
    expected = warehouse_report(con) | history_report(con)
    assert got == json.loads(json.dumps(expected))
    assert got["rejected"] == [{"reason": "not_json", "count": 1}]
    assert got["retention"] == oracle_history(log_of(warehouse))["retention"]


def test_report_json_has_retention_by_the_period_asked_for(warehouse: Path) -> None:
    got = json.loads(usersignals(warehouse, "report", "--json", "--period", "day").stdout)
    # ann and bo on 09-01 (ann back on 09-02, bo on 09-04); cy first on 09-04
    assert [(r["cohort"], r["period"], r["users"]) for r in got["retention"]] == [
        ("2026-09-01", 0, 2),
        ("2026-09-01", 1, 1),
        ("2026-09-01", 2, 0),
        ("2026-09-01", 3, 1),
        ("2026-09-04", 0, 1),
    ]
    assert got == got | oracle_history(log_of(warehouse), "day")
    weekly = json.loads(usersignals(warehouse, "report", "--json").stdout)
    assert weekly["retention"] == [
        {
            "cohort": "2026-08-31",
            "period": 0,
            "cohort_users": 3,
            "users": 3,
            "users_on_or_after": 3,
        }
    ]


def test_report_retention_prints_the_triangle(warehouse: Path) -> None:
    out = usersignals(warehouse, "report", "--retention", "--period", "day").stdout
    assert "Retention of first-time cohorts, by day" in out
    line = next(x for x in out.splitlines() if "2026-09-01" in x)
    assert [c.strip() for c in line.strip("│| ").split("│")] == [
        "2026-09-01",
        "2",
        "2 (100%)",
        "1 (50%)",
        "0 (0%)",
        "1 (50%)",
    ]
    proc = usersignals(warehouse, "report", "--retention", "--live", check=False)
    assert proc.returncode == 2
    assert "--retention reads the warehouse" in proc.stderr


def test_sql_has_the_engagement_views(warehouse: Path) -> None:
    out = usersignals(
        warehouse,
        "sql",
        "SELECT (SELECT count(*) FROM retention) AS r, (SELECT count(*) FROM lifecycle) AS l, "
        "(SELECT sum(users) FROM stickiness_distribution) AS s, "
        "(SELECT count(*) FROM retention_by('day')) AS d",
        "--format",
        "csv",
    ).stdout
    assert out.splitlines()[-1] == "1,4,3,5"


def test_report_rejects_a_reversed_range(warehouse: Path) -> None:
    proc = usersignals(
        warehouse, "report", "--from", "2026-09-03", "--to", "2026-09-02", check=False
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "Bad day range: from='2026-09-03' to='2026-09-02' (from is after to)" in proc.stderr


def test_report_from_to(warehouse: Path) -> None:
    proc = usersignals(warehouse, "report", "--json", "--from", "2026-09-02", "--to", "2026-09-03")
    got = json.loads(proc.stdout)
    flags = {"wau_complete": False, "mau_complete": False}
    assert got["active_users"] == [
        {"day": "2026-09-02", "dau": 1, "wau": 2, "mau": 2, "stickiness": 0.5}
        | {"complete": True, **flags},
        {"day": "2026-09-03", "dau": 0, "wau": 2, "mau": 2, "stickiness": 0.0}
        | {"complete": True, **flags},  # data goes on after 09-03
    ]
    assert got["range"] == {"from": "2026-09-02", "to": "2026-09-03"}
    assert got["feedback_by_model"] == [
        {"day": "2026-09-02", "model": "m-1", "thumbs_up": 1, "thumbs_down": 0}
    ]


def test_report_prints_tables(warehouse: Path) -> None:
    out = usersignals(warehouse, "report").stdout
    assert "Active users (DAU, WAU, MAU, stickiness = DAU/MAU)" in out
    assert "Risk flags per day" in out
    assert "2026-09-04" in out


def test_report_html_renders_in_chromium(tmp_path: Path) -> None:
    from PIL import Image

    from tests.dashboards.test_html_report import PageNumbers, demo_warehouse, open_in_chromium
    from usersignals.dashboards import formats
    from usersignals.dashboards.htmlreport import CHARTS

    chromium = require_tool("chromium", CHROMIUM)  # skips, or fails under make test
    warehouse = demo_warehouse(tmp_path / "warehouse")
    page = tmp_path / "report.html"
    shown = json.loads(usersignals(warehouse, "report", "--json", "--html", str(page)).stdout)
    # without --by, the page breaks risk flags (and the rest) down by model
    by_model = json.loads(usersignals(warehouse, "report", "--json", "--by", "model").stdout)
    assert {k: v for k, v in by_model.items() if k in shown} == shown
    rendered = open_in_chromium(chromium, page, tmp_path)
    assert rendered.console == []  # no error, no warning, nothing fetched
    numbers = PageNumbers.of(rendered.dom)

    assert set(numbers.charts) == set(CHARTS)
    for name, chart in numbers.charts.items():
        assert chart["rendered"] == "true", name
        assert chart["svg"] >= 1, name
        assert chart["marks"] > 0, name
        assert chart["drawn"] > chart["marks"] // 2, name
    incomplete = [r["day"] for r in shown["active_users"] if not r["complete"]]
    assert incomplete == ["2026-12-01"]
    assert numbers.charts["active_users"]["text"].count("incomplete") == 1
    flagged = [r for r in shown["flattery_watch"] if r["flagged"]]
    assert [(r["model"], r["week"]) for r in flagged] == [("m-5.2-warm", "2026-W48")]
    label = f"p {formats.p_value(flagged[0]['p_thumbs_up_rise'])} / "
    label += formats.p_value(flagged[0]["p_risk_rise"])
    assert numbers.charts["flattery_watch"]["text"].count(label) == 2  # one on each panel

    tables = {k for k, v in by_model.items() if isinstance(v, list) and v}
    assert set(numbers.tables) == tables
    for key in tables:
        assert numbers.tables[key] == by_model[key], key

    rows = {r["day"]: r for r in shown["active_users"]}
    day = "2026-11-30"  # the newest complete day
    at_risk = {r["day"]: r["users"] for r in shown["users_at_risk_weekly"]}
    week = [r for r in shown["wellbeing_weekly"] if r["model"] is None]
    top = max((r for r in week if r["week"] == "2026-11-23"), key=lambda r: r["share"])
    (before,) = (
        r["share"] for r in week if r["week"] == "2026-11-16" and r["category"] == top["category"]
    )
    assert numbers.tiles == {
        "dau": {"value": rows[day]["dau"], "change": 386 - 379, "day": day},
        "wau": {"value": rows[day]["wau"], "change": 1361 - 1372, "day": day},
        "mau": {"value": rows[day]["mau"], "change": None, "day": day},  # 21 days of data
        "stickiness": {
            "value": rows[day]["stickiness"],
            "change": round(rows[day]["stickiness"] - rows["2026-11-29"]["stickiness"], 6),
            "day": day,
        },
        "users_at_risk": {
            "value": at_risk[day],
            "change": at_risk[day] - at_risk["2026-11-23"],
            "day": day,
        },
        "flagged_share": {
            "value": top["share"],
            "change": round(top["share"] - before, 6),
            "day": "2026-11-23",
        },
    }
    assert (rows[day]["dau"], rows["2026-11-29"]["dau"]) == (386, 379)
    assert (rows[day]["wau"], rows["2026-11-23"]["wau"]) == (1361, 1372)

    image = Image.open(rendered.screenshot).convert("L")
    low, high = image.getextrema()
    assert image.size == (1400, 900)
    assert high - low > 100  # dark text and lines on a white page, not a blank one


def test_report_and_sql_in_another_time_zone(warehouse: Path) -> None:
    # every event is at 12:00 UTC: 02:00 the next day at UTC+14
    got = json.loads(
        usersignals(warehouse, "report", "--json", "--tz", "Pacific/Kiritimati").stdout
    )
    assert (got["tz"], got["week_start"]) == ("Pacific/Kiritimati", "monday")
    assert [r["day"] for r in got["events_by_day"]] == ["2026-09-02", "2026-09-03", "2026-09-05"]
    utc = json.loads(usersignals(warehouse, "report", "--json", "--week-start", "sunday").stdout)
    assert (utc["tz"], utc["week_start"]) == ("UTC", "sunday")
    assert [r["day"] for r in utc["events_by_day"]] == ["2026-09-01", "2026-09-02", "2026-09-04"]
    assert [r["week"] for r in utc["stickiness_distribution"]] == ["2026-08-30", "2026-08-30"]
    out = usersignals(
        warehouse,
        "sql",
        "--tz",
        "Pacific/Kiritimati",
        "SELECT min(day) FROM events",
        "--format",
        "csv",
    ).stdout
    assert out.splitlines()[-1] == "2026-09-02"
    retention = json.loads(usersignals(warehouse, "report", "--retention", "--json").stdout)
    assert set(retention) == {"retention", "tz", "week_start"}


def test_tables_state_their_calendar(warehouse: Path) -> None:
    assert "Days in UTC, weeks from Monday." in usersignals(warehouse, "report").stdout
    out = usersignals(
        warehouse, "report", "--retention", "--tz", "Europe/Berlin", "--week-start", "sunday"
    ).stdout
    assert out.splitlines()[0] == "Days in Europe/Berlin, weeks from Sunday."


def test_an_unknown_time_zone_is_one_line_and_exit_2(warehouse: Path) -> None:
    proc = usersignals(warehouse, "report", "--tz", "Mars/Olympus", check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: Invalid tz: 'Mars/Olympus' (not a time zone name such as Europe/Berlin)"
    ]
    proc = usersignals(warehouse, "report", "--live", "--tz", "Europe/Berlin", check=False)
    assert proc.returncode == 2
    assert "the worker keeps UTC days" in proc.stderr


def test_report_by_a_field(warehouse: Path) -> None:
    got = json.loads(usersignals(warehouse, "report", "--json", "--by", "model").stdout)
    plain = json.loads(usersignals(warehouse, "report", "--json").stdout)
    assert got["breakdown"] == {"by": "model", "limit": 20}
    assert {k: v for k, v in got.items() if k not in plain} == {
        k: got[k] for k in ("breakdown", "active_users_by", "feedback_by", "risk_flags_by")
    }
    assert all(got[k] == plain[k] for k in plain)  # the totals are unchanged by --by
    first = [r for r in got["active_users_by"] if r["day"] == "2026-09-01"]
    assert first == [{"day": "2026-09-01", "key": "m-1", "dau": 2, "wau": 2, "mau": 2}]
    out = usersignals(warehouse, "report", "--by", "platform").stdout
    assert "Active users by platform (DAU, WAU, MAU)" in out
    proc = usersignals(warehouse, "report", "--by", "properties.a b", check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: Invalid --by: 'properties.a b' (a properties key has only letters, digits, "
        "_, - and .)"
    ]
    proc = usersignals(warehouse, "report", "--live", "--by", "model", check=False)
    assert proc.returncode == 2
    assert "--by reads the warehouse" in proc.stderr
