-- The audit trail as an Athena table: one row per Kafka record. Athena only; DuckDB (`python -m atlas
-- audit sql`) reads the same objects itself. Partitions are projected from the object keys, so there is
-- no crawler to run and no MSCK REPAIR:
--   <location>topic=T/dt=YYYY-MM-DD/hour=HH/partition=P/<first offset>.jsonl.gz
-- `python -m atlas audit sql --athena` prints this file and views.sql filled in for the configured sink
-- and topic prefix; double braces mark what it fills in. Athena runs one statement at a time.
--
-- Each object's manifest (<first offset>.manifest.json) sits beside it: a JSON document over several
-- lines, which the SerDe reads as malformed rows and the view at the end leaves out by its path.

CREATE EXTERNAL TABLE IF NOT EXISTS atlas_audit_objects (
  `offset` bigint,
  `timestamp` bigint,
  `key` string,
  `value` string,
  `headers` array<array<string>>,
  `encoding` string
)
PARTITIONED BY (`topic` string, `dt` string, `hour` int, `partition` int)
ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe'
WITH SERDEPROPERTIES ('ignore.malformed.json' = 'true')
LOCATION '{{location}}'
TBLPROPERTIES (
  'projection.enabled' = 'true',
  'projection.topic.type' = 'enum',
  'projection.topic.values' = '{{topics}}',
  'projection.dt.type' = 'date',
  'projection.dt.format' = 'yyyy-MM-dd',
  'projection.dt.range' = '{{first_day}},NOW',
  'projection.dt.interval' = '1',
  'projection.dt.interval.unit' = 'DAYS',
  'projection.hour.type' = 'integer',
  'projection.hour.range' = '0,23',
  'projection.hour.digits' = '2',
  'projection.partition.type' = 'integer',
  'projection.partition.range' = '0,{{last_partition}}',
  'storage.location.template' = '{{location}}topic=${topic}/dt=${dt}/hour=${hour}/partition=${partition}/'
);

-- The records, without the manifests: what views.sql builds on (DuckDB makes the same relation).
CREATE OR REPLACE VIEW atlas_audit_trail AS
SELECT topic, "partition", "offset", "timestamp", key, value, headers, encoding, dt, hour
FROM atlas_audit_objects
WHERE "$path" LIKE '%.jsonl.gz';
