"""Derived data: the arena ratings, fitted in Python and kept as a Parquet file SQL can read.

The arena's ratings are a Bradley-Terry fit with bootstrap intervals
(:func:`~usersignals.warehouse.arena.fit_arena`), which SQL alone (Grafana's DuckDB datasource)
cannot run. :func:`refresh_arena_ratings` fits them with the same function to the same count
table the report fits for the whole warehouse (``report --json`` with no range, key ``arena``:
``arena_daily`` over the merged inputs, summed over every day) and writes the rows to
``derived/arena_ratings.parquet``, which the ``arena_ratings`` view reads. The loader calls it
after its commits; it refits only when the count table's content changed, compared by a digest
of the counts kept in the file's footer, so commits without new votes (and compaction, which
never changes the count table) cost one count query and no fit.

The file is derived data, not loaded data: the manifest does not name it, and it is replaced
whole (temporary name, fsync, ``os.replace``, directory fsync), so a reader sees the old ratings
or the new ones. Each row carries the manifest ``generation`` whose count table was fitted and
``total_votes``, the votes in that table.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

if TYPE_CHECKING:
    import duckdb

from usersignals.warehouse.arena import fit_arena
from usersignals.warehouse.commit import TEMP_SUFFIX, temp_path, write_parquet
from usersignals.warehouse.manifest import read_manifest, sync_dirs

__all__ = [
    "ARENA_RATINGS",
    "ARENA_RATINGS_SCHEMA",
    "DERIVED_DIR",
    "DIGEST_KEY",
    "ArenaRefresh",
    "arena_digest",
    "arena_ratings_path",
    "count_table",
    "recover_derived",
    "refresh_arena_ratings",
    "stored_digest",
]

log = logging.getLogger("usersignals.derived")

DERIVED_DIR = "derived"
"""Folder of derived files at the warehouse root (not named by the manifest)."""

ARENA_RATINGS = f"{DERIVED_DIR}/arena_ratings.parquet"
"""The arena ratings file, relative to the warehouse root."""

DIGEST_KEY = b"usersignals.arena_digest"
"""Parquet footer key: :func:`arena_digest` of the count table the ratings were fitted to."""

ARENA_RATINGS_SCHEMA = pa.schema(
    [
        pa.field("model", pa.string(), nullable=False),
        pa.field("rating", pa.float64(), nullable=False),
        pa.field("ci_low", pa.float64(), nullable=False),
        pa.field("ci_high", pa.float64(), nullable=False),
        pa.field("votes", pa.int64(), nullable=False),
        pa.field("rank", pa.int64(), nullable=False),
        pa.field("generation", pa.int64(), nullable=False),
        pa.field("total_votes", pa.int64(), nullable=False),
    ]
)
"""Columns of the ratings file: the report's arena rows (``model`` .. ``rank``), then the
manifest generation fitted at and the votes of the count table."""

_FORMAT = 1  # part of the digest: a change of the file's meaning refits every warehouse

Counts = dict[tuple[str, str, str], int]


def count_table(
    cur: duckdb.DuckDBPyConnection, where: str = "TRUE", params: Mapping[str, Any] | None = None
) -> Counts:
    """The arena's count table of the views behind ``cur``: ``arena_daily`` summed over the
    days ``where`` keeps (the report fits it for its range; the ratings file for every day)."""
    rows = cur.execute(
        "SELECT model_a, model_b, winner, CAST(sum(votes) AS BIGINT) FROM arena_daily "
        f"WHERE {where} GROUP BY ALL",
        dict(params or {}),
    ).fetchall()
    return {(str(a), str(b), str(w)): int(n) for a, b, w, n in rows}


@dataclass(frozen=True)
class ArenaRefresh:
    """What one :func:`refresh_arena_ratings` did.

    Attributes:
        refitted: Whether the file was (re)written.
        generation: The manifest generation whose count table was read.
        digest: Digest of that count table.
        total_votes: Votes in it.
    """

    refitted: bool
    generation: int
    digest: str
    total_votes: int


def arena_ratings_path(root: Path | str) -> Path:
    """Where the ratings file of the warehouse at ``root`` is."""
    return Path(root) / ARENA_RATINGS


def arena_digest(counts: Counts) -> str:
    """A digest of a count table's content (zero counts ignored, as the fit ignores them)."""
    entries = sorted([a, b, w, n] for (a, b, w), n in counts.items() if n)
    raw = json.dumps({"format": _FORMAT, "counts": entries}, separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()


def stored_digest(root: Path | str) -> str | None:
    """The digest in the ratings file's footer; None: no file (or one without a digest)."""
    path = arena_ratings_path(root)
    try:
        metadata = pq.read_schema(path).metadata or {}
    except FileNotFoundError:
        return None
    value = metadata.get(DIGEST_KEY)
    return value.decode() if value is not None else None


def _counts(root: Path) -> Counts:
    # db reads this module's names to make the view's source (merge imports db)
    from usersignals.warehouse.db import connect
    from usersignals.warehouse.merge import merge_inputs

    con = connect(root)
    try:
        cur = con.cursor()
        try:
            merge_inputs(cur)
            return count_table(cur)
        finally:
            cur.close()
    finally:
        con.close()


def _table(rows: list[dict[str, Any]], generation: int, total: int) -> pa.Table:
    columns = {f.name: [r.get(f.name) for r in rows] for f in ARENA_RATINGS_SCHEMA}
    columns["generation"] = [generation] * len(rows)
    columns["total_votes"] = [total] * len(rows)
    return pa.table(columns, schema=ARENA_RATINGS_SCHEMA)


def _replace(root: Path, table: pa.Table, digest: str) -> None:
    final = arena_ratings_path(root)
    final.parent.mkdir(parents=True, exist_ok=True)
    temp = temp_path(final)
    try:
        write_parquet(table, temp, {DIGEST_KEY: digest.encode()})
        os.replace(temp, final)
    except BaseException:  # a full disk: the old ratings stand, no half-written copy stays
        temp.unlink(missing_ok=True)
        raise
    sync_dirs([final])


def recover_derived(root: Path | str) -> None:
    """Deletes what a write killed midway left: temporary files under ``derived/``."""
    folder = Path(root) / DERIVED_DIR
    if folder.is_dir():
        for path in folder.iterdir():
            if path.name.startswith(".") and path.name.endswith(TEMP_SUFFIX):
                path.unlink(missing_ok=True)


def refresh_arena_ratings(root: Path | str, *, force: bool = False) -> ArenaRefresh:
    """Fits the warehouse's arena ratings again if its count table changed since the last fit.

    Reads the count table the report fits for the whole warehouse; when its digest differs
    from the one stored with the ratings (or there is no ratings file yet, or ``force``), fits
    it with :func:`~usersignals.warehouse.arena.fit_arena` and replaces the file atomically.
    The generation recorded is the manifest's as read before the count table: only the
    loader's own commits change the count table, and it calls this between them.

    Args:
        root: The warehouse directory.
        force: Fit and write even if the digest is unchanged.

    Raises:
        WarehouseNotFoundError: ``root`` is not a directory.
        OSError: The file could not be written (the previous one stays).
    """
    root = Path(root)
    generation = read_manifest(root).generation
    counts = _counts(root)
    digest = arena_digest(counts)
    total = sum(counts.values())
    if not force and stored_digest(root) == digest:
        return ArenaRefresh(False, generation, digest, total)
    rows = fit_arena(counts)
    _replace(root, _table(rows, generation, total), digest)
    log.info(
        "arena ratings refitted at generation %d: %d models, %d votes", generation, len(rows), total
    )
    return ArenaRefresh(True, generation, digest, total)
