-- Breakdowns (docs/metrics.md): DAU/WAU/MAU, thumbs up/down and risk flags per value of one
-- field (`report --by model|platform|properties.KEY`), from history. Totals are the report's
-- own keys (active_users, feedback_by_model, risk_flags_daily), untouched by a breakdown.
--
-- Inputs, besides the relations of views.sql, activity.sql, feedback.sql and risk.sql:
--
-- - event_keys: one row per valid event (event_id, user_id, day, type, key), key the
--   breakdown value as VARCHAR, NULL when the event lacks it; defined here for --by model;
--   usersignals.warehouse.breakdown puts a temporary one in its place on a cursor of its own;
-- - four variables of that cursor (SET VARIABLE), NULL when unset: usersignals_breakdown_limit, how
--   many values are kept (default 20); usersignals_breakdown_first_day and usersignals_breakdown_last_day,
--   the days the values are ranked over (NULL: unbounded on that side); and
--   usersignals_breakdown_attributed (default true): votes and flags count under their attributed
--   model (feedback_latest.model, risk_cells.model, as feedback_by_model does) instead of the
--   value carried by the vote or flag event itself. Variables, not a table, so that the
--   branch not taken is pruned when the query is planned (attribution is not computed for a
--   breakdown that does not use it).
--
-- A user counts under a value on day d when one of their events of day d carries it (in
-- [d-6, d] for WAU, [d-29, d] for MAU); events without the value count under NULL. Values are
-- ranked by their distinct users over the ranked days (ties: the smaller value first); the
-- first by_limit are kept, the others fold into '(other)', where every count is taken over
-- the folded values together (a user under two folded values is one user of '(other)'). NULL
-- is never folded and does not count against the limit; a value that is itself '(other)'
-- always folds. Every count is exact.

CREATE VIEW event_keys AS
SELECT event_id, user_id, day, type, model AS key FROM events;

CREATE MACRO breakdown_limit() AS coalesce(getvariable('usersignals_breakdown_limit'), 20);

CREATE MACRO breakdown_attributed() AS
    coalesce(getvariable('usersignals_breakdown_attributed'), true);

-- Whether day d is one the values are ranked over.
CREATE MACRO breakdown_ranked_day(d) AS
    (getvariable('usersignals_breakdown_first_day') IS NULL
     OR d >= CAST(getvariable('usersignals_breakdown_first_day') AS DATE))
    AND (getvariable('usersignals_breakdown_last_day') IS NULL
         OR d <= CAST(getvariable('usersignals_breakdown_last_day') AS DATE));

-- The kept values: their distinct users over the ranked days and their rank (1 = most users).
CREATE VIEW breakdown_values AS
WITH ranked AS (
    SELECT k.key, count(DISTINCT k.user_id) AS users
    FROM event_keys AS k
    WHERE k.key IS NOT NULL AND k.key <> '(other)' AND breakdown_ranked_day(k.day)
    GROUP BY k.key
)
SELECT key, users, CAST(row_number() OVER (ORDER BY users DESC, key) AS BIGINT) AS rank
FROM ranked
QUALIFY rank <= breakdown_limit();

-- One row per (folded value, user, day) with an event carrying the value.
CREATE VIEW key_user_days AS
SELECT DISTINCT
       CASE WHEN k.key IS NULL THEN NULL WHEN v.key IS NOT NULL THEN k.key ELSE '(other)' END
           AS key,
       k.user_id,
       k.day
FROM event_keys AS k
LEFT JOIN breakdown_values AS v ON v.key = k.key;

