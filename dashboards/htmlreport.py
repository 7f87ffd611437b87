"""The report as one self-contained HTML page (``usersignals report --html FILE``).

KPI tiles, a data-as-of line, Vega-Lite charts (built with ``altair``, drawn in the browser
by Vega's SVG renderer from the Vega, Vega-Lite and vega-embed code of ``vl-convert-python``,
inlined once) and the tables. Every number comes from the report object (``report --json``):
the page computes no metric, it only picks rows and writes them for people
(:mod:`usersignals.dashboards.formats`). The page fetches nothing: it opens offline.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import cache
from typing import Any

import altair as alt

from usersignals.dashboards import formats

__all__ = ["CHARTS", "Tile", "charts", "html_report", "javascript", "kpi_tiles"]

CHARTS = (
    "active_users",
    "retention",
    "lifecycle",
    "thumbs_up",
    "arena",
    "flattery_watch",
    "risk_flags",
    "flagged_share",
)
"""The page's charts, in page order (each one a ``<div data-chart=...>``)."""

_TITLES = {
    "active_users": "Active users per day (shaded: incomplete day, data still arriving)",
    "retention": "Retention: share of each first-time cohort active n periods later",
    "lifecycle": "Lifecycle: new, returning, resurrecting (up) and dormant (down) users",
    "thumbs_up": "Thumbs-up rate per model and ISO week, with 95 % intervals",
    "arena": "Arena ratings (Elo scale) with 95 % intervals and ranks",
    "flattery_watch": "Flattery watch: thumbs-up rate and risk flags per 1,000 users "
    "(ringed: flagged week, with its p-values)",
    "risk_flags": "Risk flags by category and severity, per model",
    "flagged_share": "Weekly flagged share of active users, per category (all models)",
}
_SEVERITIES = ("low", "medium", "high", "critical")
_SEVERITY_COLOURS = ("#9ecae1", "#fdae6b", "#e6550d", "#a50f15")
_LIFECYCLE = ("new", "returning", "resurrecting", "dormant")
_LIFECYCLE_COLOURS = ("#2ca02c", "#1f77b4", "#9467bd", "#bbbbbb")
_WIDE, _NARROW, _HEIGHT = 1220, 460, 240
_RED = "#d62728"
_PREVIEW_ROWS = 8


# --- KPI tiles ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tile:
    """One KPI tile: ``value`` on ``day``, and its change against ``previous``.

    Attributes:
        key: Stable name (``dau``, ``wau``, ``mau``, ``stickiness``, ``users_at_risk``,
            ``flagged_share``).
        label: The tile's heading.
        kind: How the numbers are written (``count`` or ``rate``, see ``formats.kind_of``).
        value: The report's number.
        day: The day (or the week's first day) the value is of.
        previous: The report's number for the previous period, or ``None`` when the report
            has none.
        period: The previous period in words (``the day before``).
        note: A line under the value (the category of the flagged share), or ``""``.
    """

    key: str
    label: str
    kind: str
    value: float
    day: str
    previous: float | None
    period: str
    note: str = ""

    @property
    def change(self) -> float | None:
        """``value - previous`` (rates to 6 decimals, as the report's), ``None`` without one."""
        if self.previous is None:
            return None
        if self.kind == "count":
            return self.value - self.previous
        return round(self.value - self.previous, 6)


def _day_before(day: str, days: int) -> str:
    return (date.fromisoformat(day) - timedelta(days=days)).isoformat()


def reference_day(report: dict[str, Any]) -> dict[str, Any] | None:
    """The ``active_users`` row the tiles show: the newest complete day, else the newest."""
    rows = report.get("active_users") or []
    complete = [r for r in rows if r.get("complete", True)]
    row: dict[str, Any] | None = (complete or rows or [None])[-1]
    return row


