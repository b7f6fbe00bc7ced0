"""SQL over the audit trail: DuckDB runs the views Athena runs (`infra/athena/views.sql`) over its objects.

The trail's objects are gzip JSONL under `<sink>/<prefix>/topic=T/dt=D/hour=H/partition=P/`;
DuckDB reads them where they are, from a folder or from S3 (its httpfs extension, installed from
its PyPI package, configured the usual AWS way: `AWS_ENDPOINT_URL`, the credential chain). Each
query gets the relation `atlas_audit_trail` (one row per Kafka record), `json_extract_scalar` and
`from_unixtime` as Trino names them, then the views, so that the same SQL answers in Athena.

`athena_ddl` fills in `infra/athena/trail.sql` and `views.sql` for a sink, for Athena's console.
"""
from __future__ import annotations

import importlib.metadata
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from atlas.audit.sinks import split_s3_url
from atlas.infra.athena import HERE as ATHENA

# ATLAS's topics (`atlas.topics.ALL`, which starts the Faust app; a test keeps the two alike).
TOPICS = ("commands", "admin", "venue.orders", "venue.reports", "executions", "marketdata", "venue.control",
          "risk.control", "deadletter")

# Trino's names, which views.sql uses, for DuckDB's own functions. Trino's json_extract_scalar gives NULL for a
# value that is not JSON (anyone's command may be anything).
_TRINO_NAMES = ("CREATE MACRO json_extract_scalar(doc, path) AS "
                "CASE WHEN json_valid(doc) THEN json_extract_string(doc, path) END;",
                "CREATE MACRO from_unixtime(seconds) AS to_timestamp(seconds);")
_COLUMNS = ("{'offset': 'BIGINT', 'timestamp': 'BIGINT', 'key': 'VARCHAR', 'value': 'VARCHAR', "
            "'headers': 'VARCHAR[][]', 'encoding': 'VARCHAR'}")
_PARTITIONS = "{'topic': 'VARCHAR', 'dt': 'VARCHAR', 'hour': 'INTEGER', 'partition': 'INTEGER'}"


class TrailQueryError(Exception):
    """The query, or reading the trail for it, failed: the message says why."""


def _filled(text: str, **values: str) -> str:
    for name, value in values.items():
        text = text.replace("{{" + name + "}}", value)
    return text


def views(topic_prefix: str) -> str:
    """views.sql for a topic prefix."""
    return _filled((ATHENA / "views.sql").read_text(), prefix=topic_prefix)


def trail_root(sink_url: str, prefix: str) -> str:
    """Where the trail's `topic=` folders are: a path, or an `s3://bucket/key-prefix/` URL (ending in a slash)."""
    parts = [p for p in (prefix.strip("/"),) if p]
    if sink_url.startswith("file://"):
        return str(Path(sink_url.removeprefix("file://"), *parts)) + "/"
    if sink_url.startswith("s3://"):
        bucket, inner = split_s3_url(sink_url)
        keys = "/".join(p for p in (inner, *parts) if p)
        return f"s3://{bucket}/{keys}/" if keys else f"s3://{bucket}/"
    raise ValueError(f"unsupported sink {sink_url!r}: file://PATH or s3://bucket/prefix")


def athena_ddl(sink_url: str, prefix: str, topic_prefix: str, topics: Sequence[str], partitions: int,
               first_day: date) -> str:
    """trail.sql and views.sql filled in for an S3 sink and ATLAS's topics: what to run in Athena, one statement
    at a time."""
    location = trail_root(sink_url, prefix)
    if not location.startswith("s3://"):
        raise ValueError("Athena reads S3: the sink must be s3://bucket[/prefix]")
    table = _filled((ATHENA / "trail.sql").read_text(), location=location, first_day=first_day.isoformat(),
                    topics=",".join(topics), last_partition=str(partitions - 1))
    return table + "\n" + views(topic_prefix)


