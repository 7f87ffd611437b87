-- Engagement in depth (docs/metrics.md): retention of first-time cohorts, lifecycle and the
-- stickiness distribution, from history only (the worker holds too few days for them).
--
-- Every relation here reads user_days alone, so a report over compacted days reads their
-- rollups, never their raw rows. A period is a day or a week (views.sql: the report's time
-- zone, Monday start unless --week-start says), named by its first day; `p` is 'day' or 'week'.

CREATE MACRO engagement_period(d, p) AS
    CASE WHEN p = 'day' THEN CAST(d AS DATE) ELSE week_of(d) END;

-- Days in a period.
CREATE MACRO engagement_step(p) AS CASE WHEN p = 'day' THEN 1 ELSE 7 END;

-- Weeks whose rows are read from week rollups instead of computed from their user days: the
-- whole ISO weeks served by rollups, which a report merging them names (warehouse/merge.py),
-- with their rows in the rolled_<kind> relations; compaction made those rows with the
-- relations below over the week's days. None otherwise, and then every row is computed here.
CREATE VIEW rolled_weeks AS SELECT CAST(NULL AS DATE) AS week WHERE false;

CREATE VIEW rolled_user_weeks AS SELECT user_id, day AS week FROM user_days WHERE false;

CREATE VIEW rolled_stickiness_distribution AS
SELECT CAST(NULL AS DATE) AS week, CAST(NULL AS BIGINT) AS days_active,
       CAST(NULL AS BIGINT) AS users
WHERE false;

-- True when the day's week is not read from week rollups.
CREATE MACRO open_week(d) AS week_of(d) NOT IN (SELECT week FROM rolled_weeks);

-- One row per (user, period) with any valid event.
CREATE MACRO user_periods(p) AS TABLE
SELECT user_id, week AS period FROM rolled_user_weeks WHERE p = 'week'
UNION ALL
SELECT DISTINCT user_id, engagement_period(day, p) AS period
FROM user_days
WHERE p = 'day' OR open_week(day);