def kpi_tiles(report: dict[str, Any]) -> list[Tile]:
    """The page's tiles, from the report's rows (none without active users).

    DAU, WAU, MAU and stickiness are those of the newest complete day, against the day
    before, 7 days before, 30 days before and the day before. Users at risk are the users with
    a high or critical flag in the 7 days to that day, against the 7 days before. The weekly
    flagged share is that of the category with the largest share (all models) in the newest
    week ended by that day (else the newest week), against the same category the week before.
    """
    ref = reference_day(report)
    if ref is None:
        return []
    day = ref["day"]
    on = f"on {day}" + ("" if ref.get("complete", True) else " (incomplete day)")
    by_day = {r["day"]: r for r in report.get("active_users", [])}

    def then(days: int, key: str) -> Any:
        row = by_day.get(_day_before(day, days))
        return None if row is None else row[key]

    tiles = [
        Tile("dau", "DAU", "count", ref["dau"], day, then(1, "dau"), "the day before", on),
        Tile("wau", "WAU", "count", ref["wau"], day, then(7, "wau"), "7 days before", on),
        Tile("mau", "MAU", "count", ref["mau"], day, then(30, "mau"), "30 days before", on),
        Tile(
            "stickiness",
            "Stickiness (DAU/MAU)",
            "rate",
            ref["stickiness"],
            day,
            then(1, "stickiness"),
            "the day before",
            on,
        ),
    ]
    at_risk = {r["day"]: r["users"] for r in report.get("users_at_risk_weekly", [])}
    if day in at_risk:
        tiles.append(
            Tile(
                "users_at_risk",
                "Users at risk, last 7 days",
                "count",
                at_risk[day],
                day,
                at_risk.get(_day_before(day, 7)),
                "the 7 days before",
                f"high or critical flag, 7 days to {day}",
            )
        )
    share = _flagged_share_tile(report, day)
    if share is not None:
        tiles.append(share)
    return tiles


def _flagged_share_tile(report: dict[str, Any], day: str) -> Tile | None:
    rows = [
        r
        for r in report.get("wellbeing_weekly", [])
        if r["model"] is None and r["share"] is not None
    ]
    weeks = sorted({r["week"] for r in rows})
    if not weeks:
        return None
    ended = [w for w in weeks if _day_before(w, -6) <= day]
    week = (ended or weeks)[-1]
    this = [r for r in rows if r["week"] == week]
    top = max(this, key=lambda r: r["share"])  # the first category of the largest share
    before = _day_before(week, 7)
    previous = next(
        (r["share"] for r in rows if r["week"] == before and r["category"] == top["category"]),
        None,
    )
    category = str(top["category"]).replace("_", " ")
    note = f"{category}, week of {week}" + ("" if ended else " (in progress)")
    return Tile(
        "flagged_share",
        "Weekly flagged share",
        "rate",
        top["share"],
        week,
        previous,
        "the week before",
        note,
    )


def _tile_html(tile: Tile) -> str:
    write = formats.count if tile.kind == "count" else formats.rate
    delta = tile.change
    if delta is None:
        change_text, change_attr, sign = f"no value {tile.period}", "", "none"
    else:
        written = formats.change(delta, tile.kind)
        change_text = f"{written} vs {tile.period}"
        change_attr = f' data-change="{delta!r}"'
        sign = {"+": "up", formats.MINUS: "down"}.get(written[0], "flat")
    return (
        f'<div class="tile" data-tile="{tile.key}" data-value="{tile.value!r}"{change_attr} '
        f'data-day="{tile.day}"><div class="label">{html.escape(tile.label)}</div>'
        f'<div class="value">{write(tile.value)}</div>'
        f'<div class="change {sign}">{html.escape(change_text)}</div>'
        f'<div class="note">{html.escape(tile.note)}</div></div>'
    )


# --- data as of -----------------------------------------------------------------------------


def as_of_line(report: dict[str, Any], generated_at: datetime) -> str:
    """``Data as of``: the newest event (day), when the page was made, the range, the
    calendar."""
    from usersignals.metrics.periods import DayRange
    from usersignals.warehouse.report import calendar_line

    newest = report.get("newest_event")
    if newest is None:
        days = [r["day"] for r in report.get("events_by_day", []) if r.get("events")]
        newest = f"day {days[-1]}" if days else "none"
    rng = report.get("range") or {}
    described = DayRange.parse(rng.get("from"), rng.get("to")).describe()
    return (
        f"Newest event: {newest}. Generated {generated_at.strftime('%Y-%m-%d %H:%M %Z')}. "
        f"{described[:1].upper()}{described[1:]}. {calendar_line(report)}"
    )


