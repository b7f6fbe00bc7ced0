"""`python -m atlas cloud provision` then `verify`, against moto's S3, DynamoDB and STS over HTTPS, and the live broker.

moto runs as its own process (`atlas.infra.s3.MotoServer`, TLS with a certificate made for it, its
bucket policies' TLS condition evaluated as S3 does). Each test takes a bucket and table prefix of
its own; the Kafka check looks for topics made here under a prefix of its own.
"""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from botocore.exceptions import ClientError

from atlas.audit.sql import TOPICS
from atlas.infra.s3 import MotoServer
from tests.helpers import ROOT

pytestmark = pytest.mark.integration
PARTITIONS = 8


@pytest.fixture(scope="module")
def aws(tmp_path_factory):
    server = MotoServer(tmp_path_factory.mktemp("moto") / "moto.log", tls=True).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def topics(kafka_bootstrap):
    """Every ATLAS topic under a prefix of this module's, as a worker makes them."""
    prefix = f"cloud{uuid.uuid4().hex[:6]}"

    async def make() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(f"{prefix}.{t}", PARTITIONS, 1) for t in TOPICS])
        finally:
            await admin.close()
    asyncio.run(make())
    return prefix


class Deployment:
    def __init__(self, aws: MotoServer, bootstrap: str, topic_prefix: str):
        self.bucket = f"trail-{uuid.uuid4().hex[:8]}"
        self.tables = f"t{uuid.uuid4().hex[:6]}"
        self.env = {**os.environ, **aws.env(), "ATLAS_AUDIT_SINK": f"s3://{self.bucket}",
                    "ATLAS_CLOUD_TABLE_PREFIX": self.tables, "ATLAS_KAFKA_BOOTSTRAP": bootstrap,
                    "ATLAS_TOPIC_PREFIX": topic_prefix, "ATLAS_PARTITIONS": str(PARTITIONS)}
        self.s3, self.dynamodb = aws.client("s3"), aws.client("dynamodb")

    def cloud(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "atlas", "cloud", *args], env=self.env, capture_output=True,
                              text=True, timeout=120, cwd=ROOT)

    def verify(self) -> dict[str, str]:
        """`cloud verify`: each check's result ("ok" or "FAIL"), by name."""
        done = self.cloud("verify")
        rows = done.stdout.splitlines()[1:-1]
        results = {}
        for row in rows:
            name, result = row[:row.index("  ")].strip(), row.split()[-1]
            results[name] = "FAIL" if "  FAIL  " in row else "ok"
            assert result  # a row has a detail
        assert done.returncode == (1 if "FAIL" in results.values() else 0), done.stdout + done.stderr
        self.report = done.stdout
        return results


@pytest.fixture
def deployment(aws, kafka_bootstrap, topics):
    made = Deployment(aws, kafka_bootstrap, topics)
    done = made.cloud("provision")
    assert done.returncode == 0, done.stdout + done.stderr
    return made


def test_provision_then_verify_passes_every_check(deployment):
    results = deployment.verify()
    assert set(results.values()) == {"ok"}, deployment.report
    assert {"caller identity", "bucket versioning", "bucket object lock", "bucket encryption",
            "bucket public access block", "bucket policy", "probe object", "kafka",
            f"table {deployment.tables}-orders", f"table {deployment.tables}-executions",
            f"table {deployment.tables}-balances", f"table {deployment.tables}-idempotency"} == \
        set(results) - {"bucket exists"}


def test_provisioning_again_changes_nothing(deployment):
    done = deployment.cloud("provision")
    assert done.returncode == 0 and done.stdout.strip().splitlines() == [
        f"provisioned: s3://{deployment.bucket} and the tables {deployment.tables}-*"], done.stdout


def test_the_bucket_keeps_its_objects(deployment):
    deployment.s3.put_object(Bucket=deployment.bucket, Key="audit/x.jsonl.gz", Body=b"kept")
    with pytest.raises(ClientError, match="AccessDenied|Forbidden|403"):
        deployment.s3.delete_object(Bucket=deployment.bucket, Key="audit/x.jsonl.gz")
    assert deployment.s3.get_object(Bucket=deployment.bucket, Key="audit/x.jsonl.gz")["Body"].read() == b"kept"
    policy = json.loads(deployment.s3.get_bucket_policy(Bucket=deployment.bucket)["Policy"])
    assert {s["Sid"] for s in policy["Statement"]} == {"DenyInsecureTransport", "DenyObjectDeletes"}


