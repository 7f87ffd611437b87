"""Length of the fault suite and the fuzzers: ``USERSIGNALS_FAULTS=long`` (``make faults``)."""

from __future__ import annotations

import os

import pytest

LONG = os.environ.get("USERSIGNALS_FAULTS", "") == "long"
"""Whether this is the long run of ``make faults`` (else the short form of ``make test``)."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/faults/" in str(item.path).replace(os.sep, "/"):
            item.add_marker(pytest.mark.faults)