# --- charts ---------------------------------------------------------------------------------


def _data(rows: Sequence[dict[str, Any]]) -> alt.Data:
    data: alt.Data = alt.Data(values=list(rows))  # type: ignore[no-untyped-call]
    return data


def _active_users(report: dict[str, Any]) -> alt.TopLevelMixin | None:
    rows = report.get("active_users") or []
    if not rows:
        return None
    long = [
        {
            "day": r["day"],
            "series": s.upper(),
            "users": r[s],
            "day complete": "yes" if r.get("complete", True) else "no (data still arriving)",
        }
        for r in rows
        for s in ("dau", "wau", "mau")
    ]
    partial = [{"day": r["day"], "label": "incomplete"} for r in rows if not r.get("complete", 1)]
    x = alt.X("day:O", title=None, axis=alt.Axis(labelAngle=-45, labelOverlap=True))
    lines = (
        alt.Chart(_data(long))
        .mark_line(point=True)
        .encode(
            x=x,
            y=alt.Y("users:Q", title="Users"),
            color=alt.Color("series:N", sort=["DAU", "WAU", "MAU"], title=None),
            tooltip=["day:O", "series:N", alt.Tooltip("users:Q", format=","), "day complete:N"],
        )
    )
    layers: list[alt.Chart] = []
    if partial:
        band = alt.Chart(_data(partial)).encode(x=x)
        layers.append(band.mark_rect(color="#e0e0e0").encode(tooltip=["day:O", "label:N"]))
        layers.append(
            band.mark_text(
                baseline="top", dy=4, fontSize=10, color="#555", angle=270, align="right"
            ).encode(text="label:N", y=alt.value(0))
        )
    return alt.layer(*layers, lines).properties(width=_WIDE, height=_HEIGHT)


def _retention(report: dict[str, Any]) -> alt.TopLevelMixin | None:
    rows = report.get("retention") or []
    if not rows:
        return None
    chart: alt.TopLevelMixin = (
        alt.Chart(_data(rows))
        .transform_calculate(retained="datum.users / datum.cohort_users")
        .mark_line(point=True)
        .encode(
            x=alt.X("period:O", title="Periods after the first", axis=alt.Axis(labelAngle=0)),
            y=alt.Y("retained:Q", title="Share of the cohort", axis=alt.Axis(format="%")),
            color=alt.Color("cohort:N", title="Cohort"),
            tooltip=[
                "cohort:N",
                "period:O",
                alt.Tooltip("users:Q", format=","),
                alt.Tooltip("cohort_users:Q", format=","),
                alt.Tooltip("retained:Q", format=".1%"),
            ],
        )
        .properties(width=_NARROW, height=_HEIGHT)
    )
    return chart


def _lifecycle(report: dict[str, Any]) -> alt.TopLevelMixin | None:
    rows = report.get("lifecycle") or []
    if not rows:
        return None
    chart: alt.TopLevelMixin = (
        alt.Chart(_data(rows))
        .transform_calculate(
            drawn="datum.status === 'dormant' ? -datum.users : datum.users",
            order=f"indexof({json.dumps(list(_LIFECYCLE))}, datum.status)",
        )
        .mark_bar()
        .encode(
            x=alt.X("period:O", title=None, axis=alt.Axis(labelAngle=-45)),
            y=alt.Y("drawn:Q", title="Users (dormant below zero)", stack="zero"),
            color=alt.Color(
                "status:N",
                sort=list(_LIFECYCLE),
                scale=alt.Scale(domain=list(_LIFECYCLE), range=list(_LIFECYCLE_COLOURS)),
                title=None,
            ),
            order=alt.Order("order:Q"),
            tooltip=["period:O", "status:N", alt.Tooltip("users:Q", format=",")],
        )
        .properties(width=_NARROW, height=_HEIGHT)
    )
    return chart


def _rated(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in report.get("flattery_watch") or [] if r.get("thumbs_up_rate") is not None]


