# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # usersignals: an analyst's notebook
#
# Engagement and wellbeing side by side, from the Parquet warehouse. Every number here comes
# from the same DuckDB views (`warehouse/views.sql` and `metrics/*.sql`) that `usersignals
# report` and the dashboards read, so the definitions are those of `docs/metrics.md`.
#
# The warehouse directory comes from `USERSIGNALS_WAREHOUSE` (default `demo/warehouse`, what
# `make demo` leaves behind). The test suite runs this notebook on a generated warehouse.
#
# Counts are integers: DuckDB's `sum()` of a `BIGINT` is a `HUGEINT`, which polars receives
# as `decimal[38,0]`, so every sum below is cast back to `BIGINT`. Dates on the x axes are
# placed and labelled by matplotlib's date locator and concise formatter, so they never pile up.

# %%
import os

import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Patch

from usersignals.warehouse.db import connect

warehouse = os.environ.get("USERSIGNALS_WAREHOUSE", "demo/warehouse")
con = connect(warehouse)


def date_axis(ax, weeks=()):
    """Date ticks that never pile up, labelled concisely; for up to 8 `weeks` (bars per week
    starting on Mondays) one at the start of each bar."""
    if 0 < len(weeks) <= 8:
        locator = mdates.WeekdayLocator(byweekday=mdates.MO)
    else:
        locator = mdates.AutoDateLocator(minticks=3, maxticks=8)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))


INCOMPLETE = dict(facecolor="none", edgecolor="grey", hatch="//", linewidth=0)
"""How an incomplete day or week is drawn: hatched over the data."""


def hatch_incomplete_weeks(ax, frame, low, high):
    """Hatch the bars of the weeks whose `complete` is false, from `low` to `high`; the legend
    entry for them (none when every week is complete)."""
    mask = ~frame["complete"]
    weeks = frame.filter(mask)[frame.columns[0]].to_numpy()
    ax.bar(
        weeks,
        (high - low).filter(mask),
        bottom=low.filter(mask),
        width=6,
        align="edge",
        **INCOMPLETE,
    )
    return [Patch(**INCOMPLETE, label="incomplete week")] if mask.any() else []


con.sql("SELECT view_name FROM duckdb_views() WHERE NOT internal ORDER BY 1").pl()

# %% [markdown]
# ## Daily, weekly and monthly active users
#
# `.pl()` hands DuckDB's result to polars through Arrow (`.to_arrow_table()` gives the Arrow
# table itself).
#
# Incomplete days are hatched: the last day with data never is complete (its events may still
# arrive), the `complete` flag `usersignals report` prints as "partial". A WAU or MAU value is
# drawn lighter where its window is incomplete (`wau_complete`, `mau_complete`: the day is
# incomplete or the window starts before the first day with data).

# %%
active = con.sql(
    "SELECT day, dau, wau, mau, stickiness, complete, wau_complete, mau_complete "
    "FROM active_users ORDER BY day"
).pl()
days = active["day"].to_numpy()
half_day = np.timedelta64(12, "h")
fig, ax = plt.subplots(figsize=(10, 4))
for name, colour, flag in (
    ("dau", "C0", "complete"),
    ("wau", "C1", "wau_complete"),
    ("mau", "C2", "mau_complete"),
):
    values = active[name].cast(float).to_numpy()
    ax.plot(days, values, color=colour, alpha=0.35)  # every day, lighter
    ax.plot(
        days, np.where(active[flag].to_numpy(), values, np.nan), color=colour, label=name.upper()
    )
for day in active.filter(~active["complete"])["day"].to_numpy():
    ax.axvspan(day - half_day, day + half_day, **INCOMPLETE)
handles, _ = ax.get_legend_handles_labels()
handles.append(Patch(**INCOMPLETE, label="incomplete day"))
handles.append(plt.Line2D([], [], color="grey", alpha=0.35, label="incomplete window"))
ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1))
date_axis(ax)
ax.set_ylabel("users")
ax.set_title("Active users")
plt.show()
print(f"days={active.height} peak_mau={active['mau'].max()} last_dau={active['dau'][-1]}")
print("incomplete days:", ", ".join(str(d) for d in active.filter(~active["complete"])["day"]))

# %% [markdown]
# ## Do people come back? Retention of first-time cohorts
#
# A user's cohort is the ISO week of their first event ever; each curve is the share of a
# cohort active n weeks later (`retention_by('day')` gives days instead).

# %%
retention = con.sql(
    "SELECT cohort, period, cohort_users, users FROM retention ORDER BY cohort, period"
).pl()
fig, ax = plt.subplots(figsize=(10, 4))
for (cohort,), rows in retention.group_by(["cohort"], maintain_order=True):
    ax.plot(
        rows["period"], 100 * rows["users"] / rows["cohort_users"], marker="o", label=str(cohort)
    )
ax.set_xlabel("weeks after the first")
ax.set_ylabel("% of the cohort active")
ax.legend(title="cohort", loc="upper left", bbox_to_anchor=(1.01, 1))
ax.set_title("Retention")
plt.show()
print(f"cohorts={retention['cohort'].n_unique()} cells={retention.height}")

# %% [markdown]
# ## Who is new, who is slipping away: lifecycle
#
# Per ISO week: new, returning (active the week before too), resurrecting (back after a gap)
# and dormant (active the week before, not this one), drawn below zero. A week is complete when
# it starts on or after the first day with data and an event exists after its Sunday (the rule
# of `flattery_watch`); an incomplete week is hatched, its counts may still change.

