"""Report latency from the Parquet warehouse against DuckDB reading the raw JSON lines.

``run(n)`` writes ``n`` synthetic events twice, as the loader would lay them out in the
warehouse and as the JSON lines a producer sends, then times, in one process:

- the whole report (``warehouse_report`` with the history keys: every key of ``report
  --json``; a fresh connection each time) over the compacted warehouse (rollups; the headline
  figure) and over the loader's layout (every row read),
- the active-user series alone from the warehouse views (loader layout),
- DuckDB computing the same DAU/WAU/MAU straight from the JSON lines (``read_json``),

and checks that every path gives the same series and both layouts the same report. Columns are
generated with numpy in bulk (about ``n / 20`` users over 60 days, a heavy-tailed activity per
user, 1 % redelivered copies), so 10 M events take seconds to make, not minutes.

Run alone: ``python tests/bench/bench_report.py 1000000 10000000``.
"""

from __future__ import annotations

import gc
import json
import shutil
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from usersignals.warehouse.commit import write_range
from usersignals.warehouse.compact import compact
from usersignals.warehouse.db import connect
from usersignals.warehouse.layout import DEADLETTER_SCHEMA, EVENTS_SCHEMA, FileRange
from usersignals.warehouse.report import warehouse_report

__all__ = ["generate", "run", "write_jsonl", "write_warehouse"]

DAYS = 60
PARTITIONS = 8
RECORD_EVENTS = 100
"""Events per Kafka record (batch_index runs 0..99)."""
FLUSH_EVENTS = 250_000
"""Events per loader flush of one partition (one file per event day touched)."""
DUPLICATE_SHARE = 0.01
FIRST_DAY = np.datetime64("2026-09-01", "D")
MODELS = np.array(["m-5.0", "m-5.1", "m-5.2", "m-5.3", "m-5.4", "m-6.0-preview"])
TYPES = np.array(["message", "session_start", "session_end", "feedback", "preference", "risk_flag"])
TYPE_SHARE = np.array([0.70, 0.08, 0.08, 0.08, 0.03, 0.03])
CATEGORIES = np.array(["sycophancy", "emotional_dependence", "self_harm", "mania", "other"])
SEVERITIES = np.array(["low", "medium", "high", "critical"])
PLATFORMS = np.array(["web", "ios", "android", "desktop", "api"])
WINNERS = np.array(["a", "b", "tie", "both_bad"])
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_DIGITS = np.frombuffer(b"0123456789", dtype=np.uint8)


def _fixed_strings(chars: np.ndarray[Any, Any]) -> pa.Array:
    """A string array from an (n, width) uint8 matrix of ASCII, without Python objects."""
    n, width = chars.shape
    offsets = pa.py_buffer((np.arange(n + 1, dtype=np.int64) * width).astype(np.int32).tobytes())
    return pa.StringArray.from_buffers(n, offsets, pa.py_buffer(np.ascontiguousarray(chars)))


def _numbered(prefix: bytes, numbers: np.ndarray[Any, Any], width: int) -> pa.Array:
    """``prefix`` + zero-padded decimal ``numbers``, e.g. ``u00001234``."""
    n = len(numbers)
    chars = np.empty((n, len(prefix) + width), dtype=np.uint8)
    chars[:, : len(prefix)] = np.frombuffer(prefix, dtype=np.uint8)
    rest = numbers.astype(np.int64).copy()
    for col in range(len(prefix) + width - 1, len(prefix) - 1, -1):
        chars[:, col] = _DIGITS[rest % 10]
        rest //= 10
    return _fixed_strings(chars)


def _uuids(rng: np.random.Generator, n: int) -> pa.Array:
    chars = np.empty((n, 36), dtype=np.uint8)
    hexes = _HEX[rng.integers(0, 16, size=(n, 32), dtype=np.uint8)]
    cut = [(0, 8), (9, 13), (14, 18), (19, 23), (24, 36)]
    src = 0
    for start, end in cut:
        chars[:, start:end] = hexes[:, src : src + end - start]
        src += end - start
        if end < 36:
            chars[:, end] = ord("-")
    return _fixed_strings(chars)


def _pick(rng: np.random.Generator, values: np.ndarray[Any, Any], n: int, p: Any = None) -> Any:
    return values[rng.choice(len(values), size=n, p=p)]


