"""The dead-letter table: reading rejected input back, and replaying it into the events topic.

The loader writes the rows (see :mod:`usersignals.warehouse.rows`); here they are read (from
the files the manifest names: committed ranges only) and, once the producer is fixed or the
contract relaxed, sent again.
A replayed rejection is remembered in ``_deadletter/replayed.jsonl`` so a second replay does
not send it twice; a replayed record that is still invalid is dead-lettered again at its new
offset.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from usersignals.ingest.contract import partition_for
from usersignals.ingest.event import is_prefix
from usersignals.warehouse.layout import DEADLETTER_SCHEMA, live_deadletter_files

__all__ = [
    "ReplayResult",
    "read_deadletter",
    "replay",
    "replay_key",
    "replayed_positions",
    "summary",
]

LEDGER = Path("_deadletter") / "replayed.jsonl"

Position = tuple[int, int, int | None]


def read_deadletter(root: Path, reason: str | None = None) -> pa.Table:
    """Committed dead-letter rows in log order, optionally of one reason only.

    ``source_offset`` is the warehouse offset (the Kafka offset in a topic's first epoch).
    """
    files = live_deadletter_files(root)
    if not files:
        return DEADLETTER_SCHEMA.empty_table()
    table = pa.concat_tables(
        [pq.read_table(f, schema=DEADLETTER_SCHEMA).replace_schema_metadata(None) for f in files]
    )
    if reason is not None:
        table = table.filter(pc.equal(table.column("reason"), reason))
    keys = [("source_partition", "ascending"), ("source_offset", "ascending")]
    return table.take(pc.sort_indices(table, sort_keys=[*keys, ("batch_index", "ascending")]))


def summary(root: Path) -> list[dict[str, Any]]:
    """``[{"reason", "count"}]`` sorted by reason."""
    table = read_deadletter(root)
    counts = table.group_by("reason").aggregate([("reason", "count")]).to_pylist()
    return sorted(
        ({"reason": c["reason"], "count": c["reason_count"]} for c in counts),
        key=lambda row: str(row["reason"]),
    )


def replay_key(raw: bytes, record_key: bytes | None) -> bytes | None:
    """The key to send a rejected element with: its ``user_id`` if it has one as a string."""
    try:
        obj = msgspec.json.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return record_key
    if isinstance(obj, dict) and isinstance(obj.get("user_id"), str) and obj["user_id"]:
        return str(obj["user_id"]).encode()
    return record_key


def replayed_positions(root: Path) -> set[Position]:
    """Dead-letter rows already replayed, as (source partition, offset, batch index)."""
    path = Path(root) / LEDGER
    if not path.exists():
        return set()
    out: set[Position] = set()
    for line in path.read_text().splitlines():
        if line.strip():
            p, o, i = json.loads(line)
            out.add((int(p), int(o), None if i is None else int(i)))
    return out


@dataclass(frozen=True)
class ReplayResult:
    """How many rows were sent again, how many were skipped as already replayed, and how many
    were left out because their row keeps only the first bytes of a record over 1 MiB."""

    sent: int
    skipped: int
    cut: int = 0


Send = Callable[[bytes, bytes | None, int], None]
"""(value, key, partition) -> None; the seam between replay and a Kafka producer."""


def replay(
    root: Path,
    send: Send,
    partitions: int,
    *,
    reason: str | None = None,
    again: bool = False,
    dry_run: bool = False,
) -> ReplayResult:
    """Sends dead-letter rows' bytes again through ``send``, keyed and partitioned by user.

    Args:
        root: The warehouse directory.
        send: Sends one record; the caller flushes its producer afterwards.
        partitions: Partitions of the events topic.
        reason: Only rows of this reason code.
        again: Also rows replayed before.
        dry_run: Count only; send nothing and remember nothing.
    """
    table = read_deadletter(root, reason)
    done = set() if again else replayed_positions(root)
    sent = skipped = cut = 0
    ledger: list[str] = []
    columns = ["source_partition", "source_offset", "batch_index", "record_key", "raw", "message"]
    for row in table.select(columns).to_pylist():
        pos: Position = (row["source_partition"], row["source_offset"], row["batch_index"])
        if pos in done:
            skipped += 1
            continue
        if is_prefix(row["message"]):  # a fragment: sent again it would be one more dead letter
            cut += 1
            continue
        sent += 1
        if dry_run:
            continue
        key = replay_key(row["raw"], row["record_key"])
        partition = partition_for(key.decode("utf-8", "replace"), partitions) if key else pos[0]
        send(row["raw"], key, partition)
        ledger.append(json.dumps(list(pos)))
    if ledger:
        path = Path(root) / LEDGER
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as f:
            f.write("\n".join(ledger) + "\n")
    return ReplayResult(sent, skipped, cut)
