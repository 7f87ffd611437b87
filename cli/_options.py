"""Options shared by several commands, and the settings they build."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from usersignals.config import Settings

__all__ = [
    "bootstrap_option",
    "calendar_options",
    "existing_warehouse",
    "kafka_timeout_option",
    "output_file",
    "settings_from",
    "warehouse_option",
]

F = TypeVar("F", bound=Callable[..., Any])


def bootstrap_option(f: F) -> F:
    """``--bootstrap``: Kafka bootstrap servers (else ``USERSIGNALS_BOOTSTRAP``)."""
    return click.option(
        "--bootstrap",
        default=None,
        metavar="HOST:PORT",
        help="Kafka bootstrap servers [env USERSIGNALS_BOOTSTRAP; default 127.0.0.1:9092].",
    )(f)


def kafka_timeout_option(f: F) -> F:
    """``--timeout``: seconds to wait for Kafka (else ``USERSIGNALS_KAFKA_TIMEOUT_S``)."""
    return click.option(
        "--timeout",
        "kafka_timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="Seconds to wait for Kafka to answer [env USERSIGNALS_KAFKA_TIMEOUT_S; default 10].",
    )(f)


def output_file(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """A click callback: the file's directory must exist (else a usage error naming it)."""
    if value is None or str(value) == "-":
        return value
    parent = Path(value).parent
    if not parent.is_dir():
        raise click.BadParameter(f"the directory {str(parent)!r} does not exist")
    return value


def existing_warehouse(settings: Settings) -> Path:
    """``settings.warehouse``, which must be a directory.

    Raises:
        WarehouseNotFoundError: it is not (nothing was ever loaded there).
    """
    from usersignals.warehouse.db import WarehouseNotFoundError

    if not Path(settings.warehouse).is_dir():
        raise WarehouseNotFoundError(Path(settings.warehouse))
    return Path(settings.warehouse)


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


def calendar_options(f: F) -> F:
    """``--tz`` and ``--week-start``: the calendar of a warehouse reader's days and weeks."""
    f = click.option(
        "--week-start",
        type=click.Choice(["monday", "sunday"]),
        default="monday",
        show_default=True,
        help="First day of the weeks of retention, lifecycle and the weekly keys.",
    )(f)
    return click.option(
        "--tz",
        default="UTC",
        show_default=True,
        metavar="AREA/CITY",
        help="Time zone of days and weeks (any zone but UTC reads every row raw).",
    )(f)