def generate(n_events: int, seed: int = 7) -> pa.Table:
    """``n_events`` rows of ``EVENTS_SCHEMA`` in log order, 1 % of them redelivered copies."""
    rng = np.random.default_rng(seed)
    n_orig = n_events - int(n_events * DUPLICATE_SHARE)
    users = max(n_events // 20, 10)
    weight = rng.pareto(1.3, users) + 1.0
    user = rng.choice(users, size=n_orig, p=weight / weight.sum())
    first = rng.integers(0, DAYS, users)
    life = rng.integers(1, DAYS, users)
    day = np.minimum(first[user] + rng.integers(0, life[user] + 1), DAYS - 1)
    epoch_us = FIRST_DAY.astype("datetime64[us]").astype(np.int64)
    micros = epoch_us + day * 86_400_000_000 + rng.integers(0, 86_400_000_000, n_orig)
    kind = rng.choice(len(TYPES), size=n_orig, p=TYPE_SHARE)
    is_type = {name: kind == i for i, name in enumerate(TYPES)}

    def where(mask: np.ndarray[Any, Any], values: Any) -> Any:
        return pa.array(np.where(mask, values, None))

    model = np.where(rng.random(n_orig) < 0.95, _pick(rng, MODELS, n_orig), None)
    rating = rng.choice([1, -1, 0], size=n_orig, p=[0.7, 0.25, 0.05])
    # feedback and messages name a message of the user; a few votes land on the same one
    message_no = user.astype(np.int64) * 16 + rng.integers(0, 16, n_orig)
    message_id = _numbered(b"msg-", message_no, 10)
    msg_mask = is_type["message"] | is_type["feedback"]
    columns: dict[str, Any] = {
        "event_id": _uuids(rng, n_orig),
        "type": pa.array(TYPES[kind]),
        "user_id": _numbered(b"u", user, 8),
        "ts": pa.array(micros, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
        "day": pa.array((FIRST_DAY + day.astype("timedelta64[D]")).astype("datetime64[D]")),
        "session_id": _numbered(b"s", user.astype(np.int64) * 64 + day, 10),
        "model": pa.array(model, pa.string()),
        "platform": pa.array(_pick(rng, PLATFORMS, n_orig)),
        "role": where(is_type["message"], _pick(rng, np.array(["user", "assistant"]), n_orig)),
        "tokens": pa.array(np.where(is_type["message"], rng.integers(1, 800, n_orig), None)),
        "message_id": pa.compute.if_else(pa.array(msg_mask), message_id, pa.nulls(n_orig)),
        "rating": pa.array(np.where(is_type["feedback"], rating, None), pa.int32()),
        "model_a": where(is_type["preference"], MODELS[rng.integers(0, 3, n_orig)]),
        "model_b": where(is_type["preference"], MODELS[rng.integers(3, 6, n_orig)]),
        "winner": where(is_type["preference"], _pick(rng, WINNERS, n_orig)),
        "category": where(is_type["risk_flag"], _pick(rng, CATEGORIES, n_orig)),
        "severity": where(
            is_type["risk_flag"], _pick(rng, SEVERITIES, n_orig, [0.5, 0.3, 0.15, 0.05])
        ),
        "source": where(is_type["risk_flag"], "classifier"),
        "duration_s": pa.array(
            np.where(is_type["session_end"], rng.random(n_orig) * 1800, None), pa.float64()
        ),
        "name": pa.nulls(n_orig, pa.string()),
        "properties": where(rng.random(n_orig) < 0.2, '{"client":"web-2.3","ab":"b"}'),
        "extra": pa.nulls(n_orig, pa.string()),
    }
    columns["received_at"] = columns["ts"]
    table = pa.table(columns)
    # redelivered copies (same record sent twice), appended later in the log
    copies = np.sort(rng.choice(n_orig, size=n_events - n_orig, replace=False))
    table = pa.concat_tables([table, table.take(copies)])
    # the log of each partition is roughly in time order: sort by (partition, ts)
    partition = (user.astype(np.int64) * 2_654_435_761 % 2**32 % PARTITIONS).astype(np.int32)
    partition = np.concatenate([partition, partition[copies]])
    order_ts = np.concatenate([micros, micros[copies] + 60_000_000])
    order = np.lexsort((order_ts, partition))
    table = table.take(order)
    partition = partition[order]
    position = np.empty(n_events, dtype=np.int64)
    for p in range(PARTITIONS):
        mask = partition == p
        position[mask] = np.arange(int(mask.sum()))
    table = table.append_column("source_partition", pa.array(partition, pa.int32()))
    table = table.append_column("source_offset", pa.array(position // RECORD_EVENTS))
    table = table.append_column(
        "batch_index", pa.array((position % RECORD_EVENTS).astype(np.int32))
    )
    return table.select(EVENTS_SCHEMA.names).cast(EVENTS_SCHEMA)


def _dead_rows(n: int, partition: int, offset: int) -> pa.Table:
    received = pa.scalar(0, pa.timestamp("us", tz="UTC")).cast(pa.timestamp("us", tz="UTC"))
    return pa.Table.from_pylist(
        [
            {
                "reason": "bad_value" if i % 3 else "not_json",
                "message": "rejected in the benchmark",
                "field": None,
                "source_topic": "usersignals.events",
                "source_partition": partition,
                "source_offset": offset,
                "batch_index": i,
                "record_key": None,
                "raw": b"{",
                "received_at": received.as_py(),
            }
            for i in range(n)
        ],
        schema=DEADLETTER_SCHEMA,
    )


def write_warehouse(table: pa.Table, root: Path) -> int:
    """Writes the log as the loader does (flushes per partition, a file per day); files made."""
    files = 0
    partitions = table.column("source_partition").to_numpy()
    offsets = table.column("source_offset").to_numpy()
    for p in range(PARTITIONS):
        rows = np.flatnonzero(partitions == p)
        for start in range(0, len(rows), FLUSH_EVENTS):
            chunk = rows[start : start + FLUSH_EVENTS]
            # a flush ends on a record boundary: keep whole records together
            first, last = int(offsets[chunk[0]]), int(offsets[chunk[-1]])
            part = table.take(chunk)
            dead = _dead_rows(3, p, last) if start == 0 else DEADLETTER_SCHEMA.empty_table()
            files += len(write_range(root, FileRange(p, first, last), part, dead))
    return files


def write_jsonl(root: Path, out: Path) -> int:
    """The same events as the JSON lines a producer sends (absent fields left out); bytes."""
    con = connect(root, read_only=False)
    con.execute("SET enable_progress_bar = false")
    fields = [
        n
        for n in EVENTS_SCHEMA.names
        if n
        not in (
            "day",
            "source_partition",
            "source_offset",
            "batch_index",
            "received_at",
            "properties",
            "extra",
        )
    ]
    parts = ", ".join(
        f"'{n}', strftime(ts, '%Y-%m-%dT%H:%M:%S.%fZ')" if n == "ts" else f"'{n}', {n}"
        for n in fields
    )
    con.execute(
        f"""COPY (
            SELECT regexp_replace(CAST(json_object({parts}) AS VARCHAR), ',"[a-z_]+":null', '', 'g')
            FROM events_raw ORDER BY source_partition, source_offset, batch_index
        ) TO '{out}' (FORMAT csv, HEADER false, QUOTE '', ESCAPE '', DELIMITER '\t')"""
    )
    con.close()
    return out.stat().st_size


RAW_ACTIVE_USERS = """
WITH raw AS (
    SELECT event_id, user_id, CAST(left(ts, 10) AS DATE) AS day
    FROM read_json('{path}', format = 'newline_delimited',
                   columns = {{event_id: 'VARCHAR', user_id: 'VARCHAR', ts: 'VARCHAR'}})
),
user_days AS (
    SELECT DISTINCT user_id, day FROM (
        SELECT any_value(user_id) AS user_id, any_value(day) AS day FROM raw GROUP BY event_id
    )
),
days AS (
    SELECT CAST(d AS DATE) AS day
    FROM (SELECT min(day) AS a, max(day) AS b FROM user_days),
         generate_series(a, b, INTERVAL 1 DAY) AS g(d)
)
SELECT days.day,
       count(DISTINCT u.user_id) FILTER (WHERE u.day = days.day) AS dau,
       count(DISTINCT u.user_id) FILTER (WHERE u.day > days.day - 7) AS wau,
       count(DISTINCT u.user_id) AS mau
FROM days JOIN user_days AS u ON u.day BETWEEN days.day - 29 AND days.day
GROUP BY days.day ORDER BY days.day
"""
"""DAU/WAU/MAU the straightforward way, from the JSON lines (copies of an id are identical)."""


def _timed(fn: Any) -> tuple[float, Any]:
    gc.collect()
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def _runs(fn: Any, repeat: int) -> tuple[list[float], Any]:
    """Seconds of each of ``repeat`` runs (rounded) and the last run's result."""
    times, out = [], None
    for _ in range(repeat):
        t, out = _timed(fn)
        times.append(round(t, 3))
    return times, out


def _report(root: Path) -> dict[str, Any]:
    """What ``usersignals report --json`` computes: every key, the history-only ones too."""
    con = connect(root)
    try:
        return warehouse_report(con, history_period="week")
    finally:
        con.close()


def _active(root: Path) -> list[tuple[Any, ...]]:
    con = connect(root)
    try:
        rows = con.sql("SELECT day, dau, wau, mau FROM active_users ORDER BY day").fetchall()
        return [tuple(r) for r in rows]
    finally:
        con.close()


def _raw(jsonl: Path) -> list[tuple[Any, ...]]:
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    try:
        return [tuple(r) for r in con.sql(RAW_ACTIVE_USERS.format(path=jsonl)).fetchall()]
    finally:
        con.close()


def _series(report: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [
        (date.fromisoformat(r["day"]), r["dau"], r["wau"], r["mau"]) for r in report["active_users"]
    ]


TARGET_EVENTS = 10_000_000
TARGET_SECONDS = 3.0
TARGET_SPEEDUP = 5.0
"""The whole report, history keys included, over 10 M compacted events: under 3 s and at
least 5x faster than DuckDB computing DAU/WAU/MAU alone from the raw JSON lines."""


def run(
    n_events: int, workdir: Path | None = None, repeat: int = 3, raw_repeat: int = 1
) -> dict[str, Any]:
    """Generates ``n_events``, times the queries, returns the figures (every run, best, median).

    Layouts, both timed in the same run: ``loader`` is the warehouse as the loader writes it
    (a file per flush and event day, no rollups: the report reads and deduplicates every row);
    ``compacted`` is after ``usersignals warehouse compact`` (what the loader does by itself to
    days quiet for ``compact_after``): a file per day plus its rollups, which the report reads
    instead of the rows. The raw-JSON query computes DAU/WAU/MAU from the JSON lines of the
    same events (each event_id once) and must give the same series.
    """
    tmp = Path(tempfile.mkdtemp(prefix="bench-report-", dir=workdir))
    try:
        root = tmp / "warehouse"
        jsonl = tmp / "events.jsonl"
        start = time.perf_counter()
        files = write_warehouse(generate(n_events), root)
        t_write = time.perf_counter() - start
        t_json, json_bytes = _timed(lambda: write_jsonl(root, jsonl))
        loader_runs, report = _runs(lambda: _report(root), repeat)
        active_runs, series = _runs(lambda: _active(root), repeat)
        t_compact, _ = _timed(lambda: compact(root))
        compacted_runs, report_c = _runs(lambda: _report(root), repeat)
        raw_runs, raw_series = _runs(lambda: _raw(jsonl), raw_repeat)
        best_c, best_raw = min(compacted_runs), min(raw_runs)
        return {
            "events": n_events,
            "days": len(report["active_users"]),
            "peak_mau": max(r["mau"] for r in report["active_users"]),
            "loader_files": files,
            "json_bytes": json_bytes,
            "layouts": {
                "report_s": "loader layout: a file per flush and day, every row read",
                "report_compacted_s": "after compaction: a file per day + rollups (the default"
                " once a day is quiet for compact_after)",
            },
            "report_compacted_s": best_c,
            "report_compacted_median_s": statistics.median(compacted_runs),
            "report_compacted_runs_s": compacted_runs,
            "report_s": min(loader_runs),
            "report_median_s": statistics.median(loader_runs),
            "report_runs_s": loader_runs,
            "active_users_s": min(active_runs),
            "raw_json_active_users_s": best_raw,
            "raw_json_runs_s": raw_runs,
            "speedup_report_compacted_vs_raw": round(best_raw / best_c, 1),
            "speedup_report_vs_raw": round(best_raw / min(loader_runs), 1),
            "target": f"over {TARGET_EVENTS:,} events: compacted report < {TARGET_SECONDS} s "
            f"and >= {TARGET_SPEEDUP:g}x raw",
            "target_met": (best_c < TARGET_SECONDS and best_raw / best_c >= TARGET_SPEEDUP)
            if n_events >= TARGET_EVENTS
            else None,
            "same_series": series == raw_series == _series(report_c) and report == report_c,
            "setup_s": {
                "generate_and_write_parquet": round(t_write, 1),
                "write_jsonl": round(t_json, 1),
                "compact_all_days_with_rollups": round(t_compact, 1),
            },
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    for arg in sys.argv[1:] or ["1000000"]:
        print(json.dumps(run(int(arg.replace("_", ""))), indent=2), flush=True)