def _thumbs_up(report: dict[str, Any]) -> alt.TopLevelMixin | None:
    rows = _rated(report)
    if not rows:
        return None
    base = alt.Chart(_data(rows)).encode(
        x=alt.X("week:O", title=None, axis=alt.Axis(labelAngle=0)),
        xOffset=alt.XOffset("model:N"),
        color=alt.Color("model:N", title="Model"),
    )
    tooltip: list[str | alt.Tooltip] = [
        "model:N",
        "week:O",
        alt.Tooltip("thumbs_up_rate:Q", format=".1%", title="thumbs-up rate"),
        alt.Tooltip("thumbs_up_rate_low:Q", format=".1%", title="95 % low"),
        alt.Tooltip("thumbs_up_rate_high:Q", format=".1%", title="95 % high"),
        alt.Tooltip("thumbs_up:Q", format=","),
        alt.Tooltip("thumbs_down:Q", format=","),
    ]
    rules = base.mark_rule(strokeWidth=2).encode(
        y=alt.Y("thumbs_up_rate_low:Q", title="Thumbs-up rate", axis=alt.Axis(format="%")),
        y2="thumbs_up_rate_high:Q",
        tooltip=tooltip,
    )
    points = base.mark_point(filled=True, size=60).encode(
        y=alt.Y("thumbs_up_rate:Q", scale=alt.Scale(zero=False)), tooltip=tooltip
    )
    return alt.layer(rules, points).properties(width=_NARROW, height=_HEIGHT)


def _arena(report: dict[str, Any]) -> alt.TopLevelMixin | None:
    rows = [dict(r, rank_label=f"#{r['rank']}") for r in report.get("arena") or []]
    if not rows:
        return None
    y = alt.Y("model:N", title=None, sort=alt.EncodingSortField("rating", order="descending"))
    tooltip: list[str | alt.Tooltip] = [
        "model:N",
        alt.Tooltip("rating:Q", format=",.1f"),
        alt.Tooltip("ci_low:Q", format=",.1f", title="95 % low"),
        alt.Tooltip("ci_high:Q", format=",.1f", title="95 % high"),
        alt.Tooltip("votes:Q", format=","),
        "rank:O",
    ]
    base = alt.Chart(_data(rows)).encode(y=y, tooltip=tooltip)
    rules = base.mark_rule(strokeWidth=2, color="#1f77b4").encode(
        x=alt.X("ci_low:Q", title="Rating (Elo scale)", scale=alt.Scale(zero=False)),
        x2="ci_high:Q",
    )
    points = base.mark_point(filled=True, size=80, color="#1f77b4").encode(x="rating:Q")
    ranks = base.mark_text(align="left", dx=8, dy=-10, fontWeight="bold").encode(
        x="rating:Q", text="rank_label:N"
    )
    height = max(60, 40 * len(rows))
    return alt.layer(rules, points, ranks).properties(width=_NARROW, height=height)


