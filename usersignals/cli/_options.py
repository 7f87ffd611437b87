"""Options shared by several commands, and the settings they build."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from usersignals.config import Settings

__all__ = ["bootstrap_option", "settings_from", "warehouse_option"]

F = TypeVar("F", bound=Callable[..., Any])


def bootstrap_option(f: F) -> F:
    """``--bootstrap``: Kafka bootstrap servers (else ``USERSIGNALS_BOOTSTRAP``)."""
    return click.option(
        "--bootstrap",
        default=None,
        metavar="HOST:PORT",
        help="Kafka bootstrap servers [env USERSIGNALS_BOOTSTRAP; default 127.0.0.1:9092].",
    )(f)


def warehouse_option(f: F) -> F:
    """``--warehouse``: the warehouse directory (else ``USERSIGNALS_WAREHOUSE``)."""
    return click.option(
        "--warehouse",
        default=None,
        metavar="DIR",
        help="Warehouse directory [env USERSIGNALS_WAREHOUSE; default ./data/warehouse].",
    )(f)


def settings_from(**flags: Any) -> Settings:
    """Settings from the given flags (``None`` = not given), then environment, then defaults."""
    return Settings.load(**flags)
