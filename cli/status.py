"""``usersignals status``: consumer lag per partition, and the events accepted and rejected.

End offsets are the high watermarks a fetch reports: the embedded broker (tansu) answers
ListOffsets(latest) with the base offset of the last record batch plus one, which would hide
the tail of every partition. On Apache Kafka both agree.
"""

from __future__ import annotations

import json
import time
from typing import Any

import click

from usersignals.broker import NO_AUTO_CREATE, refuse_auto_create
from usersignals.cli._kafka import client_timeouts, kafka_errors
from usersignals.cli._options import bootstrap_option, kafka_timeout_option, settings_from
from usersignals.cli.live import get_json, worker_urls
from usersignals.config import Settings
from usersignals.errors import StatusError

__all__ = ["StatusError", "command", "end_offsets", "gather_status"]

POLL_TIMEOUT_MS = 200


def end_offsets(
    bootstrap: str, topic: str, partitions: int, *, timeout: float = 10.0
) -> dict[int, int]:
    """The offset after the last record of each partition (read from fetch responses).

    Each partition whose listed end is short is fetched on its own: kafka-python parses one
    partition's fetch response at a time, and only as earlier partitions' records are
    consumed, so probing them together left the high watermark of all but the first ones
    unread, and their short listed end stood (``status`` then showed the worker's committed
    offset past the end: a negative lag).

    Raises:
        StatusError: a partition's end could not be read within ``timeout`` seconds.
    """
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        **NO_AUTO_CREATE,
        **client_timeouts(timeout),
    )
    refuse_auto_create(consumer)
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        listed = consumer.end_offsets(tps)
        ends = {tp.partition: int(listed[tp]) for tp in tps}
        deadline = time.monotonic() + timeout
        for tp in tps:
            if listed[tp] > 0:
                high = _highwater(consumer, tp, int(listed[tp]), deadline)
                ends[tp.partition] = max(ends[tp.partition], high)
        return ends
    finally:
        consumer.close()


def _highwater(consumer: Any, tp: Any, listed: int, deadline: float) -> int:
    """The high watermark of one fetch of ``tp`` from just before its listed end."""
    consumer.assign([tp])
    consumer.seek(tp, max(listed - 1, 0))
    while (high := consumer.highwater(tp)) is None:
        if time.monotonic() > deadline:
            raise StatusError(tp.topic, tp.partition)
        consumer.poll(timeout_ms=POLL_TIMEOUT_MS, max_records=1)
    return int(high)


