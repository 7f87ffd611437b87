"""Grafana dashboards as data: a small typed builder and its JSON.

Frozen dataclasses (:class:`Datasource`, :class:`PromQuery`, :class:`SqlQuery`, :class:`Panel`,
:class:`Row`) let each panel say only what it shows; :func:`dashboard` lays them out on Grafana's
24-column grid. The two dashboards themselves are declared in :mod:`.panels`:

* ``usersignals-live``: the stream workers' series in Prometheus.
* ``usersignals-history``: the warehouse views through Grafana's DuckDB datasource
  (``motherduck-duckdb-datasource``), whose ``initSql`` creates the views over the Parquet files
  (:func:`.provisioning.duckdb_init_sql`), so every panel's SQL is a query over the warehouse's
  own views.

:func:`build_dashboards` returns the dashboard JSON objects; :mod:`.provisioning` writes them
with Grafana's provisioning files. The committed files under ``grafana/`` are its output.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "DUCKDB",
    "GRAFANA_DIR",
    "INCOMPLETE",
    "PROMETHEUS",
    "Datasource",
    "Panel",
    "PromQuery",
    "Row",
    "SqlQuery",
    "build_dashboards",
    "dashboard",
    "expand_macros",
    "panel_specs",
    "queries",
]

GRAFANA_DIR = Path(__file__).with_name("grafana")
"""Where the generated dashboards and provisioning files are committed."""

SCHEMA_VERSION = 41


@dataclass(frozen=True)
class Datasource:
    """A provisioned datasource, referred to by plugin type and a fixed uid."""

    type: str
    uid: str
    name: str

    def ref(self) -> dict[str, str]:
        return {"type": self.type, "uid": self.uid}


PROMETHEUS = Datasource("prometheus", "usersignals-prometheus", "usersignals Prometheus")
DUCKDB = Datasource("motherduck-duckdb-datasource", "usersignals-duckdb", "usersignals warehouse")


@dataclass(frozen=True)
class PromQuery:
    """A PromQL target; ``legend`` is Grafana's legend template (``{{model}}``)."""

    expr: str
    legend: str = ""
    instant: bool = False

    datasource = PROMETHEUS

    def target(self, ref_id: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "refId": ref_id,
            "datasource": PROMETHEUS.ref(),
            "editorMode": "code",
            "expr": self.expr,
            "range": not self.instant,
            "instant": self.instant,
            "format": "table" if self.instant else "time_series",
        }
        if self.legend:
            out["legendFormat"] = self.legend
        return out


@dataclass(frozen=True)
class SqlQuery:
    """A DuckDB target over the warehouse views.

    ``columns`` are the result's column names, in order (the tests run every query and compare).
    ``time_series`` results have a ``time`` column first, ascending, and string columns as
    labels (Grafana turns such a long frame into one series per label set).
    """

    sql: str
    columns: tuple[str, ...]
    format: Literal["time_series", "table"] = "table"

    datasource = DUCKDB

    def target(self, ref_id: str) -> dict[str, Any]:
        return {
            "refId": ref_id,
            "datasource": DUCKDB.ref(),
            "editorMode": "code",
            "format": self.format,
            "rawQuery": True,
            "rawSql": self.sql,
        }


Query = PromQuery | SqlQuery
Kind = Literal["timeseries", "table", "stat"]


@dataclass(frozen=True)
class Panel:
    """One panel: a visualisation of one or more queries of the same datasource."""

    title: str
    kind: Kind
    queries: tuple[Query, ...]
    description: str = ""
    unit: str = ""
    width: int = 12
    height: int = 8
    marks_incomplete: bool = False
    """Fields whose display name holds ``(incomplete)`` (:data:`INCOMPLETE`: a wide frame's
    field name, or a long frame's label value) are drawn dashed, grey, with points: the values
    of incomplete days, a series apart from the complete days' one."""

    def json(self, panel_id: int, x: int, y: int) -> dict[str, Any]:
        defaults: dict[str, Any] = {}
        if self.unit:
            defaults["unit"] = self.unit
        if self.kind == "timeseries":
            defaults["custom"] = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10}
        overrides: list[dict[str, Any]] = []
        if self.marks_incomplete:
            overrides.append(_INCOMPLETE_OVERRIDE)
        out: dict[str, Any] = {
            "type": self.kind,
            "id": panel_id,
            "title": self.title,
            "datasource": self.queries[0].datasource.ref(),
            "gridPos": {"h": self.height, "w": self.width, "x": x, "y": y},
            "targets": [q.target(chr(ord("A") + i)) for i, q in enumerate(self.queries)],
            "options": _OPTIONS[self.kind],
            "fieldConfig": {"defaults": defaults, "overrides": overrides},
        }
        if self.description:
            out["description"] = self.description
        return out


