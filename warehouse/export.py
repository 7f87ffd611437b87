"""Training-data export: feedback labels and preference pairs, minus what must stay out.

Two data sets leave the warehouse for preference training:

* ``feedback``: the latest binary vote per (user, message): the rows of the warehouse's
  ``feedback_latest`` view (metrics.md rule: greatest ``ts``, then ``event_id``; a latest vote
  of 0, withdrawn, is no label), under the model that view attributes (the vote's own, else its
  message's, else its session's; docs/attribution.md), so a label counts under the model the
  metrics count it under. Columns ``message_id``, ``session_id`` (the vote's), ``model``,
  ``label`` with ``label`` the integer ``1`` (thumbs up) or ``-1`` (thumbs down), the rating
  as sent.
* ``preferences``: every preference vote. Columns ``session_id``, ``model_a``, ``model_b``,
  ``winner`` (``a``, ``b``, ``tie``, ``both_bad``).

Rows come in the order of the vote (``ts``, then ``event_id``). No user id leaves: training
needs none, and a session id is enough to join the conversation text.

Left out, always: every event of a user who has any event whose ``properties.consent`` is the
JSON value ``false`` (the string ``"false"`` is not a refusal). Left out with
``exclude_risk=SEVERITY``: every session with a ``risk_flag`` of that severity or above
(``low < medium < high < critical``), whoever in it voted; votes without a session id cannot be
tied to a flagged session and stay.

The queries read the views of a warehouse connection (the deduplicated ``events``, and
``feedback_latest`` for the labels: the latest-vote rule is the view's, not restated here);
writers take a path (written under a temporary name, then renamed) or a binary file object.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from usersignals.errors import ExportError

if TYPE_CHECKING:
    import duckdb

__all__ = [
    "EXPORT_SQL",
    "FORMATS",
    "KINDS",
    "SEVERITIES",
    "ExportError",
    "ExportResult",
    "export",
    "export_table",
    "write_table",
]

SEVERITIES = ("low", "medium", "high", "critical")
KINDS = ("feedback", "preferences")
FORMATS = ("parquet", "jsonl")

_EXCLUSIONS = """
WITH no_consent AS (
    SELECT DISTINCT user_id FROM events
    WHERE json_type(properties, '$.consent') = 'BOOLEAN'
      AND json_extract_string(properties, '$.consent') = 'false'
),
risky_sessions AS (
    SELECT DISTINCT session_id FROM events
    WHERE type = 'risk_flag' AND session_id IS NOT NULL
      AND list_position(['low', 'medium', 'high', 'critical'], severity)
          >= CAST($min_severity AS INTEGER)
),
"""

EXPORT_SQL: dict[str, str] = {
    "feedback": _EXCLUSIONS
    + """
labels AS (
    SELECT f.message_id, e.session_id, f.model, f.rating, f.user_id, f.ts, f.event_id
    FROM feedback_latest AS f
    JOIN events AS e ON e.event_id = f.event_id AND e.type = 'feedback'
    WHERE f.rating IN (1, -1)
)
SELECT message_id, session_id, model, rating AS label,
       user_id IN (SELECT user_id FROM no_consent) AS _no_consent,
       session_id IN (SELECT session_id FROM risky_sessions) AS _risky
FROM labels
ORDER BY ts, event_id
""",
    "preferences": _EXCLUSIONS
    + """
votes AS (SELECT * FROM events WHERE type = 'preference')
SELECT session_id, model_a, model_b, winner,
       user_id IN (SELECT user_id FROM no_consent) AS _no_consent,
       session_id IN (SELECT session_id FROM risky_sessions) AS _risky
FROM votes
ORDER BY ts, event_id
""",
}
"""Candidate rows of each export, with the two reasons to leave a row out as columns.

``$min_severity`` is the 1-based position in :data:`SEVERITIES` of the lowest severity that
excludes a session, or NULL to keep every session.
"""


@dataclass(frozen=True)
class ExportResult:
    """Rows of one export and how many candidate rows were left out, and why.

    Attributes:
        table: The rows to write.
        dropped_consent: Rows of users who refused consent.
        dropped_risk: Further rows (of consenting users) in sessions excluded for risk.
    """

    table: pa.Table
    dropped_consent: int
    dropped_risk: int

    def summary(self) -> dict[str, int]:
        """Counts for logs and ``--json``."""
        return {
            "rows": self.table.num_rows,
            "dropped_consent": self.dropped_consent,
            "dropped_risk": self.dropped_risk,
        }


def _choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ExportError(name, value, choices)
    return value


def export_table(
    con: duckdb.DuckDBPyConnection, kind: str, *, exclude_risk: str | None = None
) -> ExportResult:
    """The rows of one export, read from a warehouse connection with the warehouse's views.

    Args:
        con: DuckDB connection with the warehouse views (``events``, ``feedback_latest``).
        kind: ``feedback`` or ``preferences``.
        exclude_risk: Leave out sessions with a risk flag of this severity or above.

    Raises:
        ExportError: An unknown ``kind`` or severity.
    """
    sql = EXPORT_SQL[_choice("kind", kind, KINDS)]
    rank = None
    if exclude_risk is not None:
        rank = SEVERITIES.index(_choice("severity", exclude_risk, SEVERITIES)) + 1
    candidates = con.sql(sql, params={"min_severity": rank}).to_arrow_table()
    no_consent = pc.fill_null(candidates["_no_consent"], False)
    risky = pc.fill_null(candidates["_risky"], False)
    risky_only = pc.and_(pc.invert(no_consent), risky)
    keep = pc.invert(pc.or_(no_consent, risky))
    table = candidates.filter(keep).drop_columns(["_no_consent", "_risky"])
    return ExportResult(
        table=table,
        dropped_consent=int(pc.sum(no_consent.cast(pa.int64())).as_py() or 0),
        dropped_risk=int(pc.sum(risky_only.cast(pa.int64())).as_py() or 0),
    )


def write_table(table: pa.Table, out: str | os.PathLike[str] | IO[bytes], fmt: str) -> None:
    """Write rows as Parquet or JSON lines to a path (atomically) or a binary file object.

    Raises:
        ExportError: An unknown format.
    """
    writer = _WRITERS[_choice("format", fmt, FORMATS)]
    if isinstance(out, str | os.PathLike):
        path = Path(out)
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            with tmp.open("wb") as f:
                writer(table, f)
            tmp.replace(path)
        finally:
            tmp.unlink(missing_ok=True)
    else:
        writer(table, out)


def _write_parquet(table: pa.Table, f: IO[bytes]) -> None:
    pq.write_table(table, f)


def _write_jsonl(table: pa.Table, f: IO[bytes]) -> None:
    for batch in table.to_batches():
        lines = [json.dumps(row, ensure_ascii=False) + "\n" for row in batch.to_pylist()]
        f.write("".join(lines).encode("utf-8"))


_WRITERS: dict[str, Callable[[pa.Table, IO[bytes]], None]] = {
    "parquet": _write_parquet,
    "jsonl": _write_jsonl,
}


def export(
    con: duckdb.DuckDBPyConnection,
    kind: str,
    out: str | os.PathLike[str] | IO[bytes],
    *,
    fmt: str = "parquet",
    exclude_risk: str | None = None,
) -> dict[str, Any]:
    """Export one data set to ``out`` and return its summary (rows written, rows left out).

    Raises:
        ExportError: An unknown kind, format or severity (checked before anything is written).
    """
    _choice("format", fmt, FORMATS)
    result = export_table(con, kind, exclude_risk=exclude_risk)
    write_table(result.table, out, fmt)
    return {"kind": kind, "format": fmt, **result.summary()}