def committed_offsets(
    bootstrap: str, group: str, topic: str, partitions: int, *, timeout: float = 10.0
) -> dict[int, int]:
    """Committed offsets of a consumer group (partitions without a commit left out)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        **NO_AUTO_CREATE,
        **client_timeouts(timeout),
    )
    refuse_auto_create(consumer)
    try:
        out: dict[int, int] = {}
        for p in range(partitions):
            offset = consumer.committed(TopicPartition(topic, p))
            if offset is not None and offset >= 0:
                out[p] = int(offset)
        return out
    finally:
        consumer.close()


def gather_status(settings: Settings, *, timeout: float = 5.0) -> dict[str, Any]:
    """Offsets and lag per partition for the worker and loader groups, and worker counts.

    Raises:
        BrokerError: Kafka did not answer within ``settings.kafka_timeout_s`` (retryable).
        StatusError: a partition's end offset could not be read in that time.
    """
    topic, n = settings.events_topic, settings.partitions
    wait = settings.kafka_timeout_s
    groups = {
        "worker": f"{settings.topic_prefix}-worker",
        "loader": f"{settings.topic_prefix}-loader",
    }
    with kafka_errors(settings):
        ends = end_offsets(settings.bootstrap, topic, n, timeout=wait)
        committed = {
            name: committed_offsets(settings.bootstrap, group, topic, n, timeout=wait)
            for name, group in groups.items()
        }
    partitions = []
    for p in range(n):
        row: dict[str, Any] = {"partition": p, "end_offset": ends[p]}
        for name, offsets in committed.items():
            row[f"{name}_committed"] = offsets.get(p)
            row[f"{name}_lag"] = ends[p] - offsets.get(p, 0)
        partitions.append(row)
    workers: list[dict[str, Any]] = []
    accepted = 0
    rejected: dict[str, int] = {}
    for url in worker_urls(settings):
        try:
            answer = get_json(f"{url}/v1/status", timeout)
        except (OSError, ValueError) as exc:
            workers.append({"url": url, "reachable": False, "error": str(exc)})
            continue
        workers.append({"url": url, "reachable": True, "partitions": sorted(answer["partitions"])})
        if "loader" in answer:  # the worker that runs the loader says how it is
            workers[-1]["loader"] = answer["loader"]
        accepted += answer["accepted"]
        for reason, count in answer["rejected"].items():
            rejected[reason] = rejected.get(reason, 0) + count
    reachable = any(w["reachable"] for w in workers)
    return {
        "topic": topic,
        "groups": groups,
        "partitions": partitions,
        "workers": workers,
        "accepted": accepted if reachable else None,
        "rejected": dict(sorted(rejected.items())) if reachable else None,
    }


@click.command("status")
@bootstrap_option
@kafka_timeout_option
@click.option("--worker-url", default=None, help="Worker address(es), comma-separated.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def command(
    bootstrap: str | None, kafka_timeout: float | None, worker_url: str | None, as_json: bool
) -> None:
    """Consumer lag per partition, and the events accepted and rejected by the workers.

    Accepted and rejected counts come from the running workers (/v1/status); when none
    answers they are shown as unknown.

    \b
    Example:
      usersignals status --json
    """
    settings = settings_from(
        bootstrap=bootstrap, worker_url=worker_url, kafka_timeout_s=kafka_timeout
    )
    status = gather_status(settings)
    if as_json:
        click.echo(json.dumps(status, sort_keys=True))
        return
    click.echo(f"topic {status['topic']}")
    click.echo(f"{'partition':>9} {'end':>10} {'worker':>10} {'lag':>8} {'loader':>10} {'lag':>8}")
    for row in status["partitions"]:
        click.echo(
            f"{row['partition']:>9} {row['end_offset']:>10} "
            f"{_show(row['worker_committed']):>10} {row['worker_lag']:>8} "
            f"{_show(row['loader_committed']):>10} {row['loader_lag']:>8}"
        )
    for w in status["workers"]:
        if w["reachable"]:
            click.echo(f"worker {w['url']}: partitions {w['partitions']}")
            if "loader" in w:
                click.echo(loader_line(w["loader"]))
        else:
            click.echo(f"worker {w['url']}: not reachable ({w['error']})")
    if status["accepted"] is None:
        click.echo("accepted/rejected: unknown (no worker reachable)")
    else:
        rejected = status["rejected"]
        detail = ", ".join(f"{r} {n}" for r, n in rejected.items()) or "none"
        click.echo(
            f"accepted {status['accepted']} events; rejected {sum(rejected.values())} ({detail})"
        )


def loader_line(loader: dict[str, Any], now: float | None = None) -> str:
    """One readable line of a worker's ``loader`` status section."""
    if loader["up"]:
        state = f"up (pid {loader['pid']})"
        if loader.get("paused"):
            state += f", paused on {loader['paused']}"
    else:
        state = "DOWN"
        if loader.get("restart_in") is not None:
            state += f", restarting in {loader['restart_in']:.1f} s"
    commit = loader.get("last_commit")
    ago = (
        "never"
        if commit is None
        else f"{max(0.0, (time.time() if now is None else now) - commit):.0f} s ago"
    )
    lag = sum(loader.get("lag", {}).values())
    errors = ", ".join(f"{k} {n}" for k, n in loader.get("errors", {}).items()) or "none"
    return (
        f"  loader: {state}; {loader['restarts']} restarts; last commit {ago}; "
        f"lag {lag}; errors: {errors}"
    )


def _show(value: int | None) -> str:
    return "-" if value is None else str(value)
