"""The arena ratings file: the real loader refits it exactly when the count table changes."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
from kafka import KafkaProducer

from tests.conftest import Kafka
from usersignals.ingest.contract import Event, encode_batch, partition_for
from usersignals.warehouse.compact import compact
from usersignals.warehouse.db import connect, views_script, views_sql
from usersignals.warehouse.derived import (
    ARENA_RATINGS_SCHEMA,
    arena_ratings_path,
    refresh_arena_ratings,
)
from usersignals.warehouse.layout import DEADLETTER_SCHEMA, EVENTS_SCHEMA
from usersignals.warehouse.loader import LoaderStats, RollPolicy, run_loader
from usersignals.warehouse.manifest import ensure_manifest, read_manifest

START = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
MODELS = ("m-a", "m-b", "m-c", "m-d")
STRENGTH = {"m-a": 1.6, "m-b": 1.0, "m-c": 0.8, "m-d": 0.4}
ROLL = RollPolicy(max_events=120, max_bytes=1 << 20, max_seconds=0.2, compact_after=None)
REPORT_COLUMNS = ("model", "rating", "ci_low", "ci_high", "votes", "rank")


def traffic(seed: int, n: int, *, votes: bool) -> list[Event]:
    """``n`` events of 24 users over three days: preference votes (models drawn by strength)
    and messages, or messages only."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        user = f"user-{rng.randrange(24)}"
        ts = START + timedelta(days=i % 3, minutes=i)
        if votes and i % 3:
            a, b = rng.sample(MODELS, 2)
            r = rng.random() * (STRENGTH[a] + STRENGTH[b] + 0.3)
            winner = "a" if r < STRENGTH[a] else "b" if r < STRENGTH[a] + STRENGTH[b] else "tie"
            out.append(
                Event(
                    event_id=f"s{seed}-{i}",
                    type="preference",
                    user_id=user,
                    ts=ts,
                    model_a=a,
                    model_b=b,
                    winner=winner,
                )
            )
        else:
            out.append(
                Event(
                    event_id=f"s{seed}-{i}",
                    type="message",
                    user_id=user,
                    ts=ts,
                    role="user",
                    model=rng.choice(MODELS),
                )
            )
    return out


def produce(kafka: Kafka, events: list[Event], per_record: int = 7) -> None:
    """Sends ``events`` to the events topic, each to its user's partition, a few per record."""
    by_partition: dict[int, list[Event]] = {}
    for e in events:
        by_partition.setdefault(partition_for(e.user_id, 8), []).append(e)
    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all", linger_ms=5)
    futures = [
        producer.send(
            kafka.settings.events_topic, value=encode_batch(part[i : i + per_record]), partition=p
        )
        for p, part in sorted(by_partition.items())
        for i in range(0, len(part), per_record)
    ]
    producer.flush()
    for f in futures:
        f.get(timeout=30)
    producer.close()


def load(kafka: Kafka) -> LoaderStats:
    return run_loader(kafka.settings, roll=ROLL, drain=True)