-- Retention of first-time cohorts. A user's cohort is the period of their first valid event
-- in the whole history. For cohort c and offset n >= 0 (c + n not after the last period with
-- data): users = cohort users active in period c + n; users_on_or_after = cohort users active
-- in any period >= c + n (a user last active at offset m counts for every n <= m).
CREATE MACRO retention_by(p) AS TABLE
WITH up AS (SELECT user_id, period FROM user_periods(p)),
cohort_of AS (
    SELECT user_id, min(period) AS cohort, max(period) AS last_period FROM up GROUP BY user_id
),
span AS (SELECT max(period) AS last FROM up),
sizes AS (SELECT cohort, count(*) AS cohort_users FROM cohort_of GROUP BY cohort),
grid AS (
    SELECT s.cohort, s.cohort_users,
           unnest(range(0, (span.last - s.cohort) // engagement_step(p) + 1)) AS period
    FROM sizes AS s, span
),
active AS (
    SELECT c.cohort, (up.period - c.cohort) // engagement_step(p) AS period, count(*) AS users
    FROM up JOIN cohort_of AS c USING (user_id)
    GROUP BY ALL
),
leaving AS (
    SELECT cohort, (last_period - cohort) // engagement_step(p) AS period, count(*) AS users
    FROM cohort_of
    GROUP BY ALL
)
SELECT g.cohort,
       CAST(g.period AS BIGINT) AS period,
       g.cohort_users,
       coalesce(a.users, 0) AS users,
       CAST(sum(coalesce(l.users, 0)) OVER (PARTITION BY g.cohort ORDER BY g.period DESC)
            AS BIGINT) AS users_on_or_after
FROM grid AS g
LEFT JOIN active AS a ON a.cohort = g.cohort AND a.period = g.period
LEFT JOIN leaving AS l ON l.cohort = g.cohort AND l.period = g.period;

-- Lifecycle (PostHog's statuses; "new" is the first period with a valid event, since there
-- is no person record). For period q: new = users first active in q; returning = active in q
-- and in the period before; resurrecting = active in q, not in the period before, not new;
-- dormant = active in the period before, not in q (a count, not negated). Every status of
-- every period from the first to the last with data, zeros included.
CREATE MACRO lifecycle_by(p) AS TABLE
WITH up AS (
    SELECT user_id, period,
           lag(period) OVER (PARTITION BY user_id ORDER BY period) AS prev,
           lead(period) OVER (PARTITION BY user_id ORDER BY period) AS next
    FROM user_periods(p)
),
span AS (SELECT min(period) AS first, max(period) AS last FROM up),
periods AS (
    SELECT CAST(unnest(generate_series(span.first, span.last, to_days(engagement_step(p))))
                AS DATE) AS period
    FROM span
    WHERE span.first IS NOT NULL
),
statuses AS (
    SELECT * FROM (VALUES (1, 'new'), (2, 'returning'), (3, 'resurrecting'), (4, 'dormant'))
        AS s(rank, status)
),
marks AS (
    SELECT period,
           CASE WHEN prev IS NULL THEN 'new'
                WHEN prev = period - engagement_step(p) THEN 'returning'
                ELSE 'resurrecting' END AS status
    FROM up
    UNION ALL
    SELECT period + engagement_step(p) AS period, 'dormant' AS status
    FROM up, span
    WHERE (next IS NULL OR next > period + engagement_step(p))
      AND period + engagement_step(p) <= span.last
),
counts AS (SELECT period, status, count(*) AS users FROM marks GROUP BY ALL)
SELECT q.period, s.status, coalesce(c.users, 0) AS users, s.rank
FROM periods AS q
CROSS JOIN statuses AS s
LEFT JOIN counts AS c ON c.period = q.period AND c.status = s.status;

CREATE VIEW retention AS SELECT * FROM retention_by('week');

CREATE VIEW lifecycle AS SELECT period, status, users FROM lifecycle_by('week');

-- Per week (its first day), users active on exactly k distinct days of it, k = 1..7.
CREATE VIEW stickiness_distribution AS
SELECT week, days_active, users FROM rolled_stickiness_distribution
UNION ALL
SELECT week, days_active, count(*) AS users
FROM (
    SELECT user_id, week_of(day) AS week,
           count(DISTINCT day) AS days_active
    FROM user_days
    WHERE open_week(day)
    GROUP BY ALL
)
GROUP BY ALL;

-- Sessions, per (day, user, session_id) piece: the rollup-shaped input of session lengths (a
-- session that crosses midnight has a piece on each day). end_duration_s: the largest
-- duration_s of its session_end events, if any; messages: its message events (any role).
CREATE VIEW session_parts AS
SELECT day, user_id, session_id, min(ts) AS first_ts, max(ts) AS last_ts,
       max(duration_s) FILTER (WHERE type = 'session_end') AS end_duration_s,
       count(*) FILTER (WHERE type = 'message') AS messages
FROM events
WHERE session_id IS NOT NULL
GROUP BY day, user_id, session_id;

-- One row per session (user_id, session_id): the day of its first event, its length (the
-- session_end's duration_s, else last - first event, in seconds: a difference of epochs, since
-- subtracting TIMESTAMPTZ in a zone with summer time counts the zone's calendar days) and its
-- messages.
-- A session with one piece (its key's 64-bit hash occurs once: almost every session) is that
-- piece; only the pieces whose hash occurs again are grouped by key, so a collision costs time,
-- never a wrong length.
CREATE VIEW session_lengths AS
WITH parts AS (SELECT *, hash(user_id, session_id) AS h FROM session_parts),
repeated AS (SELECT h FROM parts GROUP BY h HAVING count(*) > 1)
SELECT user_id, session_id, day,
       coalesce(end_duration_s, epoch(last_ts) - epoch(first_ts)) AS duration_s, messages
FROM parts ANTI JOIN repeated USING (h)
UNION ALL
SELECT user_id, session_id, min(day) AS day,
       coalesce(max(end_duration_s), epoch(max(last_ts)) - epoch(min(first_ts))) AS duration_s,
       CAST(sum(messages) AS BIGINT) AS messages
FROM parts SEMI JOIN repeated USING (h)
GROUP BY user_id, session_id;

-- Per day with sessions (by the day of their first event): sessions, median and 90th
-- percentile length (linear interpolation between the closest ranks), the share over 60
-- minutes (longer than 3,600 s) and message events per session.
CREATE VIEW sessions_daily AS
SELECT day,
       count(*) AS sessions,
       quantile_cont(duration_s, 0.5) AS duration_p50_s,
       quantile_cont(duration_s, 0.9) AS duration_p90_s,
       count(*) FILTER (WHERE duration_s > 3600) / count(*) AS long_share,
       sum(messages) / count(*) AS messages_per_session
FROM session_lengths
GROUP BY day;
