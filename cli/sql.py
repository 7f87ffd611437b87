"""``usersignals sql``: DuckDB over the warehouse views, one query or an interactive shell.

The DuckDB Python package has no shell of its own, so the shell here is a small line reader:
statements run when a line ends with ``;``, dot commands (``.tables``, ``.schema NAME``,
``.help``, ``.quit``) act at once. It reads standard input too, so scripts can pipe SQL in.
"""

from __future__ import annotations

import contextlib
import csv
import json
import sys
from collections.abc import Iterator, Sequence
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import click

from usersignals.cli._options import calendar_options, settings_from, warehouse_option

if TYPE_CHECKING:
    import duckdb

__all__ = ["command", "format_rows", "shell"]

FORMATS = ("table", "csv", "json", "parquet")

_HELP = """\
Statements end with ';' and may span lines. Views: events, sessions, user_days,
events_by_day, active_users, feedback_latest, feedback_by_model, risk_flags_daily,
users_at_risk_weekly, flattery_watch, deadletter, rejected.
  .tables          list the views
  .schema NAME     columns of a view
  .help            this text
  .quit            leave (also .exit or end of input)"""


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return value


def _text(value: Any) -> str:
    value = _plain(value)
    if value is None:
        return "NULL"
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def format_rows(
    names: Sequence[str], rows: Sequence[Sequence[Any]], fmt: str, out: IO[str], *, rich: bool
) -> None:
    """Writes rows as an aligned table (rich on a terminal), CSV or a JSON array of objects."""
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(names)
        writer.writerows([["" if v is None else _text(v) for v in row] for row in rows])
    elif fmt == "json":
        objects = [{n: _plain(v) for n, v in zip(names, row, strict=True)} for row in rows]
        out.write(json.dumps(objects, ensure_ascii=False, default=str) + "\n")
    elif rich:
        from rich.console import Console
        from rich.table import Table

        table = Table(*names)
        for row in rows:
            table.add_row(*(_text(v) for v in row))
        Console(file=out).print(table)
    else:
        cells = [list(names), *[[_text(v) for v in row] for row in rows]]
        widths = [max(len(r[i]) for r in cells) for i in range(len(names))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
        lines.insert(1, "  ".join("-" * w for w in widths))
        out.write("\n".join(line.rstrip() for line in lines) + "\n")


def _run(con: duckdb.DuckDBPyConnection, sql: str, out: IO[str], *, rich: bool) -> None:
    rel = con.execute(sql)
    if not rel.description:
        return
    names = [d[0] for d in rel.description]
    format_rows(names, rel.fetchall(), "table", out, rich=rich)


def _prompted(pending: list[str]) -> Iterator[str]:
    """Lines typed at a prompt; the prompt shows whether a statement is still open."""
    while True:
        try:
            yield input("...> " if pending else "sql> ")
        except EOFError:
            return


def _statements(lines: Iterator[str], pending: list[str]) -> Iterator[str]:
    """SQL statements and dot commands from lines (a statement ends with ';').

    ``pending`` holds the lines of the statement being read (shared with the prompt).
    """
    for line in lines:
        stripped = line.strip()
        if not pending and stripped.startswith("."):
            yield stripped
            continue
        if stripped:
            pending.append(line.rstrip("\n"))
        if stripped.endswith(";"):
            yield "\n".join(pending)
            pending.clear()
    if pending and "".join(pending).strip():
        yield "\n".join(pending)


def shell(con: duckdb.DuckDBPyConnection, stdin: IO[str], out: IO[str]) -> int:
    """Runs statements from ``stdin`` (prompting on a terminal); returns the number of errors."""
    import duckdb

    interactive = stdin.isatty() and out.isatty()
    if interactive:
        with contextlib.suppress(ImportError):
            import readline  # noqa: F401  (line editing and history for input())
        out.write("usersignals sql: DuckDB over the warehouse views. .help for help.\n")
    errors = 0
    pending: list[str] = []
    lines: Iterator[str] = _prompted(pending) if interactive else iter(stdin)
    for statement in _statements(lines, pending):
        command, _, arg = statement.partition(" ")
        try:
            if command in (".quit", ".exit"):
                break
            if command == ".help":
                out.write(_HELP + "\n")
            elif command == ".tables":
                _run(
                    con,
                    "SELECT view_name AS name FROM duckdb_views() "
                    "WHERE NOT internal AND NOT temporary ORDER BY name",
                    out,
                    rich=interactive,
                )
            elif command == ".schema":
                _run(con, f"DESCRIBE {arg.strip().rstrip(';')}", out, rich=interactive)
            elif command.startswith("."):
                out.write(f"unknown command {command!r} (.help lists them)\n")
                errors += 1
            else:
                _run(con, statement, out, rich=interactive)
        except duckdb.Error as exc:
            out.write(f"error: {exc}\n")
            errors += 1
        out.flush()
    return errors


@click.command("sql")
@warehouse_option
@click.argument("query", required=False)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="table",
    show_default=True,
    help="Output format of QUERY's result.",
)
@click.option(
    "--out",
    "out_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the result to FILE instead of standard output (needed for parquet).",
)
@calendar_options
def command(
    warehouse: str | None,
    query: str | None,
    fmt: str,
    out_file: Path | None,
    tz: str,
    week_start: str,
) -> None:
    """Run QUERY on the warehouse views, or open a DuckDB shell on them without QUERY.

    Views: events (each event_id once), sessions, active_users, feedback_latest,
    feedback_by_model, risk_flags_daily, users_at_risk_weekly, flattery_watch, deadletter,
    rejected, events_by_day, user_days, retention, lifecycle, stickiness_distribution,
    sessions_daily, wellbeing_weekly, risk_concentration. Days are UTC days and weeks start
    on Monday unless --tz and --week-start say otherwise.

    \b
    Example:
      usersignals sql "SELECT * FROM active_users ORDER BY day DESC LIMIT 7"
      usersignals sql --format parquet --out fb.parquet "FROM feedback_by_model"
      echo "SELECT count(*) FROM events;" | usersignals sql
    """
    from usersignals.warehouse.db import connect

    settings = settings_from(warehouse=warehouse)
    if fmt == "parquet" and out_file is None:
        raise click.UsageError("--format parquet needs --out FILE")
    con = connect(settings.warehouse, tz=tz, week_start=week_start)
    try:
        if query is None:
            errors = shell(con, sys.stdin, sys.stdout)
            if errors and not sys.stdin.isatty():
                sys.exit(1)
            return
        _query(con, query, fmt, out_file)
    finally:
        con.close()


def _query(con: duckdb.DuckDBPyConnection, query: str, fmt: str, out_file: Path | None) -> None:
    import duckdb

    try:
        rel = con.execute(query)
        if fmt == "parquet":
            import pyarrow.parquet as pq

            pq.write_table(rel.to_arrow_table(), str(out_file), compression="zstd")
            return
        names = [d[0] for d in rel.description or ()]
        rows = rel.fetchall() if names else []
    except duckdb.Error as exc:
        raise click.ClickException(str(exc)) from None
    if out_file is not None:
        with out_file.open("w", encoding="utf-8", newline="") as f:
            format_rows(names, rows, fmt, f, rich=False)
    else:
        format_rows(names, rows, fmt, sys.stdout, rich=sys.stdout.isatty())
