"""Every exception the project raises, in one tree.

Each class keeps its inputs as attributes, builds its own exact message, and says whether trying
the same thing again can help: ``retryable`` is ``True`` (the cause can go away: Kafka comes
back, a lock is released) or ``False`` (terminal: the input or the setting must change). Two
classes decide per raise, from their cause (``per cause`` below: the ``retryable=`` keyword).
``except UsersignalsError`` catches them all; the CLI prints any of them as one ``error:`` line.

The stages raise these; each public name stays importable from the module that raises it
(``from usersignals.ingest import EventError`` is this module's ``EventError``).

Tree::

    UsersignalsError                      the root; never raised itself
    │   ground: usersignals.config, usersignals.broker
    ├── ConfigError                terminal    a setting that cannot be used
    ├── BrokerError                per cause   the broker could not be started, reached or set up
    │   contract and SDK: usersignals.ingest
    ├── EventError                 terminal    an invalid event handed to the SDK
    ├── SpoolFullError             retryable   the SDK's spool file has no room left
    ├── SpoolBusyError             retryable   another tracker holds the spool file
    ├── TrackerClosedError         terminal    an event handed to a closed tracker
    ├── CollectorError             retryable   the collector cannot reach Kafka or the topic
    │   live metrics: usersignals.streams, usersignals.metrics
    ├── BadDayRangeError           terminal    a /v1/partial day range that is not two days in order
    ├── PartialMismatchError       terminal    partials over different day ranges to merge
    ├── DayRangeError              terminal    a report day range that is not days in order
    │   history: usersignals.warehouse
    ├── LoaderError                per cause   the loader cannot run against a topic or warehouse
    ├── LoaderBusyError            retryable   another loader writes to the warehouse
    ├── DayNotFoundError           terminal    no events for the day to compact
    ├── ArenaInputError            terminal    a count-table entry that is not a vote count
    ├── ExportError                terminal    an export argument that cannot be used
    ├── WarehouseNotFoundError     terminal    no warehouse directory at the path
    ├── ManifestError              terminal    a warehouse manifest that cannot be read
    │   dashboards: usersignals.dashboards
    ├── RulesError                 terminal    promtool rejects the rules, or is missing
    ├── PushError                  base        a dashboard was not saved; raised as one of:
    │   ├── PushRejectedError      terminal    Grafana refused it (3xx, 4xx, not its JSON)
    │   └── PushUnavailableError   retryable   Grafana did not answer, or failed (5xx)
    │   command line: usersignals.cli
    ├── LiveReportError            retryable   the running workers gave no complete report
    ├── StatusError                retryable   a partition's end offset did not come in time
    ├── ReplayUnconfirmedError     retryable   Kafka did not confirm every replayed record
    ├── RunError                   terminal    a stage of ``usersignals run`` did not finish
    └── HistoryMismatchError       terminal    a run's live metrics differ from its history

Not in the tree, on purpose: two private signals of the contract, ``Rejected``
(``usersignals.ingest.rules``) and ``TimestampError`` (``usersignals.ingest.timestamps``, a
``ValueError``). The code that calls the raising function catches them at once and turns them
into a ``Rejection`` value or a usage error; neither ever reaches a caller of the package.

This module imports nothing of the project, so every layer can import it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

__all__ = [
    "ArenaInputError",
    "BadDayRangeError",
    "BrokerError",
    "CollectorError",
    "ConfigError",
    "DayNotFoundError",
    "DayRangeError",
    "EventError",
    "ExportError",
    "HistoryMismatchError",
    "LiveReportError",
    "LoaderBusyError",
    "LoaderError",
    "ManifestError",
    "PartialMismatchError",
    "PushError",
    "PushRejectedError",
    "PushUnavailableError",
    "ReplayUnconfirmedError",
    "RulesError",
    "RunError",
    "SpoolBusyError",
    "SpoolFullError",
    "StatusError",
    "TrackerClosedError",
    "UsersignalsError",
    "WarehouseNotFoundError",
]


class UsersignalsError(Exception):
    """Root of every exception the project raises; never raised itself."""

    retryable: bool = False


# ---------------------------------------------------------------- ground


class ConfigError(UsersignalsError):
    """Raised when a configuration value (flag, environment, argument) cannot be used."""

    retryable = False

    def __init__(self, name: str, value: object, reason: str) -> None:
        self.name = name
        self.value = value
        self.reason = reason
        super().__init__(f"Invalid {name}: {value!r} ({reason})")


class BrokerError(UsersignalsError):
    """Raised when the broker could not be started, reached or configured.

    Retryable or not per raise (``retryable=``): Kafka not answering in time may answer later; a
    missing broker binary, or a broker that never listened, will not.
    """

    retryable = False

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        self.retryable = retryable
        super().__init__(message)


# ---------------------------------------------------------------- contract and SDK


class _Rejection(Protocol):
    """What :class:`EventError` reads of the contract's ``Rejection`` (``usersignals.ingest``).

    A protocol, so that this module needs nothing above it.
    """

    @property
    def reason(self) -> str: ...

    @property
    def message(self) -> str: ...

    @property
    def field(self) -> str | None: ...


class EventError(UsersignalsError):
    """Raised when an invalid event is handed to the SDK; sending it again cannot help."""

    retryable = False

    def __init__(self, rejection: _Rejection) -> None:
        self.rejection = rejection
        super().__init__(rejection.message)


class SpoolFullError(UsersignalsError):
    """Raised when the spool file has no room for more records.

    Retryable: room comes back as soon as the broker accepts the spooled records again.
    """

    retryable = True

    def __init__(self, path: Path, max_bytes: int, needed: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.needed = needed
        super().__init__(
            f"Spool {str(path)!r} is full: {needed} more bytes do not fit in {max_bytes} bytes"
        )


class SpoolBusyError(UsersignalsError):
    """Raised when another open ``Spool`` (in this or another process) holds the file.

    Two writers on one spool would interleave and resend each other's records; give each
    tracker its own ``spool_path``. Retryable: the file is free once the other one closes.
    """

    retryable = True

    def __init__(self, path: Path) -> None:
        self.path = path
        super().__init__(f"Spool {str(path)!r} is in use by another tracker")


class TrackerClosedError(UsersignalsError):
    """Raised when an event is handed to a tracker that is closed."""

    retryable = False

    def __init__(self, event_id: str) -> None:
        self.event_id = event_id
        super().__init__(f"The tracker is closed; event {event_id!r} was not accepted")


class CollectorError(UsersignalsError):
    """Raised when the collector cannot start: Kafka unreachable, or the events topic missing."""

    retryable = True

    def __init__(self, bootstrap: str, topic: str, reason: str) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.reason = reason
        super().__init__(f"Kafka at {bootstrap!r} cannot take events for {topic!r}: {reason}")


# ---------------------------------------------------------------- live metrics


class BadDayRangeError(UsersignalsError):
    """Raised when a ``/v1/partial`` day range is not two ISO days in order."""

    retryable = False

    def __init__(self, first: str, last: str) -> None:
        self.first = first
        self.last = last
        super().__init__(
            f"Bad day range: from={first!r} to={last!r} (expected YYYY-MM-DD, from <= to)"
        )


class PartialMismatchError(UsersignalsError):
    """Raised when partials over different day ranges are merged (phase one was skipped)."""

    retryable = False

    def __init__(self, ranges: list[Any]) -> None:
        self.ranges = ranges
        super().__init__(f"Partials cover different day ranges: {ranges!r}")


class DayRangeError(UsersignalsError):
    """Raised when a day range is not one or two ``YYYY-MM-DD`` days in order."""

    retryable = False

    def __init__(self, first: object, last: object, problem: str) -> None:
        self.first = first
        self.last = last
        self.problem = problem
        super().__init__(f"Bad day range: from={first!r} to={last!r} ({problem})")


# ---------------------------------------------------------------- history


class LoaderError(UsersignalsError):
    """Raised when the loader cannot run against this topic or warehouse.

    Retryable or not per raise (``retryable=``): partitions that did not answer a fetch may
    answer later; a topic that does not exist will not.
    """

    retryable = False

    def __init__(self, topic: str, reason: str, *, retryable: bool = False) -> None:
        self.topic = topic
        self.reason = reason
        self.retryable = retryable
        super().__init__(f"Cannot load topic {topic!r}: {reason}")


class LoaderBusyError(UsersignalsError):
    """Raised when another loader already writes to this warehouse."""

    retryable = True

    def __init__(self, warehouse: Path) -> None:
        self.warehouse = warehouse
        super().__init__(f"Another loader is writing to {str(warehouse)!r}")


class DayNotFoundError(UsersignalsError):
    """Raised when the warehouse has no events for the day asked for."""

    retryable = False

    def __init__(self, day: str) -> None:
        self.day = day
        super().__init__(f"No events for day {day!r}")


class ArenaInputError(UsersignalsError):
    """Raised when a count-table entry is not a preference vote count."""

    retryable = False

    def __init__(self, key: object, count: object, reason: str) -> None:
        self.key = key
        self.count = count
        self.reason = reason
        super().__init__(f"Invalid arena count {key!r}: {count!r} ({reason})")


class ExportError(UsersignalsError):
    """Raised when an export argument cannot be used."""

    retryable = False

    def __init__(self, name: str, value: object, choices: tuple[str, ...]) -> None:
        self.name = name
        self.value = value
        self.choices = choices
        super().__init__(f"Invalid {name}: {value!r} (choose from {', '.join(choices)})")


class WarehouseNotFoundError(UsersignalsError):
    """Raised when the warehouse directory does not exist (nothing was ever loaded there)."""

    retryable = False

    def __init__(self, path: Path) -> None:
        self.path = path
        super().__init__(f"No warehouse at {str(path)!r} (run the loader or pass --warehouse)")


class ManifestError(UsersignalsError):
    """Raised when the manifest cannot be read (not JSON, or not a manifest of a known format)."""

    retryable = False

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"Cannot read the warehouse manifest {str(path)!r}: {reason}")


# ---------------------------------------------------------------- dashboards


class RulesError(UsersignalsError):
    """Raised when ``promtool`` finds the rules broken, fails their tests, or is not installed."""

    retryable = False

    def __init__(self, command: tuple[str, ...], output: str) -> None:
        self.command = command
        self.output = output
        super().__init__(f"{' '.join(command)!r} failed: {output.strip()}")


class PushError(UsersignalsError):
    """Base of the two ways a dashboard is not saved by the Grafana at ``url``.

    ``status`` is the HTTP status (``None`` when nothing answered) and ``body`` the reply's bytes.
    Raised only as :class:`PushRejectedError` or :class:`PushUnavailableError`.
    """

    retryable = False

    def __init__(self, url: str, status: int | None, body: bytes, reason: str) -> None:
        self.url = url
        self.status = status
        self.body = body
        self.reason = reason
        super().__init__(f"Grafana at {url!r} did not save the dashboard: {reason}")


class PushRejectedError(PushError):
    """Raised when Grafana refused the dashboard: the request, the token or the address is wrong."""

    retryable = False


class PushUnavailableError(PushError):
    """Raised when Grafana did not answer, or failed on its side: a later attempt may succeed."""

    retryable = True


# ---------------------------------------------------------------- command line


class LiveReportError(UsersignalsError):
    """Raised when the running workers could not give a complete report."""

    retryable = True

    def __init__(self, urls: list[str], problem: str) -> None:
        self.urls = urls
        self.problem = problem
        super().__init__(f"No live report from {', '.join(urls)!r}: {problem}")


class StatusError(UsersignalsError):
    """Raised when a partition's end offset could not be read in time (retryable)."""

    retryable = True

    def __init__(self, topic: str, partition: int) -> None:
        self.topic = topic
        self.partition = partition
        super().__init__(f"No fetch answer for partition {partition} of {topic!r} in time")


class ReplayUnconfirmedError(UsersignalsError):
    """Raised when replayed records were handed to Kafka but it did not confirm them all."""

    retryable = True

    def __init__(self, bootstrap: str, timeout: float) -> None:
        self.bootstrap = bootstrap
        self.timeout = timeout
        super().__init__(
            f"Kafka at {bootstrap!r} did not confirm every replayed record within {timeout:g}s; "
            "they are marked replayed: once it answers, run again with --again"
        )


class RunError(UsersignalsError):
    """Raised when a stage of ``usersignals run`` did not finish."""

    retryable = False

    def __init__(self, stage: str, detail: str) -> None:
        self.stage = stage
        self.detail = detail
        super().__init__(f"{stage}: {detail}")


class HistoryMismatchError(UsersignalsError):
    """Raised when the live metrics of a run differ from the warehouse history of its records."""

    retryable = False

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)
