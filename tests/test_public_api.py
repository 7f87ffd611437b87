"""Each package's public API: complete, importable, and lazy (cheap to import)."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

PACKAGES = [
    "usersignals.ingest",
    "usersignals.streams",
    "usersignals.warehouse",
    "usersignals.dashboards",
]


@pytest.mark.parametrize("name", PACKAGES)
def test_all_is_the_export_table_and_every_name_resolves(name: str) -> None:
    package = importlib.import_module(name)
    assert sorted(package.__all__) == sorted(package._EXPORTS)
    assert len(set(package.__all__)) == len(package.__all__)
    for attr in package.__all__:
        value = getattr(package, attr)
        home = importlib.import_module(f"{name}.{package._EXPORTS[attr]}")
        assert value is getattr(home, attr)
        assert attr in home.__all__, f"{attr} is not public in its own module"


@pytest.mark.parametrize("name", PACKAGES)
def test_unknown_names_are_attribute_errors(name: str) -> None:
    package = importlib.import_module(name)
    with pytest.raises(AttributeError) as exc:
        _ = package.no_such_name
    assert str(exc.value) == f"module {name!r} has no attribute 'no_such_name'"


def test_importing_the_contract_does_not_import_servers_or_engines() -> None:
    code = (
        "import sys, usersignals.ingest.contract, usersignals.ingest; "
        "print(sorted(m for m in ('aiohttp', 'faust', 'duckdb', 'kafka') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
