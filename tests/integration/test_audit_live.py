"""The audit exporter in a live worker, writing to a folder: layout, content, verify, replay, tampering.

One worker with the venue and the exporter runs for the module; alice and bob trade (resting,
filled, replaced and canceled orders) and a malformed message goes to the commands topic.
Then `python -m atlas audit verify` must find every partition complete, `replay` must rebuild
the live orders and balances exactly, and a tampered copy of the trail must fail verify.
"""
from __future__ import annotations

import gzip
import json
import re
import shutil
from decimal import Decimal as D
from pathlib import Path

import pytest

from atlas.audit.format import AuditRecord, Batch, decode
from atlas.audit.sinks import FileSink
from atlas.audit.trail import write_batch
from tests.helpers import AUDIT_T0
from tests.live import Api, Cluster, Kafka, audit_cli, wait_exported

pytestmark = pytest.mark.integration

# Every topic but market data, which the venue keeps writing to.
QUIET_TOPICS = ("commands", "venue.orders", "venue.reports", "executions", "venue.control", "risk.control", "deadletter")
KEY = re.compile(r"^audit/topic=(?P<topic>[\w.\-]+)/dt=\d{4}-\d{2}-\d{2}/hour=\d{2}/partition=(?P<partition>\d+)/"
                 r"(?P<offset>\d{20})\.(jsonl\.gz|manifest\.json)$")


@pytest.fixture(scope="module")
def traded(kafka_bootstrap, tmp_path_factory):
    """A worker that has traded and exported for a few seconds; yields (cluster, trail folder, alice's order ids)."""
    cluster = Cluster(kafka_bootstrap, tmp_path_factory.mktemp("audit"), f"au-{tmp_path_factory.getbasetemp().name[-6:]}",
                      venue=True, audit=True, audit_max_age=0.5)
    worker = cluster.start_worker()
    try:
        alice, bob = Api(worker.url, cluster.keys["alice"]), Api(worker.url, cluster.keys["bob"])
        mid = _mid(alice)
        resting = alice.order(price=f"{mid * 0.95:.2f}").json["order_id"]
        canceled = alice.order(price=f"{mid * 0.95:.2f}").json["order_id"]
        filled = alice.order(price=f"{mid * 1.03:.2f}").json["order_id"]
        sold = bob.order(side="SELL", price=f"{mid * 0.97:.2f}").json["order_id"]
        for order_id in (resting, canceled):
            alice.wait_for(f"/api/v1/orders/{order_id}", lambda o: o["status"] == "NEW")
        assert alice.request("DELETE", f"/api/v1/orders/{canceled}").status == 202
        assert alice.request("PATCH", f"/api/v1/orders/{resting}", {"quantity": "0.02"}).status == 202
        for order_id, api in ((filled, alice), (sold, bob)):
            api.wait_for(f"/api/v1/orders/{order_id}", lambda o: o["status"] == "FILLED")
        alice.wait_for(f"/api/v1/orders/{canceled}", lambda o: o["status"] == "CANCELED")
        alice.wait_for(f"/api/v1/orders/{resting}", lambda o: D(o["quantity"]) == D("0.02") and o["status"] == "NEW")
        Kafka(cluster.bootstrap).produce(cluster.topic("commands"), [(b"alice", b"{not json")])
        wait_exported(cluster, QUIET_TOPICS)
        yield cluster, Path(cluster.audit_sink.removeprefix("file://")), [resting, canceled, filled]
    finally:
        cluster.stop()


def _mid(api: Api) -> float:
    book = api.wait_for("/api/v1/marketdata/BTC-USD", lambda b: b.get("mid") is not None)
    return float(book["mid"])  # only to pick test prices; the system itself never uses floats


def test_exporter_writes_hive_layout_objects_with_a_manifest_each(traded):
    cluster, folder, _ = traded
    keys = [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".tmp-")]
    assert keys and all(KEY.match(k) for k in keys), [k for k in keys if not KEY.match(k)][:3]
    objects = {k for k in keys if k.endswith(".jsonl.gz")}
    assert {k.removesuffix(".jsonl.gz") + ".manifest.json" for k in objects} <= set(keys)
    topics = {KEY.match(k)["topic"] for k in objects}
    assert {cluster.topic(t) for t in ("commands", "venue.orders", "venue.reports", "executions", "marketdata",
                                       "deadletter")} <= topics


