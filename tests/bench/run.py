"""``make bench``: every speed and memory figure, each beside its baseline from the same run.

Each benchmark runs in a fresh Python process (so one's heap does not slow the next) against
one embedded broker started here. Figures are ratios against a baseline measured in the same
run on the same machine, never absolute thresholds; the table says which targets hold.

    python tests/bench/run.py            # the full run (10 M-event report included)
    python tests/bench/run.py --quick    # small sizes, a few minutes
    python tests/bench/run.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from usersignals.broker import EmbeddedBroker  # noqa: E402

FULL = {
    "decode": 1_000_000,
    "sdk": 200_000,
    "capture": 200_000,
    "worker": 1_000_000,
    "loader": 1_000_000,
    "report": (1_000_000, 10_000_000),
    "memory_users": 1_000_000,
}
QUICK = {
    "decode": 100_000,
    "sdk": 50_000,
    "capture": 50_000,
    "worker": 200_000,
    "loader": 100_000,
    "report": (100_000, 1_000_000),
    "memory_users": 200_000,
}


@dataclass
class Row:
    figure: str
    value: float
    unit: str
    baseline: str
    baseline_value: float
    ratio: float
    target: str = ""
    met: bool | None = None


def _bench(module: str, call: str) -> dict[str, Any]:
    """Runs ``tests.bench.<module>.<call>`` in a fresh interpreter; returns its dict."""
    code = (
        f"import json, sys; sys.path.insert(0, {str(ROOT)!r}); "
        f"from tests.bench import {module} as m; print('@@' + json.dumps(m.{call}))"
    )
    started = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, cwd=ROOT
    )
    if out.returncode != 0:
        raise RuntimeError(f"{module} failed:\n{out.stderr[-4000:]}")
    line = next(x for x in reversed(out.stdout.splitlines()) if x.startswith("@@"))
    result: dict[str, Any] = json.loads(line[2:])
    print(f"  {module}: {time.monotonic() - started:.0f} s", file=sys.stderr)
    return result


def _set_baseline_mib(users: int) -> float:
    """Memory of the smallest exact structure: a Python set of the distinct user ids."""
    tracemalloc.start()
    ids = {f"user-{i:09d}" for i in range(users)}
    current, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del ids
    return current / 2**20 * (1_000_000 / users)


def run(sizes: dict[str, Any]) -> tuple[list[Row], dict[str, Any]]:
    raw: dict[str, Any] = {}
    rows: list[Row] = []
    with EmbeddedBroker(partitions=8, topics=()) as broker:
        bs = broker.bootstrap
        from usersignals.broker import ensure_topics

        ensure_topics(bs, 8, ("bench.sdk.events",))
        raw["sdk"] = _bench("bench_sdk", f"run({sizes['sdk']}, {bs!r}, 'bench.sdk.events')")
        raw["capture"] = _bench("bench_capture", f"run({sizes['capture']}, {bs!r})")
        raw["decode"] = _bench("bench_decode", f"run({sizes['decode']})")
        raw["worker"] = _bench("bench_worker", f"run({sizes['worker']}, {bs!r})")
        raw["loader"] = _bench("bench_loader", f"run({sizes['loader']}, {bs!r})")
    raw["report"] = [_bench("bench_report", f"run({n})") for n in sizes["report"]]
    raw["set_baseline_mib_per_million"] = _set_baseline_mib(sizes["memory_users"])

    sdk = raw["sdk"]
    rows.append(
        Row(
            "SDK send (Tracker)",
            sdk["sdk_events_per_s"],
            "events/s",
            "bare kafka-python producer, same bytes",
            sdk["bare_events_per_s"],
            sdk["ratio"],
            "≥ 0.80",
            sdk["ratio"] >= 0.8,
        )
    )
    cap = raw["capture"]
    for name, label in (("posthog", "PostHog POST /batch/"), ("segment", "Segment POST /v1/batch")):
        rows.append(
            Row(
                f"collector, {label} (gzip batches of 100, 4 clients)",
                cap[f"{name}_events_per_s"],
                "events/s",
                "native POST /v1/events, same events",
                cap["native_events_per_s"],
                cap[f"{name}_ratio"],
                "≥ 0.80",
                cap[f"{name}_ratio"] >= 0.8,
            )
        )
    dec = raw["decode"]
    rows.append(
        Row(
            "contract decode (1 record = 100 events)",
            dec["decode_events_per_s"],
            "events/s",
            "json.loads of the same bytes",
            dec["json_loads_events_per_s"],
            dec["ratio"],
        )
    )
    w = raw["worker"]
    r1 = w["ratio_worker_events_to_bare_one_event_records"]
    rows.append(
        Row(
            f"worker: validation + every live metric (SDK traffic, "
            f"{w['events_per_record']:g} events a record)",
            w["worker_events_per_s"],
            "events/s",
            "bare aiokafka consumer, one-event records",
            w["bare_consumer_one_event_records_per_s"],
            r1,
            "≥ 0.25",
            r1 >= 0.25,
        )
    )
    rows.append(
        Row(
            "worker (same, against the SDK traffic topic)",
            w["worker_events_per_s"],
            "events/s",
            "bare aiokafka consumer, same topic",
            w["bare_consumer_events_per_s"],
            w["ratio_worker_events_to_bare_events"],
        )
    )
    rows.append(
        Row(
            "worker, worst case (100-event records, events on 30 random days, half votes/flags)",
            w["scattered_worker_events_per_s"],
            "events/s",
            "bare aiokafka consumer, one-event records",
            w["bare_consumer_one_event_records_per_s"],
            w["ratio_scattered_worker_events_to_bare_one_event_records"],
        )
    )
    per_million = _worker_mib_per_million(w)
    base = raw["set_baseline_mib_per_million"]
    rows.append(
        Row(
            "worker memory per million distinct users",
            round(per_million, 1),
            "MiB",
            "a Python set of the same number of ids",
            round(base, 1),
            round(per_million / base, 2),
        )
    )
    ld = raw["loader"]
    rows.append(
        Row(
            "loader into Parquet",
            ld["loader_events_per_s"],
            "events/s",
            "bare aiokafka consumer, same topic",
            ld["bare_consumer_events_per_s"],
            ld["loader_vs_bare"],
        )
    )
    for rep in raw["report"]:
        n = rep["events"]
        label = f"{n / 1e6:g} M"
        seconds = rep.get("report_compacted_s", rep["report_s"])
        speedup = rep.get("speedup_report_compacted_vs_raw", rep["speedup_report_vs_raw"])
        is_target = n >= 10_000_000
        rows.append(
            Row(
                f"report over {label} events (compacted)",
                seconds,
                "s",
                "DuckDB DAU/WAU/MAU from raw JSON lines",
                rep["raw_json_active_users_s"],
                speedup,
                "< 3 s and ≥ 5x, every key" if is_target else "",
                (seconds < 3 and speedup >= 5) if is_target else None,
            )
        )
        rows.append(
            Row(
                f"report over {label} events (as loaded)",
                rep["report_s"],
                "s",
                "DuckDB DAU/WAU/MAU from raw JSON lines",
                rep["raw_json_active_users_s"],
                rep["speedup_report_vs_raw"],
            )
        )
    return rows, raw


def _worker_mib_per_million(w: dict[str, Any]) -> float:
    if "worker_mib_per_million_users" in w:
        return float(w["worker_mib_per_million_users"])
    grown = w["worker_rss_done_mib"] - w["worker_rss_idle_mib"]
    return float(grown / w["distinct_users"] * 1_000_000)


def machine() -> str:
    mem_kib = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal:")
    )
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return (
        f"{os.cpu_count()} cores ({cpu}), {mem_kib / 2**20:.0f} GiB memory, "
        f"Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}"
    )


def render(rows: list[Row]) -> str:
    head = ("figure", "value", "baseline (same run)", "baseline value", "ratio", "target", "")
    table = [head] + [
        (
            r.figure,
            f"{r.value:,.3g} {r.unit}" if r.unit == "s" else f"{r.value:,.0f} {r.unit}",
            r.baseline,
            f"{r.baseline_value:,.3g} {r.unit}"
            if r.unit == "s"
            else f"{r.baseline_value:,.0f} {r.unit}",
            f"{r.ratio:g}x" if r.unit == "s" else f"{r.ratio:g}",
            r.target,
            "" if r.met is None else ("met" if r.met else "NOT met"),
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in table]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a few minutes")
    parser.add_argument("--json", type=Path, help="also write every raw figure to this file")
    args = parser.parse_args()
    print(f"usersignals bench on {machine()}", file=sys.stderr)
    rows, raw = run(QUICK if args.quick else FULL)
    print(f"\nusersignals bench ({'quick' if args.quick else 'full'}) on {machine()}\n")
    print(render(rows))
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "raw": raw}, indent=2))


if __name__ == "__main__":
    main()
