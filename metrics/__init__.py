"""usersignals.metrics: one pure unit per metric family, shared by the live and warehouse paths.

Each module here is named after the metric it defines (docs/metrics.md points at each) and
holds values in, values out: no Kafka, no disk, no DuckDB connection. The stream worker folds
events through these units; the warehouse runs the SQL beside them; both hand their counts to
the same pure functions for anything derived (rates, intervals, tests).
"""

from __future__ import annotations

__all__: list[str] = []

# The folder is linked into the package: each module has one name, so no class exists twice.
if __name__ != "usersignals.metrics":
    raise ImportError(f"import usersignals.metrics, not {__name__!r}: each module has one name")
