"""The audit exporter writing to a real S3 API (moto's server), through an outage of that server.

The worker is configured the usual AWS way (endpoint and credentials in the environment) and
asks for Object Lock retention. Mid-run the S3 server is stopped (SIGSTOP: every request
hangs, then times out) while traders keep trading; the exporter must stop consuming and retry,
trading must go on, and once the server runs again the whole trail must verify and replay.
"""
from __future__ import annotations

import asyncio
import re
import time
from datetime import datetime, timezone

import pytest

from atlas.audit.broker import broker_views
from atlas.infra.s3 import MotoServer
from tests.live import Api, Cluster, audit_cli, wait_exported

pytestmark = [pytest.mark.integration, pytest.mark.faults]

QUIET_TOPICS = ("commands", "venue.reports", "executions", "deadletter")


@pytest.fixture(scope="module")
def s3_cluster(kafka_bootstrap, tmp_path_factory):
    root = tmp_path_factory.mktemp("audit-s3")
    moto = MotoServer(root / "moto.log").start()
    s3 = moto.client("s3")
    s3.create_bucket(Bucket="trail", ObjectLockEnabledForBucket=True)
    cluster = Cluster(kafka_bootstrap, root, f"as-{root.name[-6:]}", venue=True, audit=True, audit_sink="s3://trail",
                      audit_max_age=0.5, extra_env={**moto.env(), "ATLAS_AUDIT_LOCK_MODE": "GOVERNANCE",
                                                    "ATLAS_AUDIT_LOCK_DAYS": "2",
                                                    "ATLAS_AUDIT_VERSIONING": "true"})
    cluster.start_worker()
    try:
        yield cluster, moto, s3
    finally:
        cluster.stop()
        moto.stop()


def _trade(api: Api, n: int) -> list[str]:
    """n marketable buys; returns their order ids once all are FILLED."""
    mid = float(api.wait_for("/api/v1/marketdata/BTC-USD", lambda b: b.get("mid") is not None)["mid"])
    ids = [api.order(price=f"{mid * 1.03:.2f}", quantity="0.001").json["order_id"] for _ in range(n)]
    for order_id in ids:
        api.wait_for(f"/api/v1/orders/{order_id}", lambda o: o["status"] == "FILLED", timeout=30)
    return ids


def _committed(cluster: Cluster) -> dict:
    views = asyncio.run(broker_views(cluster.kafka, cluster.app_id, f"{cluster.app_id}-audit"))
    return {tp: (v.committed, v.head) for tp, v in views.items() if tp[0] == cluster.topic("executions")}


def test_exporter_puts_locked_checksummed_objects_in_a_versioned_bucket(s3_cluster):
    cluster, _, s3 = s3_cluster
    assert s3.get_bucket_versioning(Bucket="trail")["Status"] == "Enabled"
    # The exporter starts, then reads the bucket's versioning, a moment after the worker is ready.
    Api(cluster.workers[0].url).wait_for("/readyz", lambda d: d["audit"].get("versioning") == "Enabled")
    _trade(Api(cluster.workers[0].url, cluster.keys["alice"]), 3)
    wait_exported(cluster, QUIET_TOPICS)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="trail", Prefix=f"audit/topic={cluster.topic('executions')}/")
            ["Contents"]]
    assert keys and all(re.search(r"/partition=\d+/\d{20}\.(jsonl\.gz|manifest\.json)$", k) for k in keys)
    head = s3.head_object(Bucket="trail", Key=next(k for k in keys if k.endswith(".jsonl.gz")), ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"]
    assert head["ObjectLockMode"] == "GOVERNANCE"
    assert head["ObjectLockRetainUntilDate"] > datetime.now(timezone.utc)


def test_s3_outage_pauses_the_exporter_not_trading_and_nothing_is_lost(s3_cluster):
    cluster, moto, _ = s3_cluster
    alice = Api(cluster.workers[0].url, cluster.keys["alice"])
    wait_exported(cluster, QUIET_TOPICS)
    moto.freeze()
    try:
        # Trading goes on: orders are accepted and filled while the sink hangs.
        during = _trade(alice, 10)
        status = alice.wait_for("/readyz", lambda r: r["audit"]["ok"] is False, timeout=90)
        assert status["status"] == "ready" and status["audit"]["last_error"]
        # And the exporter has stopped: its committed offsets stay put while the executions grow.
        before = _committed(cluster)
        _trade(alice, 3)
        time.sleep(2)
        after = _committed(cluster)
        assert {tp: c for tp, (c, _) in after.items()} == {tp: c for tp, (c, _) in before.items()}
        assert sum(h for _, h in after.values()) > sum(h for _, h in before.values())
    finally:
        moto.thaw()
    wait_exported(cluster, QUIET_TOPICS, timeout=120)
    assert alice.wait_for("/readyz", lambda r: r["audit"]["ok"] is True, timeout=30)["audit"]["ok"]
    verified = audit_cli(cluster, "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.strip().splitlines()[-1].endswith("partitions complete, 0 problems")
    replayed = audit_cli(cluster, "replay")
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert replayed.stdout.strip().endswith(", 0 differences")
    exported = audit_cli(cluster, "export", str(cluster.root / "export"))
    assert exported.returncode == 0, exported.stderr
    text = "".join(p.read_text() for p in (cluster.root / "export" / cluster.topic("executions")).glob("*.jsonl"))
    assert all(order_id in text for order_id in during)
