"""The CLI entry point: help for every command, exit codes kept, project errors as messages."""

from __future__ import annotations

import subprocess
import sys

import pytest

from usersignals.cli import COMMANDS


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "usersignals", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_has_help_with_an_example(name: str) -> None:
    out = _run(name, "--help")
    assert out.returncode == 0, out.stderr
    assert "Example:" in out.stdout
    assert f"usersignals {name}" in out.stdout


def test_exit_codes_of_commands_are_kept(tmp_path: object) -> None:
    assert _run("topics", "no-such").returncode == 2
    assert _run("no-such-command").returncode == 2


def test_project_errors_are_one_line_and_exit_2() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "usersignals", "topics", "ensure"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"USERSIGNALS_PARTITIONS": "zero", "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 2
    assert out.stderr == "error: Invalid partitions: 'zero' (not a whole number)\n"
