"""compose.yaml is a valid Compose file whose every mount, build input and command exists.

No Docker engine runs here, so the file is checked offline against the Compose Specification's
JSON Schema (shared/schemas/compose), and Prometheus' own tool checks the config it mounts.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from usersignals.cli import COMMANDS

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT.parent / "shared" / "schemas" / "compose" / "compose-spec.json"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return loaded


def test_validates_against_the_compose_specification(compose: dict[str, Any]) -> None:
    schema = json.loads(SCHEMA.read_text())
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(compose), key=str)
    assert [e.message for e in errors] == []


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


def test_the_image_builds_from_files_that_exist() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    sources = [
        src
        for line in dockerfile.splitlines()
        if line.startswith("COPY ")
        for src in line.split()[1:-1]
    ]
    assert sources
    assert [s for s in sources if not (ROOT / s).exists()] == []


def test_every_command_is_a_cli_command(compose: dict[str, Any]) -> None:
    for name, svc in compose["services"].items():
        if svc.get("image", "").startswith("usersignals") and svc["command"] != ["--help"]:
            assert svc["command"][0] in COMMANDS, name


def test_prometheus_config_is_valid() -> None:
    out = subprocess.run(
        ["promtool", "check", "config", str(ROOT / "dashboards/prometheus/prometheus.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert re.search(r"SUCCESS", out.stdout + out.stderr)