def connect(sink_url: str, prefix: str, topic_prefix: str) -> Any:
    """A DuckDB connection holding the trail's relation and views (an in-memory database)."""
    import duckdb

    root = trail_root(sink_url, prefix)
    db = duckdb.connect(":memory:")
    if root.startswith("s3://"):
        _s3(db)
    elif not Path(root).is_dir():
        raise TrailQueryError(f"no audit trail at {root}")
    for statement in _TRINO_NAMES:
        db.execute(statement)
    pattern = f"{root}topic=*/dt=*/hour=*/partition=*/*.jsonl.gz"
    if not _has_objects(db, pattern):
        # An empty relation of the right shape: the views still answer, with no rows.
        db.execute("CREATE VIEW atlas_audit_trail AS SELECT NULL::VARCHAR AS topic, NULL::INTEGER AS \"partition\", "
                   "NULL::BIGINT AS \"offset\", NULL::BIGINT AS \"timestamp\", NULL::VARCHAR AS key, "
                   "NULL::VARCHAR AS value, NULL::VARCHAR[][] AS headers, NULL::VARCHAR AS encoding, "
                   "NULL::VARCHAR AS dt, NULL::INTEGER AS hour WHERE false")
    else:
        db.execute(f"""CREATE VIEW atlas_audit_trail AS
            SELECT topic, "partition", "offset", "timestamp", key, value, headers, encoding, dt, hour
            FROM read_json({_literal(pattern)}, format = 'newline_delimited', compression = 'gzip',
                           hive_partitioning = true, hive_types = {_PARTITIONS}, columns = {_COLUMNS})""")
    db.execute(views(topic_prefix))
    return db


def query(sink_url: str, prefix: str, topic_prefix: str, sql: str) -> tuple[list[str], list[tuple]]:
    """Run one query over the trail's views: (column names, rows)."""
    import duckdb

    try:
        db = connect(sink_url, prefix, topic_prefix)
        try:
            cursor = db.execute(sql)
            columns = [d[0] for d in cursor.description or ()]
            return columns, cursor.fetchall() if columns else []
        finally:
            db.close()
    except duckdb.Error as exc:
        raise TrailQueryError(str(exc).strip()) from None


def _has_objects(db: Any, pattern: str) -> bool:
    return bool(db.execute("SELECT count(*) FROM glob(?)", [pattern]).fetchone()[0])


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _s3(db: Any) -> None:
    """httpfs from its PyPI package (no download at query time), and boto3's view of the credentials and endpoint."""
    import boto3

    extension = next((f for f in importlib.metadata.files("duckdb-ext-httpfs") or ()
                      if f.name == "httpfs.duckdb_extension"), None)
    if extension is None:
        raise TrailQueryError("DuckDB's httpfs extension is not installed (pip package duckdb-ext-httpfs)")
    db.execute(f"LOAD {_literal(str(extension.locate()))}")
    session = boto3.Session()
    credentials = session.get_credentials()
    options = ["TYPE s3", f"REGION {_literal(session.region_name or 'us-east-1')}"]
    if credentials is not None:
        frozen = credentials.get_frozen_credentials()
        options += [f"KEY_ID {_literal(frozen.access_key)}", f"SECRET {_literal(frozen.secret_key)}"]
        if frozen.token:
            options.append(f"SESSION_TOKEN {_literal(frozen.token)}")
    where = urlsplit(session.client("s3").meta.endpoint_url)  # boto3's, which AWS_ENDPOINT_URL(_S3) may set
    if not where.netloc.endswith(".amazonaws.com"):  # an S3-compatible store of your own: its host, by path
        options += [f"ENDPOINT {_literal(where.netloc)}", "URL_STYLE 'path'", f"USE_SSL {where.scheme == 'https'}"]
    db.execute(f"CREATE SECRET atlas_trail ({', '.join(options)})")


def render(columns: Sequence[str], rows: Sequence[tuple], style: str = "table") -> str:
    """Rows as an aligned table, CSV or JSON lines."""
    if style == "json":
        import json

        return "".join(json.dumps(dict(zip(columns, (_text(v) for v in row)))) + "\n" for row in rows)
    if style == "csv":
        import csv
        import io

        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([[_text(v) for v in row] for row in rows])
        return out.getvalue()
    cells = [[str(c) for c in columns]] + [["" if v is None else str(_text(v)) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines) + f"\n({len(rows)} row{'s' if len(rows) != 1 else ''})\n"


def _text(value: Any) -> Any:
    """A JSON-friendly value: decimals exact as text (trailing zeros of decimal(38, 18) dropped), times ISO 8601."""
    from datetime import datetime
    from decimal import Decimal

    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, datetime):
        return value.isoformat()
    return value
