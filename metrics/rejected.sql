-- Rejected input by reason (docs/events.md), from the dead-letter table. The live form is the
-- worker's count per input position (usersignals.metrics.partition).

-- Rejections per reason and day received (the input record's Kafka timestamp, UTC).
CREATE VIEW rejected_daily AS
SELECT CAST(received_at AS DATE) AS day, reason, count(*) AS count
FROM deadletter GROUP BY ALL;

CREATE VIEW rejected AS
SELECT reason, CAST(sum(count) AS BIGINT) AS count FROM rejected_daily GROUP BY reason;
