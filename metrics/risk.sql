-- Risk flags (docs/metrics.md): flags and flagged users per day, category and severity, users
-- at risk in the trailing week, from history. The live form is usersignals.metrics.risk.

-- Risk flags counted per (day, user, own model, category, severity), and per session_id for
-- flags without a model of their own (before attribution).
CREATE VIEW flag_cells AS
SELECT day, user_id, model, CASE WHEN model IS NULL THEN session_id END AS session_id,
       category, severity, count(*) AS flags
FROM events
WHERE type = 'risk_flag'
GROUP BY ALL;

-- Risk flags counted per (day, user, attributed model, category, severity): a flag's own
-- model, else its session's (NULL when none is known).
CREATE VIEW risk_cells AS
WITH ses AS (
    SELECT r.user_id, r.ref AS session_id, first_model(r.model, r.day) AS model
    FROM model_refs AS r
    SEMI JOIN (SELECT user_id, session_id FROM flag_cells WHERE session_id IS NOT NULL) AS c
        ON r.user_id = c.user_id AND r.ref = c.session_id
    WHERE r.kind = 'session'
    GROUP BY r.user_id, r.ref
)
SELECT c.day, c.user_id, coalesce(c.model, s.model) AS model, c.category, c.severity,
       CAST(sum(c.flags) AS BIGINT) AS flags
FROM flag_cells AS c
LEFT JOIN ses AS s ON s.user_id = c.user_id AND s.session_id = c.session_id
GROUP BY ALL;

CREATE VIEW risk_flags_daily AS
SELECT day, category, severity, CAST(sum(flags) AS BIGINT) AS flags,
       count(DISTINCT user_id) AS users
FROM risk_cells
GROUP BY day, category, severity;

-- Distinct users with a high or critical risk flag in [d - 6, d], for every day of the
-- active-user series (same segment counting as active_users).
CREATE VIEW users_at_risk_weekly AS
WITH flagged AS (
    SELECT DISTINCT user_id, day FROM risk_cells
    WHERE severity IN ('high', 'critical')
),
segments AS (
    SELECT day, coalesce(least(day + 7, next_day), day + 7) AS week_end
    FROM (
        SELECT day, lead(day) OVER (PARTITION BY user_id ORDER BY day) AS next_day
        FROM flagged
    )
),
starts AS (SELECT day, count(*) AS n FROM segments GROUP BY day),
ends AS (SELECT week_end AS day, count(*) AS n FROM segments GROUP BY week_end)
SELECT r.day,
       CAST(sum(coalesce(s.n, 0) - coalesce(e.n, 0)) OVER (ORDER BY r.day) AS BIGINT) AS users,
       r.week_complete AS complete
FROM report_days AS r
LEFT JOIN starts AS s ON s.day = r.day
LEFT JOIN ends AS e ON e.day = r.day;