def _flattery(report: dict[str, Any]) -> alt.TopLevelMixin | None:
    rows = []
    for r in report.get("flattery_watch") or []:
        p_up, p_risk = r.get("p_thumbs_up_rise"), r.get("p_risk_rise")
        label = (
            f"p {formats.p_value(p_up)} / {formats.p_value(p_risk)}"
            if r.get("flagged") and p_up is not None and p_risk is not None
            else ""
        )
        rows.append(dict(r, p_label=label, state="flagged" if r.get("flagged") else "not flagged"))
    if not rows:
        return None
    tooltip: list[str | alt.Tooltip] = [
        "model:N",
        "week:O",
        "state:N",
        alt.Tooltip("thumbs_up_rate:Q", format=".1%", title="thumbs-up rate"),
        alt.Tooltip("risk_flags_per_1k:Q", format=",.1f", title="risk flags per 1,000"),
        alt.Tooltip("p_thumbs_up_rise:Q", format=".3f", title="p (thumbs-up rise)"),
        alt.Tooltip("p_risk_rise:Q", format=".3f", title="p (risk rise)"),
    ]

    def panel(field: str, title: str, fmt: str) -> alt.LayerChart | alt.FacetChart:
        base = alt.Chart(_data(rows)).encode(
            x=alt.X("week:O", title=None, axis=alt.Axis(labelAngle=0)),
            color=alt.Color("model:N", title="Model"),
            tooltip=tooltip,
        )
        y = alt.Y(f"{field}:Q", title=title, axis=alt.Axis(format=fmt))
        line = base.mark_line(point=True).encode(y=y)
        layers = [line]
        if any(r.get("flagged") for r in rows):  # an empty layer would have no y extent
            flagged = base.transform_filter("datum.flagged")
            layers.append(
                flagged.mark_point(size=400, strokeWidth=3).encode(y=y, color=alt.value(_RED))
            )
            layers.append(
                flagged.mark_text(dy=-18, fontWeight="bold").encode(
                    y=y, text="p_label:N", color=alt.value(_RED)
                )
            )
        return alt.layer(*layers).properties(width=_NARROW, height=_HEIGHT)

    return alt.hconcat(
        panel("thumbs_up_rate", "Thumbs-up rate", "%"),
        panel("risk_flags_per_1k", "Risk flags per 1,000 users", ",.1f"),
    )


def _risk_flags(report: dict[str, Any]) -> alt.TopLevelMixin | None:
    breakdown = report.get("breakdown") or {}
    if breakdown.get("by") == "model" and report.get("risk_flags_by"):
        rows = [
            dict(r, model=r["key"] if r["key"] is not None else "(no model)")
            for r in report["risk_flags_by"]
        ]
    else:
        rows = [dict(r, model="all models") for r in report.get("risk_flags_daily") or []]
    if not rows:
        return None
    chart: alt.TopLevelMixin = (
        alt.Chart(_data(rows))
        .mark_bar()
        .encode(
            x=alt.X("sum(flags):Q", title="Risk flags"),
            y=alt.Y("category:N", title=None),
            color=alt.Color(
                "severity:N",
                sort=list(_SEVERITIES),
                scale=alt.Scale(domain=list(_SEVERITIES), range=list(_SEVERITY_COLOURS)),
                title="Severity",
            ),
            order=alt.Order("severity_order:Q"),
            tooltip=[
                "model:N",
                "category:N",
                "severity:N",
                alt.Tooltip("sum(flags):Q", title="flags"),
            ],
        )
        .transform_calculate(
            severity_order=f"indexof({json.dumps(list(_SEVERITIES))}, datum.severity)"
        )
        .properties(width=320, height=180)
        .facet(facet=alt.Facet("model:N", title=None), columns=3)
    )
    return chart


def _flagged_share(report: dict[str, Any]) -> alt.TopLevelMixin | None:
    rows = [r for r in report.get("wellbeing_weekly") or [] if r["model"] is None]
    if not rows:
        return None
    chart: alt.TopLevelMixin = (
        alt.Chart(_data(rows))
        .mark_line(point=True)
        .encode(
            x=alt.X("week:O", title="Week from", axis=alt.Axis(labelAngle=0)),
            y=alt.Y("share:Q", title="Share of weekly active users", axis=alt.Axis(format=".1%")),
            color=alt.Color("category:N", title="Category"),
            tooltip=[
                "week:O",
                "category:N",
                alt.Tooltip("flagged_users:Q", format=","),
                alt.Tooltip("active_users:Q", format=","),
                alt.Tooltip("share:Q", format=".2%"),
                alt.Tooltip("share_high:Q", format=".2%", title="share (high, critical)"),
            ],
        )
        .properties(width=_NARROW, height=_HEIGHT)
    )
    return chart


_BUILDERS = {
    "active_users": _active_users,
    "retention": _retention,
    "lifecycle": _lifecycle,
    "thumbs_up": _thumbs_up,
    "arena": _arena,
    "flattery_watch": _flattery,
    "risk_flags": _risk_flags,
    "flagged_share": _flagged_share,
}


