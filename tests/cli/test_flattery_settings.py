"""``usersignals report`` applies the flattery watch's settings from the environment."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.streams.test_flattery_live import events
from tests.warehouse.parquetfixtures import write_warehouse
from usersignals.cli import cli


@pytest.mark.parametrize(
    ("env", "flagged"),
    [
        ({}, [["warm", "2026-W38"]]),
        ({"USERSIGNALS_FLATTERY_MIN_VOTES": "101"}, []),
        ({"USERSIGNALS_FLATTERY_LEVEL": "0.01"}, []),
    ],
)
def test_report_flags_with_the_settings(
    tmp_path: Path, env: dict[str, str], flagged: list[list[str]]
) -> None:
    write_warehouse(tmp_path / "wh", events())
    out = CliRunner().invoke(
        cli, ["report", "--json", "--warehouse", str(tmp_path / "wh")], env=env
    )
    assert out.exit_code == 0, out.output
    rows = json.loads(out.output)["flattery_watch"]
    assert [[r["model"], r["week"]] for r in rows if r["flagged"]] == flagged
