"""The flattery watch of the live report and of the warehouse: the same rows from the same
events, and the parameters they are given (not the defaults) decide the flag."""

from __future__ import annotations

import pytest

from tests.oracle import oracle_report
from tests.streams.test_prometheus_rules import traffic
from tests.streams.workerproc import batch_records
from tests.warehouse.test_flattery import memory_warehouse
from usersignals.ingest.contract import Event, decode_record
from usersignals.metrics.flattery import FlatteryParams
from usersignals.streams.folds import PartitionState
from usersignals.streams.livereport import merge_partials
from usersignals.warehouse.report import flattery_rows


def events() -> list[Event]:
    out: list[Event] = []
    for _, _, value in batch_records(traffic(), 8, 10):
        out.extend(decode_record(value)[0])
    return out


@pytest.mark.parametrize(
    ("params", "flagged"),
    [
        (None, [("warm", "2026-W38")]),
        (FlatteryParams(min_votes=101), []),
        (FlatteryParams(min_users=101), []),
        (FlatteryParams(level=0.01), []),  # the flags' z is 2.236: above 1.645, not 2.326
        (FlatteryParams(min_votes=100, min_users=100), [("warm", "2026-W38")]),
    ],
)
def test_live_and_history_flag_with_the_params_given(
    params: FlatteryParams | None, flagged: list[tuple[str, str]]
) -> None:
    log = events()
    state = PartitionState(retention_days=400)
    state.apply(log)
    live = merge_partials([state.partial(state.day_range())], flattery=params)["flattery_watch"]
    history = flattery_rows(memory_warehouse(log).cursor(), params)
    assert [(r["model"], r["week"]) for r in live if r["flagged"]] == flagged
    assert live == history
    if params is None:
        assert live == oracle_report(log)["flattery_watch"]
