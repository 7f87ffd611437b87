"""The demo's seeded traffic (``make demo``: 3,000 users, 21 days, seed 7) through the flattery
watch: the warm model version is flagged, the others are not, whatever weekday the 21 days end
on (the demo ends yesterday)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from usersignals.ingest.contract import decode_record
from usersignals.ingest.synthetic import GeneratorConfig, generate
from usersignals.streams.folds import PartitionState
from usersignals.streams.livereport import live_report


@pytest.mark.parametrize("end", [date(2026, 11, 24) + timedelta(days=i) for i in range(7)])
def test_the_warm_model_is_flagged_and_only_it(end: date) -> None:
    now = datetime(end.year, end.month, end.day, tzinfo=UTC) + timedelta(days=1)
    state = PartitionState(retention_days=60)
    for line in generate(GeneratorConfig(users=3000, days=21, seed=7, end=end)):
        state.apply(decode_record(line, now=now)[0])
    rows = live_report([state])["flattery_watch"]
    flagged = [r["model"] for r in rows if r["flagged"]]
    assert flagged == ["m-5.2-warm"]
    # 21 days hold two complete ISO weeks (three when they start on a Monday and a session
    # runs past the last midnight): the first has no complete week before it to compare with
    complete = sorted({r["week"] for r in rows if r["complete"]})
    assert len(complete) == (3 if end.weekday() == 6 else 2)
    assert [r["week"] for r in rows if r["flagged"]] != complete[:1]