INCOMPLETE = " (incomplete)"
"""The name suffix of a field holding only incomplete days' values (NULL on complete days)."""

_INCOMPLETE_OVERRIDE: dict[str, Any] = {
    # a wide frame's field is named "dau (incomplete)"; a long frame's label value ends so,
    # and Grafana's display name of its field is the name and the labels, in some order
    "matcher": {"id": "byRegexp", "options": ".*" + re.escape(INCOMPLETE.strip()) + ".*"},
    "properties": [
        {"id": "color", "value": {"mode": "fixed", "fixedColor": "#8e8e8e"}},
        {"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}},
        {"id": "custom.showPoints", "value": "always"},
        {"id": "custom.pointSize", "value": 6},
        {"id": "custom.fillOpacity", "value": 0},
    ],
}


@dataclass(frozen=True)
class Row:
    """A titled row; the panels after it, up to the next row, belong to it."""

    title: str


_OPTIONS: dict[str, dict[str, Any]] = {
    "timeseries": {
        "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True, "calcs": []},
        "tooltip": {"mode": "multi", "sort": "desc"},
    },
    "table": {"frameIndex": 0, "showHeader": True, "cellHeight": "sm"},
    "stat": {
        "graphMode": "area",
        "colorMode": "value",
        "justifyMode": "auto",
        "textMode": "auto",
        "wideLayout": True,
        "showPercentChange": False,
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "percentChangeColorMode": "standard",
        "orientation": "auto",
    },
}


def dashboard(
    uid: str,
    title: str,
    description: str,
    items: Sequence[Panel | Row],
    *,
    time_from: str,
    refresh: str = "",
) -> dict[str, Any]:
    """A classic dashboard JSON object; panels flow left to right, 24 grid columns a line."""
    panels: list[dict[str, Any]] = []
    x = y = line_height = 0
    for panel_id, item in enumerate(items, start=1):
        if isinstance(item, Row) or x + item.width > 24:
            x, y, line_height = 0, y + line_height, 0
        if isinstance(item, Row):
            panels.append(
                {
                    "type": "row",
                    "id": panel_id,
                    "title": item.title,
                    "collapsed": False,
                    "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                    "panels": [],
                }
            )
            y += 1
            continue
        panels.append(item.json(panel_id, x, y))
        x += item.width
        line_height = max(line_height, item.height)
    out: dict[str, Any] = {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["usersignals"],
        "timezone": "utc",
        "editable": True,
        "graphTooltip": 1,
        "time": {"from": time_from, "to": "now"},
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "templating": {"list": []},
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "panels": panels,
    }
    if refresh:
        out["refresh"] = refresh
    return out


# The declarations import this builder, so they are imported when first asked for.


def panel_specs() -> dict[str, list[Panel | Row]]:
    """The panels and rows of each dashboard, by dashboard uid, as the builder's values."""
    from usersignals.dashboards import panels

    return panels.panel_specs()


def build_dashboards() -> dict[str, dict[str, Any]]:
    """The dashboards, by file name (``usersignals-live.json``, ``usersignals-history.json``)."""
    from usersignals.dashboards import panels

    return panels.build_dashboards()


# ---------------------------------------------------------------- DuckDB datasource plugin

_MACRO = re.compile(r"\$__(timeFilter|timeFrom|timeTo)\b(?:\(([^()]*)\))?")


def expand_macros(sql: str, start: datetime, end: datetime) -> str:
    """The SQL the DuckDB datasource plugin runs for a dashboard range [start, end].

    The plugin (``motherduck-duckdb-datasource``) expands ``$__timeFrom()`` / ``$__timeTo()`` to
    quoted RFC 3339 UTC instants and ``$__timeFilter(col)`` to ``col >= 'from' AND
    col <= 'to'`` (grafana-plugin-sdk-go's default); other macros are not used here.
    """

    def instant(t: datetime) -> str:
        return "'" + t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") + "'"

    def one(m: re.Match[str]) -> str:
        name, arg = m.group(1), (m.group(2) or "").strip()
        if name == "timeFilter":
            return f"{arg} >= {instant(start)} AND {arg} <= {instant(end)}"
        return instant(start if name == "timeFrom" else end)

    return _MACRO.sub(one, sql)


def queries(board: dict[str, Any]) -> Iterable[tuple[dict[str, Any], dict[str, Any]]]:
    """(panel, target) of every query panel of a dashboard JSON object."""
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            yield panel, target
