"""One import path per module: the stage folders and the CLI are linked into the package and
import only under ``usersignals.<stage>``, so no class exists twice (``isinstance`` and
``except`` hold)."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import usersignals

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("ingest", "streams", "warehouse", "dashboards", "metrics", "cli")
GROUND = (
    "__init__.py",
    "__main__.py",
    "_exports.py",
    "broker.py",
    "config.py",
    "errors.py",
    "processes.py",
)


def test_the_package_folder_holds_the_ground_and_links_the_stages() -> None:
    """``usersignals/`` is the ground (config, errors, processes, the broker); the stages and
    the CLI live at the top and are only linked in, so the layout reads as the layers."""
    out = subprocess.run(
        ["git", "ls-files", "-s", "--", "usersignals"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    entries = {line.split("\t")[1]: line.split()[0] for line in out.stdout.splitlines()}
    links = {path for path, mode in entries.items() if mode == "120000"}
    assert sorted(links) == sorted(f"usersignals/{stage}" for stage in STAGES)
    for stage in STAGES:
        assert (ROOT / "usersignals" / stage).readlink() == Path("..", stage)
    files = {path for path in entries if path not in links}
    assert sorted(files) == sorted(f"usersignals/{name}" for name in (*GROUND, "py.typed"))


@pytest.mark.parametrize("stage", STAGES)
def test_a_stage_folder_does_not_import_under_its_own_name(stage: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", f"import {stage}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[-1] == (
        f"ImportError: import usersignals.{stage}, not {stage!r}: each module has one name"
    )


def test_every_module_file_is_loaded_once() -> None:
    names = [
        m.name
        for m in pkgutil.walk_packages(usersignals.__path__, "usersignals.")
        if not m.name.endswith(".__main__")
    ]
    for name in names:
        importlib.import_module(name)
    files: dict[str, str] = {}
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if path is None or not name.startswith("usersignals"):
            continue
        real = str(Path(path).resolve())
        assert files.setdefault(real, name) == name, f"{real} loaded as {files[real]} and {name}"
    assert len(files) >= len(STAGES)
