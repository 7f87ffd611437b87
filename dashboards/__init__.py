"""usersignals.dashboards: Grafana dashboards and provisioning, Prometheus rules, pushing.

Dashboards put engagement and wellbeing side by side per model version; their SQL reads the
warehouse views and their PromQL the workers' series. Names are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from usersignals._exports import lazy_exports

if TYPE_CHECKING:
    from usersignals.dashboards.grafana import GRAFANA_DIR, build_dashboards
    from usersignals.dashboards.provisioning import rendered_files, write_dashboards
    from usersignals.dashboards.push import (
        PushError,
        PushRejectedError,
        PushReport,
        PushUnavailableError,
        push_dashboards,
    )
    from usersignals.dashboards.rules import (
        LIVE_SERIES,
        RULES_FILE,
        RulesError,
        promtool_check,
        promtool_test,
    )

_EXPORTS = {
    **dict.fromkeys(("GRAFANA_DIR", "build_dashboards"), "grafana"),
    **dict.fromkeys(("rendered_files", "write_dashboards"), "provisioning"),
    **dict.fromkeys(
        (
            "PushError",
            "PushRejectedError",
            "PushReport",
            "PushUnavailableError",
            "push_dashboards",
        ),
        "push",
    ),
    **dict.fromkeys(
        ("LIVE_SERIES", "RULES_FILE", "RulesError", "promtool_check", "promtool_test"), "rules"
    ),
}

__all__ = [
    "GRAFANA_DIR",
    "LIVE_SERIES",
    "RULES_FILE",
    "PushError",
    "PushRejectedError",
    "PushReport",
    "PushUnavailableError",
    "RulesError",
    "build_dashboards",
    "promtool_check",
    "promtool_test",
    "push_dashboards",
    "rendered_files",
    "write_dashboards",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

# The folder is linked into the package: each module has one name, so no class exists twice.
if __name__ != "usersignals.dashboards":
    raise ImportError(f"import usersignals.dashboards, not {__name__!r}: each module has one name")
