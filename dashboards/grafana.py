"""Grafana dashboards as data: a small typed builder and its JSON.

Frozen dataclasses (:class:`Datasource`, :class:`PromQuery`, :class:`SqlQuery`, :class:`Panel`,
:class:`Row`, :class:`Variable`) let each panel say only what it shows; :func:`dashboard` lays
them out on Grafana's 24-column grid, with the dashboard's variables and its links to the other
dashboards. The four dashboards, one per audience, are declared in :mod:`.panels`; each mixes
panels of two datasources:

* live: the stream workers' series in Prometheus (:data:`PROMETHEUS`);
* history: the warehouse views through Grafana's DuckDB datasource
  (``motherduck-duckdb-datasource``, :data:`DUCKDB`), whose ``initSql`` creates the views over the
  Parquet files (:func:`.provisioning.duckdb_init_sql`), so every panel's SQL is a query over
  the warehouse's own views.

:func:`interpolate` is what Grafana does to a query's variables before the datasource sees it,
and :func:`expand_macros` what the DuckDB plugin then does to its time macros: the tests run
every query through both.

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
    "ALL",
    "DUCKDB",
    "GRAFANA_DIR",
    "INCOMPLETE",
    "PROMETHEUS",
    "Datasource",
    "Panel",
    "PromQuery",
    "Row",
    "SqlQuery",
    "Variable",
    "build_dashboards",
    "dashboard",
    "expand_macros",
    "interpolate",
    "link",
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


ALL = "$__all"
"""The value Grafana stores for a variable's *All* option."""


@dataclass(frozen=True)
class Variable:
    """A multi-value query variable with an *All* option, read as a regex in the queries.

    PromQL writes :attr:`promql` (``$name``, in ``label=~"$name"``): the Prometheus datasource
    escapes each value for a regex inside a PromQL string and joins several as ``(a|b)``. SQL
    writes :attr:`sql` (``${name:regex}``, in a quoted literal): Grafana's regex format, one
    backslash per escape. *All* is :attr:`all_value` unformatted (``.*``: every value). The
    options are the values :attr:`query` returns on the datasource :attr:`source`.
    """

    name: str
    label: str
    description: str
    query: str
    source: Datasource
    all_value: str = ".*"

    @property
    def promql(self) -> str:
        """How a PromQL query reads the variable."""
        return "$" + self.name

    @property
    def sql(self) -> str:
        """How a SQL query reads the variable."""
        return "${" + self.name + ":regex}"

    def json(self) -> dict[str, Any]:
        return {
            "type": "query",
            "name": self.name,
            "label": self.label,
            "description": self.description,
            "datasource": self.source.ref(),
            "query": self.query,
            "refresh": 1,
            "sort": 1,
            "multi": True,
            "includeAll": True,
            "allValue": self.all_value,
            "current": {"selected": True, "text": ["All"], "value": [ALL]},
            "options": [],
            "regex": "",
            "hide": 0,
            "skipUrlSync": False,
        }


def link(uid: str, title: str, tooltip: str) -> dict[str, Any]:
    """A dashboard link to the dashboard ``uid``, keeping the time range and the variables."""
    return {
        "title": title,
        "type": "link",
        "icon": "dashboard",
        "tooltip": tooltip,
        "url": f"/d/{uid}",
        "tags": [],
        "asDropdown": False,
        "targetBlank": False,
        "includeVars": True,
        "keepTime": True,
    }


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
    variables: Sequence[Variable] = (),
    links: Sequence[dict[str, Any]] = (),
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
        "templating": {"list": [v.json() for v in variables]},
        "links": list(links),
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
    """The dashboards, by file name (``usersignals-engagement.json`` and so on: the uid)."""
    from usersignals.dashboards import panels

    return panels.build_dashboards()


# ---------------------------------------------------------------- DuckDB datasource plugin

_VARIABLE = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\$(?!__)(\w+)")
_REGEX_SPECIAL = re.compile(r"[\\^$*+?.()|{}\[\]/]")
"""What Grafana's regex format escapes (its ``escapeRegex``)."""
_PROMQL_SPECIAL = re.compile(r"[$^*{}\[\]'+?.()|]")
"""What the Prometheus datasource escapes in a regex value (``prometheusSpecialRegexEscape``)."""


def _regex_format(value: str) -> str:
    return _REGEX_SPECIAL.sub(lambda c: "\\" + c.group(0), value)


def _promql_format(value: str) -> str:
    # a backslash of the value is a regex escape inside a PromQL string: four of them; any
    # other special character gets one escaped backslash (two in the PromQL string)
    value = value.replace("\\", "\\" * 4)
    return _PROMQL_SPECIAL.sub(lambda c: "\\\\" + c.group(0), value)


def interpolate(text: str, variables: Sequence[Variable], chosen: dict[str, list[str]]) -> str:
    """``text`` as Grafana hands it to the datasource, the variables set to ``chosen``.

    A variable missing from ``chosen``, or chosen as ``[ALL]``, is *All*: its
    :attr:`Variable.all_value`, unformatted (Grafana does not format a custom all value).
    Otherwise ``${name:regex}`` is Grafana's regex format and ``$name`` the Prometheus
    datasource's own (:attr:`Variable.promql`, :attr:`Variable.sql`): each value escaped,
    several as ``(a|b)``. Names that are no variable are left as they are (``$__timeFrom()``
    is the plugin's, :func:`expand_macros`).

    Raises:
        ValueError: A variable is read with another format than ``regex``.
    """
    by_name = {v.name: v for v in variables}

    def one(m: re.Match[str]) -> str:
        name, fmt = m.group(1) or m.group(3), m.group(2)
        if name not in by_name:
            return m.group(0)
        if fmt not in (None, "regex"):
            raise ValueError(f"{m.group(0)}: only the regex format is emulated")
        values = chosen.get(name, [ALL])
        if values == [ALL]:
            return by_name[name].all_value
        escape = _regex_format if fmt == "regex" else _promql_format
        escaped = [escape(v) for v in values]
        return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"

    return _VARIABLE.sub(one, text)


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