-- DAU/WAU/MAU per folded value, exact, counted as active_users counts them (a user's covering
-- segments per value never overlap). Rows: every day of report_days (the first to the last day
-- with any event, gaps included) and every folded value with an event in the trailing 30 days
-- (mau > 0); a (day, value) with nothing in its month is left out, not written as zeros.
CREATE VIEW active_users_by AS
WITH segments AS (
    SELECT key,
           day,
           coalesce(least(day + 7, next_day), day + 7) AS week_end,
           coalesce(least(day + 30, next_day), day + 30) AS month_end
    FROM (
        SELECT key, day, lead(day) OVER (PARTITION BY key, user_id ORDER BY day) AS next_day
        FROM key_user_days
    )
),
starts AS (SELECT key, day, count(*) AS n FROM segments GROUP BY key, day),
week_ends AS (SELECT key, week_end AS day, count(*) AS n FROM segments GROUP BY key, week_end),
month_ends AS (
    SELECT key, month_end AS day, count(*) AS n FROM segments GROUP BY key, month_end
),
keys AS (SELECT DISTINCT key FROM key_user_days),
steps AS (
    SELECT r.day,
           k.key,
           coalesce(s.n, 0) AS dau,
           coalesce(s.n, 0) - coalesce(w.n, 0) AS week_step,
           coalesce(s.n, 0) - coalesce(m.n, 0) AS month_step
    FROM report_days AS r
    CROSS JOIN keys AS k
    LEFT JOIN starts AS s ON s.day = r.day AND s.key IS NOT DISTINCT FROM k.key
    LEFT JOIN week_ends AS w ON w.day = r.day AND w.key IS NOT DISTINCT FROM k.key
    LEFT JOIN month_ends AS m ON m.day = r.day AND m.key IS NOT DISTINCT FROM k.key
),
running AS (
    SELECT day,
           key,
           dau,
           CAST(sum(week_step) OVER (PARTITION BY key ORDER BY day) AS BIGINT) AS wau,
           CAST(sum(month_step) OVER (PARTITION BY key ORDER BY day) AS BIGINT) AS mau
    FROM steps
)
SELECT day, key, dau, wau, mau FROM running WHERE mau > 0;

-- Thumbs up and down per day and folded value: the latest vote per (user_id, message_id) (the
-- greatest (ts, event_id), as feedback_latest chooses it), on the day of that vote, under its
-- attributed model (feedback_latest.model) or under the value its own event carries.
-- Rows: (day, value) pairs with a vote of 1 or -1.
CREATE VIEW feedback_by_key AS
WITH votes AS (
    SELECT day, rating, model AS key
    FROM feedback_latest
    WHERE breakdown_attributed() AND rating IN (1, -1)
    UNION ALL
    SELECT v.day, v.rating, k.key
    FROM (
        SELECT day, rating, event_id
        FROM feedback_candidates
        WHERE NOT breakdown_attributed()
        QUALIFY row_number() OVER (
            PARTITION BY user_id, message_id ORDER BY ts DESC, event_id DESC
        ) = 1
    ) AS v
    JOIN event_keys AS k ON k.event_id = v.event_id
    WHERE v.rating IN (1, -1)
)
SELECT u.day,
       CASE WHEN u.key IS NULL THEN NULL WHEN v.key IS NOT NULL THEN u.key ELSE '(other)' END
           AS key,
       count(*) FILTER (WHERE u.rating = 1) AS thumbs_up,
       count(*) FILTER (WHERE u.rating = -1) AS thumbs_down
FROM votes AS u
LEFT JOIN breakdown_values AS v ON v.key = u.key
GROUP BY ALL;

-- Risk flags and distinct flagged users per day, folded value, category and severity: under
-- the attributed model (risk_cells, attributed) or under the value the flag event carries.
-- Rows: (day, value, category, severity) with a flag.
CREATE VIEW risk_flags_by_key AS
WITH cells AS (
    SELECT c.day, c.user_id, c.model AS key, c.category, c.severity, c.flags
    FROM risk_cells AS c
    WHERE breakdown_attributed()
    UNION ALL
    SELECT k.day, k.user_id, k.key, e.category, e.severity, 1 AS flags
    FROM event_keys AS k
    JOIN events AS e ON e.event_id = k.event_id
    WHERE k.type = 'risk_flag' AND e.type = 'risk_flag'
      AND NOT breakdown_attributed()
)
SELECT c.day,
       CASE WHEN c.key IS NULL THEN NULL WHEN v.key IS NOT NULL THEN c.key ELSE '(other)' END
           AS key,
       c.category,
       c.severity,
       CAST(sum(c.flags) AS BIGINT) AS flags,
       count(DISTINCT c.user_id) AS users
FROM cells AS c
LEFT JOIN breakdown_values AS v ON v.key = c.key
GROUP BY ALL;
