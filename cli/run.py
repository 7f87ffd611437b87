"""``usersignals run FILE``: the whole pipeline in one command, on the embedded broker.

Starts a broker, a worker (which runs the loader), sends the file the way a mixed fleet of
clients does, waits until the worker and the loader have processed every record, stops every
process it started, and prints the report from the warehouse it leaves behind.

The warehouse may hold earlier runs: the fresh broker's topic is a new incarnation, which the
loader loads under a new epoch (see ``usersignals.warehouse.manifest``), so the report covers
every run. The live metrics of this run are compared with the warehouse history of this run's
records (the current epoch); any difference, or live metrics that cannot be read, is a failure
(exit status 1) with a one-line reason.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from usersignals.broker import (
    NO_AUTO_CREATE,
    EmbeddedBroker,
    free_port,
    refuse_auto_create,
    wait_for_port,
)
from usersignals.cli._options import settings_from, warehouse_option
from usersignals.cli._progress import byte_progress
from usersignals.config import Settings
from usersignals.errors import HistoryMismatchError as HistoryMismatchError
from usersignals.errors import RunError as RunError
from usersignals.processes import terminate

__all__ = ["command"]

RUN_RETENTION_DAYS = 100 * 366
"""The live retention of the worker `run` starts: longer than any file's span of days."""

DRAIN_TIMEOUT_S = 600.0
STOP_TIMEOUT_S = 60.0


@dataclass
class SendSummary:
    lines: int = 0
    events: int = 0
    raw_records: int = 0


@click.command("run")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@warehouse_option
@click.option("--partitions", type=int, default=None, help="Partitions of the topics [default 8].")
@click.option("--json", "as_json", is_flag=True, help="Print the whole report as JSON.")
@click.option("--full", is_flag=True, help="Print every table of the report, not the headlines.")
def command(
    file: str, warehouse: str | None, partitions: int | None, as_json: bool, full: bool
) -> None:
    """One shot: embedded broker, worker and loader, send FILE, drain, stop, print the report.

    Valid lines go through the SDK; lines that break the contract are sent as they are, as a
    producer without the SDK would, so that the worker's dead-letter path sees them too. The
    warehouse it leaves behind is the one `usersignals report` and `usersignals sql` read.

    \b
    Example:
      usersignals generate --users 2000 --days 14 --out events.jsonl
      usersignals run events.jsonl --warehouse ./data/warehouse
    """
    base = settings_from(warehouse=warehouse, partitions=partitions)
    tty = sys.stderr.isatty()
    before = _epoch_before(base.warehouse)
    with EmbeddedBroker(partitions=base.partitions, topics=()) as broker:
        # a one-shot worker holds the whole file: no event of it is behind a retention horizon,
        # so live and history cover the same days, however many the file spans
        settings = base.with_(
            bootstrap=broker.bootstrap, worker_port=free_port(), retention_days=RUN_RETENTION_DAYS
        )
        settings = settings.with_(worker_url=f"http://127.0.0.1:{settings.worker_port}")
        from usersignals.broker import ensure_topics

        ensure_topics(broker.bootstrap, settings.partitions, settings.topics)
        _say(f"broker on {broker.bootstrap} (pid {broker.pid})", tty)
        with _worker(settings) as worker:
            _say(f"worker on {settings.worker_url} (pid {worker.pid}), loader started by it", tty)
            summary = _send(settings, Path(file), progress=tty)
            _say(
                f"sent {summary.events:,} events from {summary.lines:,} lines "
                f"({summary.raw_records:,} invalid lines sent as-is)",
                tty,
            )
            _drain(settings, worker, before, progress=tty)
            live = _fetch_live(settings)
        _say("worker and loader stopped; broker stopping", tty)
    _print_report(settings, as_json=as_json, full=full)
    reason = mismatch(live, _run_history(settings))
    if reason is not None:
        click.echo(f"Error: {reason}", err=True)
        sys.exit(1)
    click.echo("live metrics and warehouse history agree", err=True)


def _say(message: str, tty: bool) -> None:
    click.echo(f"» {message}" if tty else message, err=True)


