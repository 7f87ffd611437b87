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

# %%
import os

import matplotlib.pyplot as plt

from usersignals.warehouse.db import connect

warehouse = os.environ.get("USERSIGNALS_WAREHOUSE", "demo/warehouse")
con = connect(warehouse)
con.sql("SELECT view_name FROM duckdb_views() WHERE NOT internal ORDER BY 1").pl()

# %% [markdown]
# ## Daily, weekly and monthly active users
#
# `.pl()` hands DuckDB's result to polars through Arrow (`.to_arrow_table()` gives the Arrow
# table itself).

# %%
active = con.sql("SELECT day, dau, wau, mau, stickiness FROM active_users ORDER BY day").pl()
fig, ax = plt.subplots(figsize=(10, 4))
for name in ("dau", "wau", "mau"):
    ax.plot(active["day"], active[name], label=name.upper())
ax.set_ylabel("users")
ax.legend()
ax.set_title("Active users")
plt.show()
print(f"days={active.height} peak_mau={active['mau'].max()} last_dau={active['dau'][-1]}")

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
    ax.plot(rows["period"], 100 * rows["users"] / rows["cohort_users"], marker="o", label=str(cohort))
ax.set_xlabel("weeks after the first")
ax.set_ylabel("% of the cohort active")
ax.legend(title="cohort")
ax.set_title("Retention")
plt.show()
print(f"cohorts={retention['cohort'].n_unique()} cells={retention.height}")

# %% [markdown]
# ## Who is new, who is slipping away: lifecycle
#
# Per ISO week: new, returning (active the week before too), resurrecting (back after a gap)
# and dormant (active the week before, not this one), drawn below zero.

# %%
lifecycle = con.sql(
    "PIVOT lifecycle ON status IN ('new', 'returning', 'resurrecting', 'dormant') "
    "USING sum(users) ORDER BY period"
).pl().fill_null(0)
fig, ax = plt.subplots(figsize=(10, 4))
weeks = [str(w) for w in lifecycle["period"]]
bottom = None
for status in ("new", "returning", "resurrecting"):
    ax.bar(weeks, lifecycle[status], bottom=bottom, label=status)
    bottom = lifecycle[status] if bottom is None else bottom + lifecycle[status]
ax.bar(weeks, -lifecycle["dormant"], label="dormant")
ax.axhline(0, color="black", linewidth=0.8)
ax.legend()
ax.set_title("Lifecycle per week")
plt.show()
print(f"lifecycle weeks={lifecycle.height} new={int(lifecycle['new'].sum())} dormant={int(lifecycle['dormant'].sum())}")

# %% [markdown]
# ## Feedback by model
#
# The latest vote of each user on each message counts, on the day it was cast.

# %%
feedback = con.sql(
    """
    SELECT coalesce(model, '(none)') AS model,
           sum(thumbs_up) AS up,
           sum(thumbs_down) AS down,
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
# Flags per ISO week and severity; high and critical ones deserve a look first.

# %%
risk = con.sql(
    """
    PIVOT (
        SELECT strftime(day, '%G-W%V') AS week, severity, flags FROM risk_flags_daily
    ) ON severity IN ('low', 'medium', 'high', 'critical') USING sum(flags)
    ORDER BY week
    """
).pl().fill_null(0)
fig, ax = plt.subplots(figsize=(8, 3))
bottom = None
for severity in ("low", "medium", "high", "critical"):
    ax.bar(risk["week"], risk[severity], bottom=bottom, label=severity)
    bottom = risk[severity] if bottom is None else bottom + risk[severity]
ax.legend()
ax.set_title("Risk flags per week")
plt.show()
print(f"weeks={risk.height} flags={int(risk.select(['low', 'medium', 'high', 'critical']).sum_horizontal().sum())}")

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
