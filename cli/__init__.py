"""The ``usersignals`` command line.

Each command lives in its own module of this package and exposes a click command named
``command``; the group loads a module only when its command runs, so ``usersignals send``
does not pay for importing Faust or DuckDB.
"""

from __future__ import annotations

import importlib
import sys
from typing import NoReturn

import click

from usersignals import __version__
from usersignals.errors import UsersignalsError

__all__ = ["COMMANDS", "main"]

# command name -> (module in usersignals.cli, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "broker": ("broker", "Run the embedded Kafka-compatible broker with the project's topics."),
    "topics": ("topics", "Manage the project's topics on any Kafka."),
    "worker": ("worker", "Run the stream workers and the warehouse loader."),
    "loader": ("loader", "Run only the warehouse loader (Kafka to Parquet, exactly once)."),
    "collector": ("collector", "Run the HTTP collector (POST /v1/events)."),
    "send": ("send", "Send events from a JSON-lines file through the SDK."),
    "validate": ("validate", "Check a JSON-lines file against the event contract."),
    "schema": ("schema", "Print the JSON Schema of the event contract (or Iglu schemas)."),
    "status": ("status", "Topics, consumer lag per partition, accepted and rejected events."),
    "report": ("report", "Metric tables from the warehouse, or from a running worker."),
    "sql": ("sql", "DuckDB over the warehouse views."),
    "warehouse": ("warehouse", "Warehouse maintenance (compaction)."),
    "arena": ("arena", "Arena ratings of model versions from preference votes."),
    "export": ("export", "Export training data (feedback labels, preference pairs)."),
    "deadletter": ("deadletter", "Inspect and replay rejected records."),
    "generate": ("generate", "Write a realistic synthetic chat-traffic data set."),
    "run": ("run", "One shot: broker, worker, send FILE, drain, stop, print the report."),
    "dashboards": ("dashboards", "Push the Grafana dashboards to a running Grafana."),
}


class LazyGroup(click.Group):
    """A group whose commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        module = importlib.import_module(f"usersignals.cli.{entry[0]}")
        command = module.command
        if not isinstance(command, click.Command):
            raise TypeError(f"usersignals.cli.{entry[0]}.command is not a click command")
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="usersignals")
def cli() -> None:
    """Live, exact user-signal metrics for AI chat products.

    \b
    Example:
      usersignals broker --port 9092 &
      usersignals send events.jsonl
      usersignals report
    """


def main() -> None:
    """Entry point: runs the CLI; every failure it can name is one line on stderr.

    Exit status: 0 done; 1 the command ran and found problems (rejected lines, events not
    delivered); 2 bad usage (``Error: ...``, click's words) or a project error
    (``error: ...``: :class:`UsersignalsError`, a missing warehouse, Kafka not answering, or
    a file that cannot be read or written); 130 interrupted. No traceback for any of these.
    """
    try:
        # Without standalone mode click returns ctx.exit(n)'s code instead of exiting.
        rc = cli.main(prog_name="usersignals", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:  # bad usage (2), or a command's own refusal
        # one line, click's wording, without the usage text click would print first
        click.echo(f"Error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except UsersignalsError as exc:
        _fail(str(exc), 2)
    except OSError as exc:
        _fail(_os_error(exc), 2)
    if isinstance(rc, int) and rc:
        sys.exit(rc)


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _os_error(exc: OSError) -> str:
    """``Permission denied: 'out/x.parquet'``: the reason and the path, without the errno."""
    reason = exc.strerror or type(exc).__name__
    return f"{reason}: {str(exc.filename)!r}" if exc.filename is not None else reason


# The folder is linked into the package: each module has one name, so no class exists twice.
if __name__ != "usersignals.cli":
    raise ImportError(f"import usersignals.cli, not {__name__!r}: each module has one name")
