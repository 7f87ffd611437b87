-- Wellbeing (docs/metrics.md): the weekly flagged share, per week, risk category and
-- model version, from history. It reads risk_cells (flags under their attributed model),
-- week_users and model_week_users (flattery.sql), so compacted days come from their rollups.

-- The risk categories of the event contract (usersignals.ingest.rules.CHOICES; a test keeps
-- the two lists equal): every category has a row in every week, zeros included.
CREATE VIEW risk_categories AS
SELECT category
FROM (
    VALUES ('delusion'), ('emotional_dependence'), ('mania'), ('other'), ('psychosis'),
           ('self_harm'), ('suicidal_ideation'), ('sycophancy')
) AS c(category);

-- Distinct users per week, all and per model (events carrying it): the ISO-week counts of
-- flattery.sql when weeks start on Monday (a report over compacted days reads them from weekly
-- rollups), counted from the days otherwise. The branch not taken is pruned when planned.
CREATE VIEW wellbeing_week_users AS
SELECT monday AS week, users FROM week_users WHERE week_start_dow() = 1
UNION ALL
SELECT week_of(day) AS week, count(DISTINCT user_id) AS users
FROM user_days
WHERE week_start_dow() <> 1
GROUP BY ALL;

CREATE VIEW wellbeing_model_week_users AS
SELECT model, monday AS week, active_users FROM model_week_users WHERE week_start_dow() = 1
UNION ALL
SELECT model, week_of(day) AS week, count(DISTINCT user_id) AS active_users
FROM model_user_days
WHERE week_start_dow() <> 1
GROUP BY ALL;

-- Per week (its first day), category and model: distinct users with a risk flag of the
-- category in the week (any severity; and of severity high or critical), over the week's
-- active users. The all-models row (model NULL) counts every flag over every active user; a
-- model's row counts the flags attributed to it over the users with an event carrying it.
-- Rows: every week with data, every category, the all-models row and each model active in
-- the week or with a flag attributed to it. share and share_high are NULL when no user is
-- active (a model with flags attributed, through their sessions, but no event of its own).
CREATE VIEW wellbeing_weekly AS
WITH flagged AS (
    SELECT week_of(day) AS week, model, category, user_id,
           bool_or(severity IN ('high', 'critical')) AS high
    FROM risk_cells
    GROUP BY ALL
),
counts AS (
    SELECT week, NULL AS model, category, count(DISTINCT user_id) AS flagged_users,
           count(DISTINCT user_id) FILTER (WHERE high) AS flagged_users_high
    FROM flagged
    GROUP BY week, category
    UNION ALL
    SELECT week, model, category, count(DISTINCT user_id) AS flagged_users,
           count(DISTINCT user_id) FILTER (WHERE high) AS flagged_users_high
    FROM flagged
    WHERE model IS NOT NULL
    GROUP BY week, model, category
),
model_weeks AS (
    SELECT coalesce(a.week, f.week) AS week, coalesce(a.model, f.model) AS model,
           coalesce(a.active_users, 0) AS active_users
    FROM wellbeing_model_week_users AS a
    FULL JOIN (SELECT DISTINCT week, model FROM flagged WHERE model IS NOT NULL) AS f
        ON a.week = f.week AND a.model = f.model
),
grid AS (
    SELECT week, NULL AS model, users AS active_users FROM wellbeing_week_users
    UNION ALL
    SELECT week, model, active_users FROM model_weeks
)
SELECT g.week, g.model, c.category,
       coalesce(n.flagged_users, 0) AS flagged_users,
       coalesce(n.flagged_users_high, 0) AS flagged_users_high,
       g.active_users,
       CASE WHEN g.active_users > 0
            THEN coalesce(n.flagged_users, 0) / g.active_users END AS share,
       CASE WHEN g.active_users > 0
            THEN coalesce(n.flagged_users_high, 0) / g.active_users END AS share_high
FROM grid AS g
CROSS JOIN risk_categories AS c
LEFT JOIN counts AS n
    ON n.week = g.week AND n.category = c.category AND n.model IS NOT DISTINCT FROM g.model;

-- Messages a user sent (message events with role 'user'), per day: the usage that bands
-- users in risk_concentration.
CREATE VIEW user_messages AS
SELECT day, user_id, count(*) AS messages
FROM events
WHERE type = 'message' AND role = 'user'
GROUP BY day, user_id;

-- Who carries the risk (rows of whole compacted ISO weeks read from their week rollup, as in
-- engagement.sql): per week, the week's active users in ten usage bands by messages
-- sent that week, and how many of each band have a risk flag in the week (any severity).
-- A user's band is 1 + floor(10 * u / n), u the users of the week with fewer messages, n all
-- of them: ties share a band, and band 10 holds the users that at least 90 % of the week's
-- users sent fewer messages than. Every band of every week with data, zeros included.
CREATE VIEW rolled_risk_concentration AS
SELECT CAST(NULL AS DATE) AS week, CAST(NULL AS BIGINT) AS band, CAST(NULL AS BIGINT) AS users,
       CAST(NULL AS BIGINT) AS flagged_users
WHERE false;

CREATE VIEW risk_concentration AS
WITH usage AS (
    SELECT week_of(d.day) AS week, d.user_id,
           CAST(coalesce(sum(m.messages), 0) AS BIGINT) AS messages
    FROM user_days AS d
    LEFT JOIN (SELECT * FROM user_messages WHERE open_week(day)) AS m
        ON m.user_id = d.user_id AND m.day = d.day
    WHERE open_week(d.day)
    GROUP BY ALL
),
flagged AS (
    SELECT DISTINCT week_of(day) AS week, user_id FROM risk_cells
),
banded AS (
    SELECT u.week,
           1 + (10 * (rank() OVER (PARTITION BY u.week ORDER BY u.messages) - 1))
               // count(*) OVER (PARTITION BY u.week) AS band,
           f.user_id IS NOT NULL AS flagged
    FROM usage AS u
    LEFT JOIN flagged AS f ON f.week = u.week AND f.user_id = u.user_id
),
counts AS (
    SELECT week, band, count(*) AS users, count(*) FILTER (WHERE flagged) AS flagged_users
    FROM banded
    GROUP BY ALL
)
SELECT week, band, users, flagged_users FROM rolled_risk_concentration
UNION ALL
SELECT w.week, CAST(b.band AS BIGINT) AS band, coalesce(c.users, 0) AS users,
       coalesce(c.flagged_users, 0) AS flagged_users
FROM (SELECT DISTINCT week FROM usage) AS w
CROSS JOIN (SELECT unnest(range(1, 11)) AS band) AS b
LEFT JOIN counts AS c ON c.week = w.week AND c.band = b.band;
