"""One day-range rule on every path: live folds, warehouse and oracle agree for any range."""

from __future__ import annotations

import tempfile
from datetime import date, timedelta
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.oracle import counted, event_day
from tests.streams.test_wellbeing_live import oracle_live, served
from tests.warehouse.parquetfixtures import write_warehouse
from tests.warehouse.test_report import DAY0, events_
from usersignals.ingest.contract import Event
from usersignals.metrics.periods import DayRange
from usersignals.streams.folds import PartitionState
from usersignals.streams.livereport import live_report, preference_counts
from usersignals.warehouse.arena import fit_arena
from usersignals.warehouse.db import connect
from usersignals.warehouse.history import HISTORY_KEYS
from usersignals.warehouse.report import warehouse_report

DAYS = st.one_of(st.none(), st.integers(-3, 48).map(lambda n: DAY0.date() + timedelta(days=n)))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=st.lists(events_(), max_size=25), lo=DAYS, hi=DAYS)
def test_live_history_and_oracle_apply_one_range_rule(
    events: list[Event], lo: date | None, hi: date | None
) -> None:
    if lo is not None and hi is not None and lo > hi:
        lo, hi = hi, lo
    with tempfile.TemporaryDirectory() as tmp:
        log = write_warehouse(Path(tmp) / "wh", events)
        con = connect(Path(tmp) / "wh")
        try:
            history = warehouse_report(con, lo, hi, history_period="week")
        finally:
            con.close()
    state = PartitionState(retention_days=400)
    state.apply(log)
    select = DayRange(lo, hi)
    votes = preference_counts([state.partial(state.day_range())], select)
    live = live_report([state], fit_arena(votes) if votes else [], select)
    # the live report has the history keys' weekly flagged share, of the weeks it holds whole
    days = [event_day(e) for e in counted(log)]
    wellbeing = served(history["wellbeing_weekly"], min(days), max(days)) if days else []
    history = {k: v for k, v in history.items() if k not in HISTORY_KEYS}
    assert live == history | {"wellbeing_weekly": wellbeing}
    assert live | {"arena": []} == oracle_live(log, None, lo, hi)
    assert history["range"] == {
        "from": lo.isoformat() if lo else None,
        "to": hi.isoformat() if hi else None,
    }