# %%
lifecycle = (
    con.sql(
        """
        SELECT p.*, coalesce(r.week_complete, false) AS complete
        FROM (
            PIVOT lifecycle ON status IN ('new', 'returning', 'resurrecting', 'dormant')
            USING CAST(sum(users) AS BIGINT)
        ) AS p
        LEFT JOIN report_days AS r ON r.day = p.period + 6
        ORDER BY period
        """
    )
    .pl()
    .fill_null(0)
)
fig, ax = plt.subplots(figsize=(10, 4))
ax.use_sticky_edges = False  # a margin above the tallest stack and below the deepest
weeks = lifecycle["period"].to_numpy()  # the Monday of each ISO week; a bar spans Mon-Sat
bottom = 0 * lifecycle["new"]
for status in ("new", "returning", "resurrecting"):
    ax.bar(weeks, lifecycle[status], width=6, align="edge", bottom=bottom, label=status)
    bottom = bottom + lifecycle[status]
ax.bar(weeks, -lifecycle["dormant"], width=6, align="edge", label="dormant")
incomplete = hatch_incomplete_weeks(ax, lifecycle, -lifecycle["dormant"], bottom)
ax.axhline(0, color="black", linewidth=0.8)
handles, _ = ax.get_legend_handles_labels()
ax.legend(handles=[*handles, *incomplete], loc="upper left", bbox_to_anchor=(1.01, 1))
date_axis(ax, weeks)
ax.set_title("Lifecycle per week")
plt.show()
new, dormant = lifecycle["new"].sum(), lifecycle["dormant"].sum()
print(f"lifecycle weeks={lifecycle.height} new={new} dormant={dormant}")

# %% [markdown]
# ## Feedback by model
#
# The latest vote of each user on each message counts, on the day it was cast.

# %%
feedback = con.sql(
    """
    SELECT coalesce(model, '(none)') AS model,
           CAST(sum(thumbs_up) AS BIGINT) AS up,
           CAST(sum(thumbs_down) AS BIGINT) AS down,
           round(sum(thumbs_up) / (sum(thumbs_up) + sum(thumbs_down)), 3) AS up_rate
    FROM feedback_by_model
    GROUP BY ALL
    ORDER BY model
    """
).pl()
fig, ax = plt.subplots(figsize=(8, 3))
ax.bar(feedback["model"], feedback["up_rate"])
ax.set_ylim(0, 1)
ax.set_title("Thumbs-up rate by model")
plt.show()
feedback

# %% [markdown]
# ## Risk flags by week
#
# Flags per ISO week (bars start on its Monday) and severity; high and critical ones deserve a
# look first. The colours run from calm (low, pale yellow) to alarming (critical, dark red),
# and the legend lists the severities in the order they are stacked. Incomplete weeks are
# hatched, as above.

# %%
SEVERITIES = ("low", "medium", "high", "critical")
SEVERITY_COLOURS = dict(
    zip(SEVERITIES, plt.get_cmap("YlOrRd")(np.linspace(0.25, 1.0, len(SEVERITIES))), strict=True)
)
risk = (
    con.sql(
        """
        SELECT p.*, coalesce(r.week_complete, false) AS complete
        FROM (
            PIVOT (
                SELECT CAST(date_trunc('week', day) AS DATE) AS week, severity, flags
                FROM risk_flags_daily
            ) ON severity IN ('low', 'medium', 'high', 'critical') USING CAST(sum(flags) AS BIGINT)
        ) AS p
        LEFT JOIN report_days AS r ON r.day = p.week + 6
        ORDER BY week
        """
    )
    .pl()
    .fill_null(0)
)
fig, ax = plt.subplots(figsize=(8, 3))
weeks = risk["week"].to_numpy()
bottom = 0 * risk["low"]
for severity in SEVERITIES:
    ax.bar(
        weeks,
        risk[severity],
        width=6,
        align="edge",
        bottom=bottom,
        color=SEVERITY_COLOURS[severity],
        edgecolor="white",
        linewidth=0.5,
        label=severity,
    )
    bottom = bottom + risk[severity]
incomplete = hatch_incomplete_weeks(ax, risk, 0 * bottom, bottom)
handles, _ = ax.get_legend_handles_labels()
# critical on top, as in the stack; the order of the colours, calm to alarming
ax.legend(
    handles=[*handles[::-1], *incomplete],
    title="severity",
    loc="upper left",
    bbox_to_anchor=(1.01, 1),
)
date_axis(ax, weeks)
ax.set_title("Risk flags per week")
plt.show()
print(f"weeks={risk.height} flags={risk.select(SEVERITIES).sum_horizontal().sum()}")

# %% [markdown]
# ## An ad-hoc question: are longer sessions flagged more often?
#
# Any SQL over the views works; here sessions joined with the risk flags raised in them.

# %%
con.sql(
    """
    SELECT s.model,
           count(*) AS sessions,
           round(median(s.duration_s) / 60, 1) AS median_minutes,
           count(*) FILTER (WHERE f.session_id IS NOT NULL) AS flagged
    FROM sessions AS s
    LEFT JOIN (SELECT DISTINCT user_id, session_id FROM events WHERE type = 'risk_flag') AS f
        USING (user_id, session_id)
    GROUP BY ALL
    ORDER BY sessions DESC
    """
).pl()