def charts(report: dict[str, Any]) -> dict[str, dict[str, Any] | None]:
    """The Vega-Lite spec of each chart in :data:`CHARTS` (``None``: the report has no rows
    for it, e.g. retention in a live report)."""
    out: dict[str, dict[str, Any] | None] = {}
    for name in CHARTS:
        chart = _BUILDERS[name](report)
        if chart is None:
            out[name] = None
            continue
        spec = chart.to_dict()
        spec.pop("$schema", None)  # a name, never fetched: left out so the page has no URL
        out[name] = spec
    return out


@cache
def javascript() -> str:
    """Vega, Vega-Lite and vega-embed, bundled by ``vl-convert-python`` (the Vega-Lite version
    altair writes), for one inline ``<script>``."""
    import vl_convert

    wanted = ".".join(alt.SCHEMA_VERSION.lstrip("v").split(".")[:2])
    version = wanted if wanted in vl_convert.get_vegalite_versions() else None
    return vl_convert.javascript_bundle("window.vegaEmbed = vegaEmbed;", vl_version=version)


# --- tables ---------------------------------------------------------------------------------


def _columns(row: dict[str, Any]) -> list[tuple[str, str | None, str | None]]:
    """(key, low key, high key) of a row's columns: intervals share their value's column."""
    out: list[tuple[str, str | None, str | None]] = []
    taken: set[str] = set()
    for key in row:
        if key in taken:
            continue
        low, high = f"{key}_low", f"{key}_high"
        if key == "rating" and "ci_low" in row and "ci_high" in row:
            low, high = "ci_low", "ci_high"
        if low in row and high in row:
            out.append((key, low, high))
            taken |= {low, high}
        else:
            out.append((key, None, None))
    return out


def _td(row: dict[str, Any], key: str, low: str | None, high: str | None) -> str:
    value = row[key]
    attrs = f' data-key="{key}" data-value="{html.escape(json.dumps(value))}"'
    if low is None or high is None:
        text = formats.cell(key, value)
    else:
        attrs += (
            f' data-low-key="{low}" data-low="{html.escape(json.dumps(row[low]))}"'
            f' data-high-key="{high}" data-high="{html.escape(json.dumps(row[high]))}"'
        )
        if value is None or row[low] is None or row[high] is None:
            text = formats.cell(key, value)
        else:
            text = formats.interval(value, row[low], row[high], formats.kind_of(key))
    align = "text" if formats.kind_of(key) in ("text", "flag") else "num"
    return f'<td class="{align}"{attrs}>{html.escape(text)}</td>'


def _table(rows: Sequence[dict[str, Any]], role: str) -> str:
    columns = _columns(rows[0])
    head = "".join(
        f"<th>{html.escape(formats.header(k) + (' [95 %]' if low else ''))}</th>"
        for k, low, _ in columns
    )
    body = "".join(
        "<tr>" + "".join(_td(r, k, low, high) for k, low, high in columns) + "</tr>" for r in rows
    )
    return f'<table data-rows="{role}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def table_section(key: str, title: str, rows: Sequence[dict[str, Any]]) -> str:
    """One table: all rows when few, else the newest rows and the full rows in a fold."""
    head = f'<section class="table" data-table="{key}"><h3>{html.escape(title)}</h3>'
    if not rows:
        return head + "<p>No rows.</p></section>"
    if len(rows) <= _PREVIEW_ROWS + 4:
        return head + _table(rows, "all") + "</section>"
    return (
        head
        + f"<p class='preview'>The last {_PREVIEW_ROWS} of {len(rows):,} rows.</p>"
        + _table(rows[-_PREVIEW_ROWS:], "preview")
        + f"<details><summary>All {len(rows):,} rows</summary>{_table(rows, 'all')}</details>"
        + "</section>"
    )


def _tables(report: dict[str, Any]) -> list[str]:
    from usersignals.warehouse.report import REPORT_KEYS, TITLES, breakdown_titles

    keyed = [(k, TITLES[k]) for k in REPORT_KEYS]
    if "retention" in report:  # from the warehouse only
        from usersignals.warehouse.history import HISTORY_KEYS, HISTORY_TITLES

        keyed += [(k, HISTORY_TITLES[k]) for k in HISTORY_KEYS]
    keyed += breakdown_titles(report)
    return [table_section(k, title, report.get(k) or []) for k, title in keyed]