def test_the_bucket_refuses_plain_http(tmp_path, kafka_bootstrap, topics):
    """The same provisioning against a moto that speaks plain HTTP: its policy refuses every object request."""
    plain = MotoServer(tmp_path / "moto.log").start()
    try:
        made = Deployment(plain, kafka_bootstrap, topics)
        done = made.cloud("provision")
        assert done.returncode == 0, done.stdout + done.stderr
        with pytest.raises(ClientError, match="AccessDenied|Forbidden|403"):
            made.s3.put_object(Bucket=made.bucket, Key="audit/x.jsonl.gz", Body=b"over plain HTTP")
        results = made.verify()
        assert [n for n, r in results.items() if r == "FAIL"] == ["probe object"]
    finally:
        plain.stop()


def test_provisioning_never_shortens_a_retention_and_moves_s3s_default_encryption_to_kms(deployment):
    bucket = deployment.bucket
    deployment.s3.put_object_lock_configuration(Bucket=bucket, ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": 365}}})
    deployment.s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={
        "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})  # what S3 gives every bucket
    done = deployment.cloud("provision")
    assert done.returncode == 0, done.stdout + done.stderr
    lock = deployment.s3.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]
    kept = lock["Rule"]["DefaultRetention"]
    assert (kept["Mode"], kept["Days"]) == ("COMPLIANCE", 365)
    rules = deployment.s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    assert set(deployment.verify().values()) == {"ok"}, deployment.report


@pytest.mark.parametrize("remove, failing", [
    ("encryption", "bucket encryption"),
    ("kms encryption", "bucket encryption"),
    ("public access block", "bucket public access block"),
    ("policy", "bucket policy"),
    ("lock retention", "bucket object lock"),
    ("orders table", "table {tables}-orders"),
    ("idempotency TTL", "table {tables}-idempotency"),
    ("kafka topic", "kafka"),
])
def test_each_property_removed_in_turn_makes_verify_fail_naming_it(deployment, remove, failing, kafka_bootstrap):
    bucket, tables = deployment.bucket, deployment.tables
    if remove == "encryption":
        deployment.s3.delete_bucket_encryption(Bucket=bucket)
    elif remove == "kms encryption":
        deployment.s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
    elif remove == "public access block":
        deployment.s3.delete_public_access_block(Bucket=bucket)
    elif remove == "policy":
        deployment.s3.delete_bucket_policy(Bucket=bucket)
    elif remove == "lock retention":
        deployment.s3.put_object_lock_configuration(Bucket=bucket, ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}})
    elif remove == "orders table":
        deployment.dynamodb.delete_table(TableName=f"{tables}-orders")
    elif remove == "idempotency TTL":
        deployment.dynamodb.update_time_to_live(TableName=f"{tables}-idempotency", TimeToLiveSpecification={
            "Enabled": False, "AttributeName": "expires_at"})
    else:
        deployment.env["ATLAS_PARTITIONS"] = str(PARTITIONS * 2)  # the topics have fewer than the settings say
    results = deployment.verify()
    assert [name for name, result in results.items() if result == "FAIL"] == [failing.format(tables=tables)]


def test_a_bucket_made_without_object_lock_fails_verify_until_provision_switches_it_on(aws, kafka_bootstrap, topics):
    made = Deployment(aws, kafka_bootstrap, topics)
    made.s3.create_bucket(Bucket=made.bucket)
    results = made.verify()
    assert {n for n, r in results.items() if r == "FAIL"} == {
        "bucket versioning", "bucket object lock", "bucket encryption", "bucket public access block", "bucket policy",
        "probe object", f"table {made.tables}-orders", f"table {made.tables}-executions",
        f"table {made.tables}-balances", f"table {made.tables}-idempotency"}
    done = made.cloud("provision")  # S3 switches Object Lock on for a bucket once versioning is on
    assert done.returncode == 0, done.stdout + done.stderr
    assert set(made.verify().values()) == {"ok"}, made.report


def test_an_unreachable_aws_is_a_clear_error(kafka_bootstrap, topics, aws):
    made = Deployment(aws, kafka_bootstrap, topics)
    made.env["AWS_ENDPOINT_URL"] = "https://127.0.0.1:9"  # nothing listens
    done = made.cloud("provision")
    assert done.returncode == 2 and done.stderr.startswith("error: AWS:"), done.stderr[-500:]
