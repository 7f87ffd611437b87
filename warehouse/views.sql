-- The warehouse's base relations, over two sources that usersignals.warehouse.db creates from
-- the files the manifest lists: events_raw (every loaded row, columns of layout.EVENTS_SCHEMA)
-- and deadletter_raw (layout.DEADLETTER_SCHEMA), and a third, arena_ratings_raw, over the
-- derived ratings file (see arena_ratings at the end; empty where the caller made none). Days
-- are calendar days of ts (the loader stores the UTC day in column day; a report in another
-- time zone replaces it).
--
-- Each metric's SQL lives beside its live fold, in metrics/<metric>.sql (attribution, activity,
-- feedback, risk, rejected, flattery); usersignals.warehouse.db.views_sql runs this file, then
-- those, in that order. Ratios are left unrounded; the report rounds them as the live path does.

-- The calendar. A day is the calendar day of ts in the connection's time zone (UTC unless a
-- report asks for another zone: usersignals.warehouse.db.connect); a week starts on the weekday
-- week_start_dow() (DuckDB's dayofweek: 0 Sunday, 1 Monday; connect replaces the macro for
-- weeks from Sunday) and is named by its first day.
CREATE MACRO week_start_dow() AS 1;

CREATE MACRO week_of(d) AS
    CAST(CAST(d AS DATE) - CAST((dayofweek(CAST(d AS DATE)) - week_start_dow() + 7) % 7 AS INTEGER)
         AS DATE);

-- The log positions of every copy of an event_id but the first (source_partition,
-- source_offset, batch_index): few rows. Ids are grouped by a 64-bit hash first (cheap); only
-- rows whose hash repeats are compared exactly, so a hash collision costs time, never a count.
CREATE VIEW event_copies AS
WITH repeated AS (
    SELECT hash(event_id) AS h FROM events_raw GROUP BY h HAVING count(*) > 1
)
SELECT source_partition, source_offset, batch_index
FROM events_raw
WHERE hash(event_id) IN (SELECT h FROM repeated)
QUALIFY row_number() OVER (
    PARTITION BY event_id ORDER BY source_partition, source_offset, batch_index
) > 1;

-- Each event_id once: the first copy in log order wins.
CREATE VIEW unique_events AS
SELECT * FROM events_raw
ANTI JOIN event_copies USING (source_partition, source_offset, batch_index);

-- What the metrics read: every event but identity calls (type identify), which are not
-- activity. A custom event (a page view, a screen) is activity and nothing else.
CREATE VIEW events AS
SELECT * FROM unique_events WHERE type <> 'identify';

-- Identity calls (identify, alias, group, ... from the capture endpoints or from
-- the SDK), each event_id once, as they came: name is the call, properties its fields.
CREATE VIEW identities AS
SELECT event_id, user_id, ts, day, name, session_id, platform, properties, extra, received_at,
       source_partition, source_offset, batch_index
FROM unique_events WHERE type = 'identify';

-- Rejected input, one row per rejection (a range loaded twice is still counted once).
CREATE VIEW deadletter AS
SELECT * FROM deadletter_raw
QUALIFY row_number() OVER (
    PARTITION BY source_topic, source_partition, source_offset, batch_index, reason
    ORDER BY received_at
) = 1;

-- Sessions: the events that carry a session_id, per (user_id, session_id). Start and end are
-- the session_start / session_end events when present, else the first / last event seen.
-- Lengths are differences of epochs: subtracting two TIMESTAMPTZ in a zone with summer time
-- gives calendar days of the zone, not seconds.
CREATE VIEW sessions AS
SELECT user_id,
       session_id,
       CAST(coalesce(min(ts) FILTER (WHERE type = 'session_start'), min(ts)) AS DATE) AS day,
       coalesce(min(ts) FILTER (WHERE type = 'session_start'), min(ts)) AS started_at,
       coalesce(max(ts) FILTER (WHERE type = 'session_end'), max(ts)) AS ended_at,
       coalesce(
           max(duration_s) FILTER (WHERE type = 'session_end'),
           epoch(coalesce(max(ts) FILTER (WHERE type = 'session_end'), max(ts)))
           - epoch(coalesce(min(ts) FILTER (WHERE type = 'session_start'), min(ts)))
       ) AS duration_s,
       count(*) FILTER (WHERE type = 'message') AS messages,
       max_by(model, ts) FILTER (WHERE model IS NOT NULL) AS model,
       max_by(platform, ts) FILTER (WHERE platform IS NOT NULL) AS platform
FROM events
WHERE session_id IS NOT NULL
GROUP BY user_id, session_id;

-- The arena ratings as last fitted (usersignals.warehouse.derived): the Bradley-Terry fit of
-- the whole warehouse's count table that report --json prints under arena (model, rating,
-- ci_low, ci_high, votes, rank), with the manifest generation it was fitted at and the votes of
-- that table. The loader refits it after a commit that changed the count table. Its source,
-- arena_ratings_raw, is the file derived/arena_ratings.parquet (usersignals.warehouse.db makes
-- it, empty while there is no file); where no caller made one, it is this empty relation of the
-- file's columns (derived.ARENA_RATINGS_SCHEMA).
CREATE VIEW IF NOT EXISTS arena_ratings_raw AS
SELECT CAST(NULL AS VARCHAR) AS model, CAST(NULL AS DOUBLE) AS rating,
       CAST(NULL AS DOUBLE) AS ci_low, CAST(NULL AS DOUBLE) AS ci_high,
       CAST(NULL AS BIGINT) AS votes, CAST(NULL AS BIGINT) AS rank,
       CAST(NULL AS BIGINT) AS generation, CAST(NULL AS BIGINT) AS total_votes
WHERE false;

CREATE VIEW arena_ratings AS
SELECT model, rating, ci_low, ci_high, votes, rank, generation, total_votes
FROM arena_ratings_raw;
