-- Views over the audit trail that parse its records, in SQL both Athena (Trino) and DuckDB run.
-- They read `atlas_audit_trail`: one row per Kafka record (topic, partition, offset, timestamp, key,
-- value, headers, encoding, dt, hour), which trail.sql defines for Athena and `python -m atlas audit
-- sql` for DuckDB (with `json_extract_scalar` and `from_unixtime` as Trino names them).
-- {{prefix}} is the topic prefix (ATLAS_TOPIC_PREFIX, "atlas" by default).
--
-- A record can be in the trail twice: an agent that restarts sends again what it had sent but not
-- committed (marked atlas-poss-dup), and a client may send a command again. The views without
-- `_all` keep the first copy of each execution report (by exec_id) and command (by command_id).
-- Amounts are decimal(38, 18), as exact as the JSON's strings. A record that is not JSON, or a field that
-- is not a number where one is expected (a producer may send anything on commands), reads as NULL.

CREATE OR REPLACE VIEW atlas_execution_reports_all AS
SELECT
  json_extract_scalar(value, '$.exec_id') AS exec_id,
  TRY_CAST(json_extract_scalar(value, '$.seq') AS bigint) AS seq,
  json_extract_scalar(value, '$.cause_id') AS cause_id,
  json_extract_scalar(value, '$.order_id') AS order_id,
  json_extract_scalar(value, '$.client_order_id') AS client_order_id,
  json_extract_scalar(value, '$.account_id') AS account_id,
  json_extract_scalar(value, '$.symbol') AS symbol,
  json_extract_scalar(value, '$.side') AS side,
  json_extract_scalar(value, '$.type') AS order_type,
  json_extract_scalar(value, '$.time_in_force') AS time_in_force,
  json_extract_scalar(value, '$.exec_type') AS exec_type,
  json_extract_scalar(value, '$.status') AS status,
  TRY_CAST(json_extract_scalar(value, '$.quantity') AS decimal(38, 18)) AS quantity,
  TRY_CAST(json_extract_scalar(value, '$.price') AS decimal(38, 18)) AS price,
  TRY_CAST(json_extract_scalar(value, '$.last_qty') AS decimal(38, 18)) AS last_qty,
  TRY_CAST(json_extract_scalar(value, '$.last_px') AS decimal(38, 18)) AS last_px,
  TRY_CAST(json_extract_scalar(value, '$.cum_qty') AS decimal(38, 18)) AS cum_qty,
  TRY_CAST(json_extract_scalar(value, '$.leaves_qty') AS decimal(38, 18)) AS leaves_qty,
  TRY_CAST(json_extract_scalar(value, '$.avg_px') AS decimal(38, 18)) AS avg_px,
  json_extract_scalar(value, '$.reason') AS reason,
  TRY_CAST(json_extract_scalar(value, '$.ts') AS bigint) AS ts_ms,
  from_unixtime(TRY_CAST(json_extract_scalar(value, '$.ts') AS double) / 1000) AS ts,
  "partition" AS kafka_partition,
  "offset" AS kafka_offset,
  dt,
  hour
FROM atlas_audit_trail
WHERE topic = '{{prefix}}.executions' AND coalesce(encoding, 'utf-8') = 'utf-8';

CREATE OR REPLACE VIEW atlas_execution_reports AS
SELECT *
FROM (
  -- A report without an exec_id (not one the OMS wrote) is its own: each such record is kept.
  SELECT r.*, row_number() OVER (
    PARTITION BY coalesce(exec_id, CAST(kafka_partition AS varchar) || '/' || CAST(kafka_offset AS varchar))
    ORDER BY kafka_partition, kafka_offset) AS copy_no
  FROM atlas_execution_reports_all r
) first_copies
WHERE copy_no = 1;

CREATE OR REPLACE VIEW atlas_fills AS
SELECT
  exec_id, order_id, client_order_id, account_id, symbol, side, order_type,
  last_qty AS quantity,
  last_px AS price,
  -- Exact for quantities of up to 10 decimals and prices of up to 8 (the instruments' lots and ticks have fewer).
  CAST(last_qty AS decimal(38, 10)) * CAST(last_px AS decimal(38, 8)) AS notional,
  status,
  ts_ms,
  ts
FROM atlas_execution_reports
WHERE exec_type = 'TRADE';

CREATE OR REPLACE VIEW atlas_commands_all AS
SELECT
  json_extract_scalar(value, '$.command_id') AS command_id,
  json_extract_scalar(value, '$.command') AS command,
  json_extract_scalar(value, '$.account_id') AS account_id,
  json_extract_scalar(value, '$.order_id') AS order_id,
  json_extract_scalar(value, '$.client_order_id') AS client_order_id,
  json_extract_scalar(value, '$.symbol') AS symbol,
  json_extract_scalar(value, '$.side') AS side,
  json_extract_scalar(value, '$.type') AS order_type,
  json_extract_scalar(value, '$.time_in_force') AS time_in_force,
  TRY_CAST(json_extract_scalar(value, '$.quantity') AS decimal(38, 18)) AS quantity,
  TRY_CAST(json_extract_scalar(value, '$.price') AS decimal(38, 18)) AS price,
  value AS body,
  "timestamp" AS kafka_timestamp_ms,
  "partition" AS kafka_partition,
  "offset" AS kafka_offset,
  dt,
  hour
FROM atlas_audit_trail
WHERE topic = '{{prefix}}.commands' AND coalesce(encoding, 'utf-8') = 'utf-8';

CREATE OR REPLACE VIEW atlas_commands AS
SELECT *
FROM (
  -- A command without a command_id (a producer's malformed one) is its own: each such record is kept.
  SELECT c.*, row_number() OVER (
    PARTITION BY coalesce(command_id, CAST(kafka_partition AS varchar) || '/' || CAST(kafka_offset AS varchar))
    ORDER BY kafka_partition, kafka_offset) AS copy_no
  FROM atlas_commands_all c
) first_copies
WHERE copy_no = 1;