# --- the page -------------------------------------------------------------------------------

_STYLE = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;background:#fff}
h1{margin:0 0 4px 0;font-size:24px}h2{margin:28px 0 8px 0;font-size:19px}
h3{margin:20px 0 6px 0;font-size:15px}
.asof{color:#555;font-size:13px;margin:0 0 16px 0}
.tiles{display:grid;grid-template-columns:repeat(6,1fr);gap:12px;margin-bottom:8px}
.tile{border:1px solid #ddd;border-radius:6px;padding:10px 12px;background:#fafafa}
.tile .label{font-size:13px;color:#555}.tile .value{font-size:28px;font-weight:600}
.tile .change{font-size:13px}.tile .up{color:#1a7f37}.tile .down{color:#b42318}
.tile .note,.tile .day{font-size:12px;color:#777}
.charts{display:flex;flex-wrap:wrap;gap:8px 32px}
figure{margin:0 0 12px 0}figcaption{font-weight:600;font-size:14px;margin-bottom:4px}
.missing{color:#777;font-size:13px}.failed{color:#b42318}
table{border-collapse:collapse;margin:4px 0 8px 0;font-size:13px}
th,td{border:1px solid #ddd;padding:3px 8px}th{background:#f2f2f2;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.preview{font-size:12px;color:#777;margin:0}summary{cursor:pointer;font-size:13px}
"""

_EMBED = """
(function () {
  var pending = [];
  document.querySelectorAll("[data-chart]").forEach(function (el) {
    var source = document.getElementById("spec-" + el.dataset.chart);
    if (!source) { return; }
    var spec = JSON.parse(source.textContent);
    pending.push(vegaEmbed(el, spec, {renderer: "svg", actions: false, mode: "vega-lite"})
      .then(function () {
        el.dataset.marks = String(el.querySelectorAll("g.role-mark > *").length);
        el.dataset.rendered = "true";
      })
      .catch(function (error) {
        el.dataset.rendered = "failed";
        el.textContent = "This chart could not be drawn: " + error;
        el.className += " failed";
        console.error(error);
      }));
  });
  Promise.all(pending).then(function () { document.body.dataset.charts = "done"; });
})();
"""


def _script_json(value: Any) -> str:
    """JSON for a ``<script type="application/json">`` element (no ``</`` to end it)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).replace("</", "<\\/")


def html_report(report: dict[str, Any], source: str, generated_at: datetime) -> str:
    """The report as one self-contained HTML page: tiles, data-as-of line, charts, tables.

    Args:
        report: The report object (``report --json``).
        source: Where it comes from, in words (``warehouse demo/warehouse``).
        generated_at: When the page is made (an aware time: its zone is written).
    """
    tiles = kpi_tiles(report)
    specs = charts(report)
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>usersignals report</title><style>{_STYLE}</style></head><body>",
        "<h1>usersignals report</h1>",
        f'<p class="asof" data-asof>{html.escape(as_of_line(report, generated_at))} '
        f"Source: {html.escape(source)}.</p>",
    ]
    if tiles:
        parts.append('<div class="tiles">' + "".join(_tile_html(t) for t in tiles) + "</div>")
    parts.append('<h2>Charts</h2><div class="charts">')
    for name in CHARTS:
        spec = specs[name]
        title = html.escape(_TITLES[name])
        if spec is None:
            parts.append(
                f'<figure data-figure="{name}"><figcaption>{title}</figcaption>'
                '<p class="missing">No rows for this chart in this report.</p></figure>'
            )
            continue
        parts.append(
            f'<figure data-figure="{name}"><figcaption>{title}</figcaption>'
            f'<div class="chart" data-chart="{name}"></div>'
            f'<script type="application/json" id="spec-{name}">{_script_json(spec)}</script>'
            "</figure>"
        )
    parts.append("</div><h2>Tables</h2>")
    parts += _tables(report)
    parts += [f"<script>{javascript()}</script>", f"<script>{_EMBED}</script>", "</body></html>"]
    return "\n".join(parts)
