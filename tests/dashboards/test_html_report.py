"""The HTML report page: number formats, KPI tiles, chart specs, tables, no URL to fetch.

The page opened in Chromium (every chart drawn, the numbers equal to ``report --json``, a
screenshot kept) is ``tests/cli/test_sql_report.py::test_report_html_renders_in_chromium``,
with the helpers of this module (:func:`demo_warehouse`, :func:`open_in_chromium`,
:class:`PageNumbers`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from tests.dashboards.flattery_scenario import definition_rows
from tests.warehouse.parquetfixtures import write_warehouse
from usersignals.dashboards import formats
from usersignals.dashboards.htmlreport import CHARTS, charts, html_report, javascript, kpi_tiles
from usersignals.ingest.contract import decode_record
from usersignals.ingest.synthetic import GeneratorConfig, generate

GENERATED = datetime(2026, 12, 2, 9, 30, tzinfo=UTC)
ARTIFACTS_VAR = "USERSIGNALS_TEST_ARTIFACTS"
"""Set to a directory: the Chromium test copies its screenshot there too."""

LIBRARY_URLS = frozenset(
    {
        # XML namespaces the SVG renderer writes
        "http://www.w3.org/1999/xlink",
        "http://www.w3.org/2000/svg",
        "http://www.w3.org/2000/xmlns/",
        # a link in a Vega-Lite warning message
        "https://github.com/vega/vega-lite/issues/2415",
        # vega-embed's "open in the editor" action (the page turns actions off)
        "https://vega.github.io/editor/",
        # the name of Vega's schema, written into specs it compiles, never fetched
        "https://vega.github.io/schema/vega/v6.json",
    }
)
"""Every URL in the inlined Vega, Vega-Lite and vega-embed code: strings, none fetched."""

_URL = re.compile(r"https?://[^\s\"'`<>)\\]*")


def _day(n: int) -> str:
    return (date(2026, 9, 1) + timedelta(days=n)).isoformat()


def small_report() -> dict[str, Any]:
    """A hand-made report object: 40 days, the newest one incomplete, flagged weeks."""
    active = [
        {
            "day": _day(n),
            "dau": 100 + n,
            "wau": 500 + 2 * n,
            "mau": 1000 + 10 * n,
            "stickiness": round((100 + n) / (1000 + 10 * n), 6),
            "complete": n < 39,
            "wau_complete": 6 <= n < 39,
            "mau_complete": 29 <= n < 39,
        }
        for n in range(40)
    ]
    return {
        "active_users": active,
        "events_by_day": [
            {"day": _day(n), "events": 1000 + n, "complete": n < 39} for n in range(40)
        ],
        "feedback_by_model": [
            {"day": _day(0), "model": "m-1", "thumbs_up": 1234, "thumbs_down": 5}
        ],
        "risk_flags_daily": [
            {"day": _day(0), "category": "mania", "severity": "high", "flags": 3, "users": 2},
            {"day": _day(1), "category": "self_harm", "severity": "low", "flags": 1, "users": 1},
        ],
        "users_at_risk_weekly": [
            {"day": _day(n), "users": n % 5, "complete": n < 39} for n in range(40)
        ],
        "rejected": [{"reason": "not_json", "count": 1}],
        "arena": [
            {"model": "m-1", "rating": 1026.64, "ci_low": 1004.2, "ci_high": 1048.94,
             "votes": 1500, "rank": 1},
            {"model": "m-2", "rating": 973.36, "ci_low": 951.06, "ci_high": 995.8,
             "votes": 1500, "rank": 2},
        ],
        "flattery_watch": definition_rows(),
        "range": {"from": None, "to": None},
        "tz": "UTC",
        "week_start": "monday",
        "retention": [
            {"cohort": "2026-08-31", "period": p, "cohort_users": 10, "users": u,
             "users_on_or_after": after}
            for p, u, after in ((0, 10, 10), (1, 4, 5))
        ],
        "lifecycle": [
            {"period": "2026-08-31", "status": s, "users": u}
            for s, u in (("new", 10), ("returning", 0), ("resurrecting", 0), ("dormant", 0))
        ],
        "stickiness_distribution": [],
        "sessions_daily": [],
        "wellbeing_weekly": [
            {"week": w, "model": m, "category": c, "flagged_users": f, "flagged_users_high": 0,
             "active_users": 1000, "share": f / 1000, "share_high": 0.0}
            for w, fs in (("2026-09-21", (3, 9)), ("2026-09-28", (4, 7)), ("2026-10-05", (1, 20)))
            for m in (None, "m-1")
            for c, f in zip(("mania", "self_harm"), fs, strict=True)
        ],
        "risk_concentration": [],
    }  # fmt: skip


# --- formats ----------------------------------------------------------------------------------


def test_numbers_are_written_for_people() -> None:
    assert formats.count(1234567) == "1,234,567"
    assert formats.count(-3) == "\u22123"
    assert formats.rate(0.638932) == "63.9 %"
    assert formats.rate(1.0) == "100.0 %"
    assert formats.rating(1026.64) == "1,026.6"
    assert formats.interval(1026.64, 1004.2, 1048.94) == "1,026.6 [1,004.2 \u2013 1,048.9]"
    assert formats.interval(0.6389, 0.6009, 0.6753, "rate") == "63.9 % [60.1 % \u2013 67.5 %]"
    assert formats.per_1k(13.071895) == "13.1"
    assert formats.p_value(0.012674) == "0.013"
    assert formats.p_value(0.0004) == "< 0.001"
    assert formats.change(12, "count") == "+12"
    assert formats.change(-1234, "count") == "\u22121,234"
    assert formats.change(0, "count") == "\u00b10"
    assert formats.change(0.004, "rate") == "+0.4 pp"
    assert formats.change(-0.0004, "rate") == "\u00b10.0 pp"
    assert formats.change(-0.0123, "rate") == "\u22121.2 pp"


def test_headers_and_cells() -> None:
    assert [formats.header(k) for k in ("dau", "thumbs_up_rate", "risk_flags_per_1k")] == [
        "DAU",
        "Thumbs-up rate",
        "Risk flags per 1,000 users",
    ]
    assert formats.header("some_new_column") == "Some new column"
    assert formats.cell("stickiness", 0.145078) == "14.5 %"
    assert formats.cell("events", 2299) == "2,299"
    assert formats.cell("complete", False) == "partial"
    assert formats.cell("complete", True) == ""
    assert formats.cell("flagged", True) == "yes"
    assert formats.cell("p_risk_rise", None) == "-"
    assert formats.cell("model", "m-5.1") == "m-5.1"
    assert formats.cell("duration_p50_s", 652.54) == "652.5"


# --- tiles ------------------------------------------------------------------------------------


def test_tiles_are_the_newest_complete_day_against_the_previous_periods() -> None:
    report = small_report()
    got = {t.key: (t.value, t.day, t.previous, t.change, t.period) for t in kpi_tiles(report)}
    day = _day(38)  # _day(39) is incomplete
    assert got == {
        "dau": (138, day, 137, 1, "the day before"),
        "wau": (576, day, 562, 14, "7 days before"),
        "mau": (1380, day, 1080, 300, "30 days before"),
        "stickiness": (0.1, day, 0.1, 0.0, "the day before"),
        "users_at_risk": (3, day, 1, 2, "the 7 days before"),
        # the week of 2026-10-05 ends after the day: the share is 2026-09-28's largest
        "flagged_share": (0.007, "2026-09-28", 0.009, -0.002, "the week before"),
    }
    shares = {t.key: t for t in kpi_tiles(report)}["flagged_share"]
    assert shares.note == "self harm, week of 2026-09-28"


def test_a_tile_without_a_previous_period_says_so() -> None:
    report = small_report()
    report["active_users"] = report["active_users"][:5]
    tiles = {t.key: t for t in kpi_tiles(report)}
    assert tiles["mau"].previous is None
    assert tiles["mau"].change is None
    page = html_report(report, "test", GENERATED)
    assert 'data-tile="mau" data-value="1040" data-day="2026-09-05"' in page
    assert "no value 30 days before" in page
    assert kpi_tiles({"active_users": []}) == []


# --- charts -----------------------------------------------------------------------------------


def _layers(
    spec: dict[str, Any], data: dict[str, Any] | None = None
) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """The unit specs under ``spec``, each with its rows (inherited from the parents)."""
    data = spec.get("data", data)
    parts = spec.get("layer", []) + spec.get("hconcat", [])
    if not parts:
        assert data is not None
        return [(spec, list(data["values"]))]
    return [unit for part in parts for unit in _layers(part, data)]


def test_every_chart_has_a_spec_from_the_report_rows() -> None:
    report = small_report()
    specs = charts(report)
    assert list(specs) == list(CHARTS)
    assert all(spec is not None and "$schema" not in spec for spec in specs.values())
    active = specs["active_users"]
    assert active is not None
    marks = [(layer["mark"]["type"], len(rows)) for layer, rows in _layers(active)]
    # the shaded band and its label over the one incomplete day, then 3 series of 40 days
    assert marks == [("rect", 1), ("text", 1), ("line", 120)]
    flattery = specs["flattery_watch"]
    assert flattery is not None
    texts = [rows for layer, rows in _layers(flattery) if layer["mark"]["type"] == "text"]
    assert len(texts) == 2  # one label per panel, over the flagged rows only
    flagged = [r for r in report["flattery_watch"] if r["flagged"]]
    labels = {r["p_label"] for r in texts[0] if r["flagged"]}
    assert labels == {
        f"p {formats.p_value(r['p_thumbs_up_rise'])} / {formats.p_value(r['p_risk_rise'])}"
        for r in flagged
    }
    assert len(flagged) >= 1


def test_a_live_report_has_no_history_charts() -> None:
    report = {k: v for k, v in small_report().items() if k not in ("retention", "lifecycle")}
    report.pop("wellbeing_weekly")
    page = html_report(report, "worker at http://localhost:8000", GENERATED)
    for name in ("retention", "lifecycle", "flagged_share"):
        assert f'<figure data-figure="{name}"><figcaption>' in page
        assert f'data-chart="{name}"' not in page
    assert page.count("No rows for this chart in this report.") == 3


# --- the page ---------------------------------------------------------------------------------


def test_the_page_fetches_nothing() -> None:
    page = html_report(small_report(), "warehouse demo/warehouse", GENERATED)
    bundle = javascript()
    assert page.count(bundle) == 1  # the library code is inlined once
    assert "http" not in page.replace(bundle, "")
    assert set(_URL.findall(bundle)) == LIBRARY_URLS
    own = page.replace(bundle, "")  # vega-embed's own code writes <img src=...> for exports
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)=", own)


def test_the_page_states_the_data_it_shows() -> None:
    page = html_report(small_report(), "warehouse demo/warehouse", GENERATED)
    assert (
        "Newest event: day 2026-10-10. Generated 2026-12-02 09:30 UTC. Range: every day with "
        "data. Days in UTC, weeks from Monday. Source: warehouse demo/warehouse."
    ) in page


def test_tables_have_human_headers_rounded_numbers_and_the_full_rows() -> None:
    report = small_report()
    numbers = PageNumbers.of(html_report(report, "test", GENERATED))
    for key, rows in numbers.tables.items():
        assert rows == report[key], key
    assert "stickiness_distribution" not in numbers.tables  # "No rows."
    assert numbers.headers["arena"] == ["Model", "Rating [95 %]", "Votes", "Rank"]
    assert numbers.texts["arena"][0] == ["m-1", "1,026.6 [1,004.2 \u2013 1,048.9]", "1,500", "1"]
    assert numbers.texts["feedback_by_model"] == [["2026-09-01", "m-1", "1,234", "5"]]
    assert numbers.texts["active_users"][-1] == [
        "2026-10-10",
        "139",
        "578",
        "1,390",
        "10.0 %",
        "partial",
        "partial",
        "partial",
    ]
    assert numbers.folded == {"active_users", "events_by_day", "users_at_risk_weekly"}
    assert numbers.tiles["dau"] == {"value": 138, "change": 1, "day": "2026-10-09"}


# --- helpers for the page in Chromium -------------------------------------------------------------


@dataclass
class PageNumbers:
    """What a page (as written, or as Chromium's DOM) shows: tiles, tables, charts."""

    tiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    headers: dict[str, list[str]] = field(default_factory=dict)
    texts: dict[str, list[list[str]]] = field(default_factory=dict)
    folded: set[str] = field(default_factory=set)
    charts: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def of(cls, page: str) -> PageNumbers:
        parser = _PageParser()
        parser.feed(page)
        return parser.numbers


class _PageParser(HTMLParser):
    _DRAWN = frozenset({"path", "rect", "line", "circle", "text"})

    def __init__(self) -> None:
        super().__init__()
        self.numbers = PageNumbers()
        self._table: str | None = None
        self._role = ""
        self._in_details = False
        self._row: dict[str, Any] | None = None
        self._texts: list[str] | None = None
        self._cell: list[str] | None = None
        self._header: list[str] | None = None
        self._chart: str | None = None
        self._depth = 0
        self._in_text = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if self._chart is not None:
            self._depth += tag != "br"
            found = self.numbers.charts[self._chart]
            found["svg"] += tag == "svg"
            found["drawn"] += tag in self._DRAWN
            if tag == "text":
                self._in_text = True
                found["text"].append("")
            return
        if "data-tile" in a:
            self.numbers.tiles[a["data-tile"]] = {
                "value": json.loads(a["data-value"]),
                "change": json.loads(a["data-change"]) if "data-change" in a else None,
                "day": a["data-day"],
            }
        elif "data-chart" in a:
            self._chart, self._depth = a["data-chart"], 1
            self.numbers.charts[self._chart] = {
                "rendered": a.get("data-rendered"),
                "marks": int(a.get("data-marks", "0")),
                "svg": 0,
                "drawn": 0,
                "text": [],
            }
        elif "data-table" in a:
            self._table = a["data-table"]
        elif tag == "details" and self._table:
            self._in_details = True
            self.numbers.folded.add(self._table)
        elif tag == "table":
            self._role = a["data-rows"]
        elif tag == "thead":
            self._header = []
        elif tag == "tr" and self._header is None and self._role == "all":
            self._row, self._texts = {}, []
        elif tag == "td" and self._row is not None:
            self._row[a["data-key"]] = json.loads(a["data-value"])
            if "data-low-key" in a:
                self._row[a["data-low-key"]] = json.loads(a["data-low"])
                self._row[a["data-high-key"]] = json.loads(a["data-high"])
            self._cell = []
        elif tag == "th" and self._header is not None:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if self._chart is not None:
            self._in_text = self._in_text and tag != "text"
            self._depth -= 1
            if self._depth == 0:
                self._chart = None
            return
        if tag == "section":
            self._table, self._in_details = None, False
        elif tag == "thead" and self._table and self._header is not None:
            self.numbers.headers[self._table] = self._header
            self._header = None
        elif tag == "th" and self._header is not None and self._cell is not None:
            self._header.append("".join(self._cell))
            self._cell = None
        elif tag == "td" and self._cell is not None and self._texts is not None:
            self._texts.append("".join(self._cell))
            self._cell = None
        elif tag == "tr" and self._row is not None and self._table and self._texts is not None:
            self.numbers.tables.setdefault(self._table, []).append(self._row)
            self.numbers.texts.setdefault(self._table, []).append(self._texts)
            self._row = self._texts = None

    def handle_data(self, data: str) -> None:
        if self._chart is not None and self._in_text:
            self.numbers.charts[self._chart]["text"][-1] += data
        elif self._cell is not None:
            self._cell.append(data)


def demo_warehouse(root: Path, users: int = 3000) -> Path:
    """A warehouse of generated traffic (``make demo``'s: 21 days, seed 7, to 2026-11-30; the
    warm model is flagged), written as the loader would; the newest day is incomplete."""
    now = datetime(2026, 12, 1, 12, tzinfo=UTC)
    events = []
    for line in generate(GeneratorConfig(users=users, days=21, seed=7, end=date(2026, 11, 30))):
        events += decode_record(line, now=now)[0]
    write_warehouse(root, events, per_record=50, per_flush=40)
    return root


@dataclass(frozen=True)
class Rendered:
    """A page opened in headless Chromium."""

    dom: str
    console: list[str]
    screenshot: Path


def open_in_chromium(chromium: str, page: Path, out: Path, height: int = 900) -> Rendered:
    """``page`` in headless Chromium at 1400 by ``height`` pixels: its DOM once the charts are
    drawn, its console messages and a screenshot (``out/report.png``, copied to
    ``$USERSIGNALS_TEST_ARTIFACTS`` when set). Host names resolve to nothing: a page that
    fetched would log errors."""
    base = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        f"--user-data-dir={out / 'profile'}",
        f"--window-size=1400,{height}",
        "--virtual-time-budget=15000",
        "--enable-logging=stderr",
        "--v=0",
    ]
    dumped = subprocess.run(
        [*base, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120
    )
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    shot = out / "report.png"
    taken = subprocess.run(
        [*base, f"--screenshot={shot}", page.as_uri()], capture_output=True, text=True, timeout=120
    )
    assert taken.returncode == 0, taken.stderr[-2000:]
    artifacts = os.environ.get(ARTIFACTS_VAR)
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(artifacts) / "report.png")
    console = [
        line
        for line in (dumped.stderr + taken.stderr).splitlines()
        if ":CONSOLE" in line or "Uncaught" in line
    ]
    return Rendered(dom=dumped.stdout, console=console, screenshot=shot)
