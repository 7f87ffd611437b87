"""``usersignals dashboards push``: the dashboards into a running Grafana, idempotently."""

from __future__ import annotations

import os

import click

from usersignals.dashboards.grafana import DUCKDB, PROMETHEUS
from usersignals.dashboards.push import (
    DEFAULT_TIMEOUT_S,
    FOLDER_TITLE,
    PushReport,
    push_dashboards,
)

__all__ = ["TOKEN_ENV", "URL_ENV", "command", "report_lines"]

URL_ENV = "USERSIGNALS_GRAFANA_URL"
TOKEN_ENV = "USERSIGNALS_GRAFANA_TOKEN"


@click.group("dashboards")
def command() -> None:
    """The Grafana dashboards.

    \b
    Example:
      USERSIGNALS_GRAFANA_TOKEN=glsa_... usersignals dashboards push --url http://grafana:3000
    """


@command.command("push")
@click.option(
    "--url",
    envvar=URL_ENV,
    required=True,
    metavar="URL",
    help=f"Grafana's root URL, with its sub-path if any [env {URL_ENV}].",
)
@click.option(
    "--folder-uid",
    default=None,
    metavar="UID",
    help="Folder to keep the dashboards in, created when missing [default: the General folder].",
)
@click.option(
    "--folder-title",
    default=FOLDER_TITLE,
    show_default=True,
    help="Title of the folder when it has to be created.",
)
@click.option(
    "--prometheus-uid",
    default=None,
    metavar="UID",
    help=f"Uid of the Prometheus data source in that Grafana [default: {PROMETHEUS.uid}].",
)
@click.option(
    "--duckdb-uid",
    default=None,
    metavar="UID",
    help=f"Uid of the DuckDB data source in that Grafana [default: {DUCKDB.uid}].",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_TIMEOUT_S,
    show_default=True,
    metavar="SECONDS",
    help="Seconds to wait for each of Grafana's answers.",
)
@click.option("--dry-run", is_flag=True, help="Only read: print what a push would change.")
def push_command(
    url: str,
    folder_uid: str | None,
    folder_title: str,
    prometheus_uid: str | None,
    duckdb_uid: str | None,
    timeout: float,
    dry_run: bool,
) -> None:
    """Create or update the dashboards in a running Grafana, over its HTTP API.

    The token is a Grafana service-account token (Editor role) in the environment
    variable USERSIGNALS_GRAFANA_TOKEN; it is never a flag, so that it stays out of the
    shell's history, and never printed. Each dashboard is read back by its uid and saved
    only when it differs (ignoring id and version) or sits in another folder: a second
    push saves nothing. Prints one line per dashboard: created, updated (and what
    differed), or unchanged. Exit status 2 when Grafana refused or failed.

    \b
    Example:
      export USERSIGNALS_GRAFANA_TOKEN=glsa_...
      usersignals dashboards push --url https://ops.example/grafana \\
          --folder-uid usersignals --prometheus-uid prom-prod --duckdb-uid duckdb-prod
      usersignals dashboards push --url https://ops.example/grafana --dry-run
    """
    token = os.environ.get(TOKEN_ENV, "")
    if not token:
        raise click.UsageError(f"{TOKEN_ENV} is not set (a Grafana service-account token)")
    report = push_dashboards(
        url,
        token,
        folder_uid=folder_uid,
        folder_title=folder_title,
        prometheus_uid=prometheus_uid,
        duckdb_uid=duckdb_uid,
        dry_run=dry_run,
        timeout=timeout,
    )
    for line in report_lines(report):
        click.echo(line)


def report_lines(report: PushReport) -> list[str]:
    """The lines ``dashboards push`` prints for ``report``."""
    would = "would be " if report.dry_run else ""
    lines = []
    if report.folder_uid is not None:
        state = f"{would}created" if report.folder == "created" else "exists"
        lines.append(f"folder {report.folder_uid}: {state}")
    for board in report.dashboards:
        state = board.action if board.action == "unchanged" else f"{would}{board.action}"
        detail = f" ({', '.join(board.changes)})" if board.changes else ""
        lines.append(f"{board.uid}: {state}{detail}")
    counts = ", ".join(
        f"{report.count(action)} {would if action != 'unchanged' else ''}{action}"
        for action in ("created", "updated", "unchanged")
    )
    where = f"in {report.url}" + (" (dry run: nothing was saved)" if report.dry_run else "")
    lines.append(f"{counts} {where}")
    return lines
