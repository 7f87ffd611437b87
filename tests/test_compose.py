"""compose.yaml is a valid Compose file whose every mount, build input and command exists.

No Docker engine runs here, so the file is checked offline against the Compose Specification's
JSON Schema as ``check-jsonschema`` ships it (``--builtin-schema vendor.compose-spec``), and
Prometheus' own tool checks the config it mounts. The image itself: ``test_dockerfile.py``.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from usersignals.cli import COMMANDS

ROOT = Path(__file__).resolve().parents[1]


def check_compose(path: Path) -> subprocess.CompletedProcess[str]:
    """``check-jsonschema`` with its vendored Compose Specification schema, offline."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.compose-spec",
            "--no-cache",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return loaded


def test_validates_against_the_compose_specification() -> None:
    out = check_compose(ROOT / "compose.yaml")
    assert (out.returncode, out.stdout.strip()) == (0, "ok -- validation done"), out.stderr


def test_a_broken_compose_file_fails_the_specification(tmp_path: Path) -> None:
    broken = tmp_path / "compose.yaml"
    text = (ROOT / "compose.yaml").read_text(encoding="utf-8")
    broken.write_text(
        text.replace("    deploy:\n      replicas: 2", "    deploy:\n      replica: 2")
    )
    out = check_compose(broken)
    assert out.returncode == 1
    assert out.stdout.splitlines()[1:] == [
        f"  {broken}::$.services.worker.deploy: 'replica' does not match any of the regexes: '^x-'"
    ]


def test_it_runs_kafka_in_kraft_mode_and_two_workers(compose: dict[str, Any]) -> None:
    services = compose["services"]
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert kafka["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert services["worker"]["deploy"]["replicas"] == 2
    assert {"topics", "collector", "worker", "loader", "prometheus", "grafana"} <= set(services)
    for name in ("collector", "worker", "loader"):
        assert "warehouse:/data/warehouse" in services[name]["volumes"]
        assert services[name]["environment"]["USERSIGNALS_BOOTSTRAP"] == "kafka:9092"


def test_every_mounted_file_exists(compose: dict[str, Any]) -> None:
    binds = [
        v.split(":")[0]
        for svc in compose["services"].values()
        for v in svc.get("volumes", [])
        if isinstance(v, str) and v.startswith(".")
    ]
    assert binds, "expected bind mounts of the project's own files"
    missing = [b for b in binds if not (ROOT / b).exists()]
    assert missing == []


def test_every_command_is_a_cli_command(compose: dict[str, Any]) -> None:
    for name, svc in compose["services"].items():
        if svc.get("image", "").startswith("usersignals") and svc["command"] != ["--help"]:
            assert svc["command"][0] in COMMANDS, name


def test_prometheus_config_is_valid(promtool: str) -> None:
    out = subprocess.run(
        [promtool, "check", "config", str(ROOT / "dashboards/prometheus/prometheus.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert re.search(r"SUCCESS", out.stdout + out.stderr)