def test_exporter_keeps_each_message_whole_and_in_offset_order(traded):
    cluster, folder, (resting, _, _) = traded
    for path in folder.rglob("*.jsonl.gz"):
        records = decode(path.read_bytes())
        offsets = [r.offset for r in records]
        assert offsets == sorted(set(offsets))
        assert int(path.name.split(".")[0]) == offsets[0]
    lines = sorted((json.loads(line) for path in folder.rglob(f"topic={cluster.topic('executions')}/**/*.jsonl.gz")
                    for line in gzip.decompress(path.read_bytes()).splitlines()),
                   key=lambda line: (line["partition"], line["offset"]))
    assert set(lines[0]) == {"topic", "partition", "offset", "timestamp", "key", "value", "headers"}
    mine = [json.loads(line["value"]) for line in lines if json.loads(line["value"])["order_id"] == resting]
    assert [r["exec_type"] for r in mine][:2] == ["PENDING_NEW", "NEW"]
    assert all(line["key"] == "alice" for line in lines if json.loads(line["value"])["account_id"] == "alice")
    bad = [line for path in folder.rglob(f"topic={cluster.topic('commands')}/**/*.jsonl.gz")
           for line in map(json.loads, gzip.decompress(path.read_bytes()).splitlines()) if line["value"] == "{not json"]
    assert len(bad) == 1


def test_verify_finds_every_partition_complete(traded):
    cluster, _, _ = traded
    done = audit_cli(cluster, "verify")
    assert done.returncode == 0, done.stdout + done.stderr
    summary = done.stdout.strip().splitlines()[-1]
    assert summary == "72 of 72 partitions complete, 0 problems"  # 9 topics of 8 partitions


def test_replay_rebuilds_the_live_orders_and_balances_exactly(traded):
    cluster, _, _ = traded
    done = audit_cli(cluster, "replay")
    assert done.returncode == 0, done.stdout + done.stderr
    line = done.stdout.strip().splitlines()[-1]
    accounts, orders = re.search(r"(\d+) accounts and (\d+) orders", line).groups()
    assert int(accounts) == 2 and int(orders) == 4 and line.endswith(", 0 differences")


def test_export_writes_plain_jsonl_per_topic_partition(traded, tmp_path):
    cluster, folder, _ = traded
    done = audit_cli(cluster, "export", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    files = list((tmp_path / "out" / cluster.topic("executions")).glob("partition=*.jsonl"))
    exported = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    in_trail = [r for p in folder.rglob(f"topic={cluster.topic('executions')}/**/*.jsonl.gz")
                for r in decode(p.read_bytes())]
    assert len(exported) == len(in_trail) > 0


@pytest.mark.parametrize("tamper, expected", [
    ("delete", "object missing"),
    ("alter", "object altered"),
    ("swap", "object altered"),
])
def test_verify_fails_on_a_tampered_trail(traded, tmp_path, tamper, expected):
    cluster, folder, _ = traded
    copy = tmp_path / "trail"
    # The exporter keeps writing (market data): a temporary file of its may vanish while we copy.
    shutil.copytree(folder, copy, ignore=shutil.ignore_patterns(".tmp-*"))
    objects = sorted(copy.rglob(f"topic={cluster.topic('marketdata')}/**/*.jsonl.gz"))
    by_dir: dict[Path, list[Path]] = {}
    for p in objects:
        by_dir.setdefault(p.parent, []).append(p)
    first, second = next(paths for paths in by_dir.values() if len(paths) >= 2)[:2]
    if tamper == "delete":
        first.unlink()
    elif tamper == "alter":
        lines = gzip.decompress(first.read_bytes()).replace(b'"key":', b'"kez":', 1)
        first.write_bytes(gzip.compress(lines, mtime=0))
    else:
        a, b = first.read_bytes(), second.read_bytes()
        first.write_bytes(b)
        second.write_bytes(a)
    done = audit_cli(cluster, "--sink", f"file://{copy}", "verify", "--offline")
    assert done.returncode == 1, done.stdout
    assert expected in done.stdout
    assert "PROBLEM" in done.stdout


def test_exporter_refuses_a_partition_whose_trail_is_ahead_of_the_topic(kafka_bootstrap, tmp_path):
    # A trail written for another incarnation of the topic (deleted and made again): going on
    # would chain a second history onto the first, so the exporter leaves that partition alone.
    cluster = Cluster(kafka_bootstrap, tmp_path, f"au-ahead-{tmp_path.name[-6:]}", audit=True)
    sink = FileSink(cluster.audit_sink.removeprefix("file://"))
    old = [AuditRecord(cluster.topic("deadletter"), 0, offset, AUDIT_T0, "k", "{}") for offset in (500, 501)]
    write_batch(sink, "audit", Batch(old[0].topic, 0, 500, 0, old), None)
    worker = cluster.start_worker()
    try:
        status = Api(worker.url).wait_for(
            # (ready comes before the exporter has started: its status has no partitions yet)
            "/readyz", lambda r: r["audit"].get("partitions", 0) + len(r["audit"].get("refused", ())) == 72)["audit"]
        assert status["ok"] is False
        assert list(status["refused"]) == [f"{cluster.topic('deadletter')}[0]"]
        assert "trail ends at offset 502" in status["refused"][f"{cluster.topic('deadletter')}[0]"]
        assert status["partitions"] == 71  # 9 topics of 8 partitions, but the one refused
    finally:
        cluster.stop()
