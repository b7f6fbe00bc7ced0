"""The S3 sink against a real S3 API over HTTP: moto's server, in its own process, started here."""
from __future__ import annotations

import time

import boto3
import pytest

from atlas.audit.format import decode, encode
from atlas.audit.sinks import ObjectExists, open_sink
from tests.helpers import audit_records as records
from atlas.infra.s3 import MotoServer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory):
    """`python -m moto.server` on a free port, until the module is done."""
    server = MotoServer(tmp_path_factory.mktemp("moto") / "moto.log").start()
    yield server.url
    server.stop()


@pytest.fixture
def s3(s3_endpoint, monkeypatch):
    """A client of the moto server, configured the usual AWS way (environment variables)."""
    for name, value in {"AWS_ENDPOINT_URL": s3_endpoint, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    return boto3.client("s3")


def test_s3_sink_puts_gets_and_lists_objects_with_their_checksum(s3):
    s3.create_bucket(Bucket="trail")
    sink = open_sink("s3://trail/audit")
    data = encode(records(0, 3))
    sink.put("topic=t/partition=0/00000000000000000000.jsonl.gz", data)
    assert decode(sink.get("topic=t/partition=0/00000000000000000000.jsonl.gz")) == records(0, 3)
    assert sink.get("topic=t/partition=0/missing.jsonl.gz") is None
    assert list(sink.keys("topic=t/")) == ["topic=t/partition=0/00000000000000000000.jsonl.gz"]
    head = s3.head_object(Bucket="trail", Key="audit/topic=t/partition=0/00000000000000000000.jsonl.gz",
                          ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"]


def test_s3_sink_never_overwrites_an_object(s3):
    s3.create_bucket(Bucket="no-overwrite")
    sink = open_sink("s3://no-overwrite")
    sink.put("k.jsonl.gz", b"first")
    with pytest.raises(ObjectExists):
        sink.put("k.jsonl.gz", b"second")
    assert sink.get("k.jsonl.gz") == b"first"


def test_s3_sink_sets_object_lock_retention_when_asked(s3):
    s3.create_bucket(Bucket="locked", ObjectLockEnabledForBucket=True)
    sink = open_sink("s3://locked/audit", lock_mode="COMPLIANCE", lock_days=7)
    sink.put("k.jsonl.gz", b"kept")
    # (moto's GetObjectRetention answers 500; the object's headers carry the same facts)
    head = s3.head_object(Bucket="locked", Key="audit/k.jsonl.gz")
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert head["ObjectLockRetainUntilDate"].timestamp() > time.time() + 6 * 86400


def test_s3_sink_switches_bucket_versioning_on_when_asked(s3):
    s3.create_bucket(Bucket="versions")
    sink = open_sink("s3://versions")
    assert sink.versioning() == "Off"
    assert sink.versioning(enable=True) == "Enabled"
    assert s3.get_bucket_versioning(Bucket="versions")["Status"] == "Enabled"


def test_audit_sql_reads_a_trail_in_s3_through_duckdbs_httpfs(s3, tmp_path):
    import json
    import subprocess
    import sys

    from atlas.audit.format import AuditRecord, Batch
    from atlas.audit.trail import write_batch
    from tests.helpers import ROOT, execution_report

    s3.create_bucket(Bucket="queried")
    sink = open_sink("s3://queried/trail")
    reports = [execution_report("TRADE", "FILLED", order_id=f"O{n}", last_qty="0.5", last_px="100.25", cum_qty="2")
               .model_dump_json().encode() for n in range(3)]
    made = [AuditRecord.of("atlas.executions", 1, n, 1_796_000_000_000 + n, b"alice", value)
            for n, value in enumerate(reports)]
    write_batch(sink, "audit", Batch("atlas.executions", 1, 0, 0, made), None)
    done = subprocess.run([sys.executable, "-m", "atlas", "audit", "--sink", "s3://queried/trail", "sql",
                           "SELECT count(*) AS fills, sum(notional) AS notional FROM atlas_fills", "--format", "json"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"fills": 3, "notional": "150.375"}