def report_arena(kafka: Kafka) -> list[dict[str, Any]]:
    """``usersignals report --json``'s ``arena`` rows, as a user runs it."""
    done = subprocess.run(
        [sys.executable, "-m", "usersignals", "report", "--json"],
        env=kafka.env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    rows: list[dict[str, Any]] = json.loads(done.stdout)["arena"]
    return rows


def ratings(root: Path) -> list[dict[str, Any]]:
    """``SELECT * FROM arena_ratings`` of a :func:`connect` connection, as dicts."""
    cur = connect(root).execute("SELECT * FROM arena_ratings ORDER BY model")
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def grafana_ratings(root: Path) -> list[tuple[Any, ...]]:
    """The same view through the self-contained script Grafana's datasource runs."""
    con = duckdb.connect()
    con.execute(views_script(root))
    return con.execute("SELECT * FROM arena_ratings ORDER BY model").fetchall()


def check_equal(kafka: Kafka, generation: int, total: int) -> list[dict[str, Any]]:
    root = kafka.settings.warehouse
    got = ratings(root)
    want = report_arena(kafka)
    assert [{c: r[c] for c in REPORT_COLUMNS} for r in got] == want
    assert [list(r) for r in got] == [[*REPORT_COLUMNS, "generation", "total_votes"]] * len(got)
    assert {(r["generation"], r["total_votes"]) for r in got} == {(generation, total)}
    assert grafana_ratings(root) == [tuple(r.values()) for r in got]
    return got


def file_id(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_ino, st.st_mtime_ns


def votes_in(events: list[Event]) -> int:
    return sum(e.type == "preference" for e in events)


def test_the_loader_keeps_the_reports_arena_ratings_refitting_only_on_new_votes(
    kafka: Kafka,
) -> None:
    root = kafka.settings.warehouse
    path = arena_ratings_path(root)

    # first load: fitted once, after the last commit, to the whole warehouse's count table
    first = traffic(1, 600, votes=True)
    produce(kafka, first)
    stats = load(kafka)
    assert (stats.events, stats.arena_fits) == (600, 1)
    assert stats.flushes > 1
    fitted = read_manifest(root).generation
    rows = check_equal(kafka, fitted, votes_in(first))
    assert [r["model"] for r in rows] == list(MODELS)
    assert sum(r["votes"] for r in rows) == 2 * votes_in(first) == 800
    assert [r["rank"] for r in rows] == [1, 1, 2, 3]  # m-a and m-b overlap; m-d last
    assert all(r["ci_low"] < r["rating"] < r["ci_high"] for r in rows)
    before = file_id(path)

    # new commits without a vote: the count table is the same, the file is not rewritten
    (path.parent / f".{path.name}.load.tmp").write_bytes(b"a write killed midway")
    produce(kafka, traffic(2, 90, votes=False))
    stats = load(kafka)
    assert (stats.events, stats.arena_fits) == (90, 0)
    assert not list(path.parent.glob(".*"))  # the killed write's leftover is gone
    assert read_manifest(root).generation > fitted
    assert file_id(path) == before
    check_equal(kafka, fitted, votes_in(first))

    # compaction changes the files, not the count table: the ratings stand and still match
    assert len(compact(root)) == 3
    stats = load(kafka)  # nothing new: one check, no fit
    assert (stats.events, stats.arena_fits) == (0, 0)
    assert file_id(path) == before
    check_equal(kafka, fitted, votes_in(first))

    # new votes: refitted, at the generation of the last commit
    more = traffic(3, 60, votes=True)
    produce(kafka, more)
    stats = load(kafka)
    assert (stats.events, stats.arena_fits) == (60, 1)
    assert file_id(path) != before
    refitted = check_equal(kafka, read_manifest(root).generation, votes_in(first + more))
    assert refitted != rows
    assert not list(path.parent.glob(".*"))  # no temporary file left


def test_the_view_is_empty_with_the_files_columns_before_there_is_a_file(tmp_path: Path) -> None:
    ensure_manifest(tmp_path)
    with_file = tmp_path / "fitted"
    ensure_manifest(with_file)
    refresh_arena_ratings(with_file)  # no votes: an empty file
    described = "SELECT column_name, column_type FROM (DESCRIBE arena_ratings)"
    bare = duckdb.connect()  # views.sql's own fallback, as the rollups run it
    for name, schema in (("events_raw", EVENTS_SCHEMA), ("deadletter_raw", DEADLETTER_SCHEMA)):
        bare.register(name, schema.empty_table())
    bare.execute(views_sql())
    script = duckdb.connect()
    script.execute(views_script(tmp_path))
    found = [
        (con.execute(described).fetchall(), con.execute("SELECT * FROM arena_ratings").fetchall())
        for con in (connect(tmp_path), connect(with_file), bare, script)
    ]
    duck = {"string": "VARCHAR", "double": "DOUBLE", "int64": "BIGINT"}
    expected = [(f.name, duck[str(f.type)]) for f in ARENA_RATINGS_SCHEMA]
    assert found == [(expected, [])] * 4