@contextlib.contextmanager
def _worker(settings: Settings) -> Iterator[subprocess.Popen[bytes]]:
    env = _child_env(settings)
    log_dir = settings.state_dir
    log_dir.mkdir(parents=True, exist_ok=True)
    log = (log_dir / "worker.log").open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "usersignals", "worker", "--port", str(settings.worker_port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        if not wait_for_port("127.0.0.1", settings.worker_port, 120):
            raise RunError("worker", f"did not start; see {log_dir / 'worker.log'}")
        yield proc
    finally:
        terminate(proc, STOP_TIMEOUT_S, group=True)  # nothing of the run outlives it
        log.close()


def _child_env(settings: Settings) -> dict[str, str]:
    return {**os.environ, **settings.to_env()}


def _send(settings: Settings, path: Path, *, progress: bool) -> SendSummary:
    from kafka import KafkaProducer

    from usersignals.ingest.contract import decode_record
    from usersignals.ingest.tracker import Tracker

    summary = SendSummary()
    raw = KafkaProducer(
        bootstrap_servers=settings.bootstrap, acks="all", linger_ms=20, **NO_AUTO_CREATE
    )
    refuse_auto_create(raw)
    total = path.stat().st_size if str(path) != "-" else None
    with (
        Tracker(settings=settings) as tracker,
        byte_progress(progress, total, "sending") as advance,
        click.open_file(str(path), "rb") as fh,
    ):
        for line in fh:
            advance(len(line))
            body = line.strip()
            if not body:
                continue
            summary.lines += 1
            events, rejections = decode_record(body)
            if rejections:
                raw.send(
                    settings.events_topic, value=body, partition=summary.lines % settings.partitions
                )
                summary.raw_records += 1
                continue
            for event in events:
                tracker.track_event(event)
            summary.events += len(events)
        if not tracker.flush(120):
            raise RunError("send", "the SDK could not deliver every event within 120 s")
    raw.flush(60)
    raw.close()
    return summary


def _epoch_before(warehouse: Path) -> int | None:
    """The epoch the loader must move past: None when the warehouse holds no loaded range.

    The run's broker is new, so offsets the warehouse has committed belong to an older
    incarnation of the topic, and the loader starts a new epoch before it loads anything.
    """
    from usersignals.warehouse.manifest import read_manifest

    if not warehouse.is_dir():
        return None
    manifest = read_manifest(warehouse)
    return manifest.epoch if manifest.committed() else None


def _loaded(warehouse: Path, before: int | None) -> dict[int, int]:
    """Kafka offsets the loader has committed of this run's topic (none before its epoch)."""
    from usersignals.warehouse.manifest import read_manifest

    if not warehouse.is_dir():
        return {}
    manifest = read_manifest(warehouse)
    if before is not None and manifest.epoch <= before:
        return {}
    return manifest.committed()


def _drain(
    settings: Settings, worker: subprocess.Popen[bytes], before: int | None, *, progress: bool
) -> None:
    """Waits until the worker has committed, and the loader has written, every record."""
    from usersignals.cli.status import committed_offsets, end_offsets

    topic, parts = settings.events_topic, settings.partitions
    group = f"{settings.topic_prefix}-worker"
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    stable = 0
    with byte_progress(progress, None, "draining") as _advance:
        while time.monotonic() < deadline:
            if worker.poll() is not None:
                raise RunError("worker", f"exited with code {worker.returncode}")
            ends = end_offsets(settings.bootstrap, topic, parts)
            done_worker = committed_offsets(settings.bootstrap, group, topic, parts)
            done_loader = _loaded(settings.warehouse, before)
            behind = [
                p
                for p, end in ends.items()
                if end > 0 and (done_worker.get(p, 0) < end or done_loader.get(p, -1) < end - 1)
            ]
            # Forwarded records can still appear after a drained look: ask twice in a row.
            stable = stable + 1 if not behind else 0
            if stable >= 2:
                return
            time.sleep(0.5)
    raise RunError("drain", f"records still unprocessed after {DRAIN_TIMEOUT_S:.0f} s")


def _fetch_live(settings: Settings) -> dict[str, Any] | None:
    """The worker's live report, as ``report --live`` reads it; ``None`` when unreachable."""
    from usersignals.cli.live import LiveReportError, fetch_live_report

    try:
        return fetch_live_report(settings, timeout=30)
    except LiveReportError:
        return None


def mismatch(live: dict[str, Any] | None, history: dict[str, Any]) -> str | None:
    """Why the live report and this run's history disagree, in one line; None if they agree.

    Only the keys both reports have are compared.
    """
    if live is None:
        return "the worker's live report could not be read, so it was not checked against history"
    differ = [k for k in history if k in live and live[k] != history[k]]
    if not differ:
        return None
    return "live metrics and the warehouse history of this run's records differ in " + ", ".join(
        differ
    )


def _run_history(settings: Settings) -> dict[str, Any]:
    """The report of the records this run loaded (the current epoch), read raw."""
    from usersignals.metrics.flattery import params_of
    from usersignals.warehouse.db import connect
    from usersignals.warehouse.report import warehouse_report

    con = connect(settings.warehouse, current_epoch=True)
    try:
        return warehouse_report(con, flattery=params_of(settings))
    finally:
        con.close()


def _print_report(settings: Settings, *, as_json: bool, full: bool) -> None:
    from usersignals.metrics.flattery import params_of
    from usersignals.warehouse.db import connect
    from usersignals.warehouse.report import render_report, warehouse_report

    con = connect(settings.warehouse)
    try:  # what `usersignals report` prints of the same warehouse
        report = warehouse_report(con, flattery=params_of(settings), history_period="week")
    finally:
        con.close()
    if as_json:
        click.echo(json.dumps(report, indent=2, ensure_ascii=False))
    elif full:
        render_report(report)
    else:
        from usersignals.cli._headlines import render_headlines

        render_headlines(report)
    where = settings.warehouse.resolve()
    click.echo(
        f"\nwarehouse: {where}\nnext: usersignals report --warehouse {where}\n"
        f'      usersignals sql --warehouse {where} "SELECT * FROM active_users"',
        err=True,
    )
