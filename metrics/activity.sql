-- Activity (docs/metrics.md): events per day, DAU/WAU/MAU, stickiness and the completeness of
-- days and windows, from history. The live form is usersignals.metrics.activity.
--
-- Rollup-shaped relations: every metric below reads only these (and report_days), never
-- events directly, so that a report can put tables merged from per-day rollups of compacted
-- days (usersignals.warehouse.rollup) in their place. user_id is a user key here: the id
-- itself over events, a dense integer in rollups.

-- One row per (user, day) with any valid event: the basis of DAU/WAU/MAU.
CREATE VIEW user_days AS
SELECT DISTINCT user_id, day FROM events;

-- One row per (day, model, user) for events that carry a model: flattery watch's activity.
CREATE VIEW model_user_days AS
SELECT DISTINCT day, model, user_id FROM events WHERE model IS NOT NULL;

-- Events per day (days with events only).
CREATE VIEW events_by_day AS
SELECT day, count(*) AS events FROM events GROUP BY day;

-- The first and the last day with events (no row when there are none).
CREATE VIEW data_span AS
SELECT min(day) AS first, max(day) AS last FROM events_by_day HAVING min(day) IS NOT NULL;

-- Every day from the first to the last day with events, gaps included, and whether the day
-- and its trailing windows are complete: the last day with data never is (its events may
-- still arrive), and a window is complete when the day is and the window starts on or after
-- the first day with data (usersignals.metrics.periods states the same rule for the live path).
CREATE VIEW report_days AS
SELECT CAST(d AS DATE) AS day,
       CAST(d AS DATE) < span.last AS complete,
       CAST(d AS DATE) < span.last AND CAST(d AS DATE) - 6 >= span.first AS week_complete,
       CAST(d AS DATE) < span.last AND CAST(d AS DATE) - 29 >= span.first AS month_complete
FROM data_span AS span,
     generate_series(span.first, span.last, INTERVAL 1 DAY) AS g(d);

-- Events per day, with the day's completeness.
CREATE VIEW event_counts AS
SELECT e.day, e.events, r.complete
FROM events_by_day AS e JOIN report_days AS r USING (day);

-- DAU/WAU/MAU, exact. A user active on day a is counted in the window of day d for
-- a <= d < a + width; each active day a of a user covers [a, min(a + width, next active day))
-- so the user's covering segments never overlap, and a running sum of segment starts minus
-- segment ends over the days counts each user at most once per day.
CREATE VIEW active_users AS
WITH segments AS (
    SELECT day,
           coalesce(least(day + 7, next_day), day + 7) AS week_end,
           coalesce(least(day + 30, next_day), day + 30) AS month_end
    FROM (
        SELECT day, lead(day) OVER (PARTITION BY user_id ORDER BY day) AS next_day
        FROM user_days
    )
),
starts AS (SELECT day, count(*) AS n FROM segments GROUP BY day),
week_ends AS (SELECT week_end AS day, count(*) AS n FROM segments GROUP BY week_end),
month_ends AS (SELECT month_end AS day, count(*) AS n FROM segments GROUP BY month_end),
steps AS (
    SELECT r.day, r.complete, r.week_complete, r.month_complete,
           coalesce(s.n, 0) AS dau,
           coalesce(s.n, 0) - coalesce(w.n, 0) AS week_step,
           coalesce(s.n, 0) - coalesce(m.n, 0) AS month_step
    FROM report_days AS r
    LEFT JOIN starts AS s ON s.day = r.day
    LEFT JOIN week_ends AS w ON w.day = r.day
    LEFT JOIN month_ends AS m ON m.day = r.day
)
SELECT day,
       dau,
       CAST(sum(week_step) OVER (ORDER BY day) AS BIGINT) AS wau,
       CAST(sum(month_step) OVER (ORDER BY day) AS BIGINT) AS mau,
       CASE WHEN sum(month_step) OVER (ORDER BY day) = 0 THEN 0.0
            ELSE dau / sum(month_step) OVER (ORDER BY day) END AS stickiness,
       complete,
       week_complete AS wau_complete,
       month_complete AS mau_complete
FROM steps;
