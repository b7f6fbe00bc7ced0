"""SIGKILL the worker again and again, or move partitions between exporters, while orders flow: the trail stays whole.

Small, young batches make many objects, so kills land between an object's write, its
manifest and the offset commit. Afterwards `audit verify` must find every partition complete
(no gap, no duplicate, chain intact, everything up to the committed offsets), every command
sent must be in the trail exactly once, `audit replay` must rebuild the live orders and
balances exactly, and `audit sql`'s views must count each execution report once.
"""
from __future__ import annotations

import asyncio
import json
import re
import uuid
from decimal import Decimal as D

import pytest
from aiokafka import AIOKafkaProducer

from atlas.audit.format import decode
from tests.live import (
    Api, Cluster, audit_cli, current_mid, kill_and_restart, send_commands, settle, trading_plan, wait_exported,
)

pytestmark = [pytest.mark.integration, pytest.mark.faults]

TRADERS = [f"trader-{n:02d}" for n in range(4)]
ROUNDS = 60
KILLS = 3
QUIET_TOPICS = ("commands", "venue.reports", "executions", "deadletter")


def plan(mid: D) -> list[dict]:
    """Per round and trader a marketable order; every sixth round also a resting buy."""
    return trading_plan(mid, TRADERS, ROUNDS, rest_every=6, tag="ak")


def settle_and_check_the_trail(cluster: Cluster, commands: list[dict]) -> None:
    """Once every order has settled and the trail has caught up: verify, every command once, replay."""
    for account in TRADERS:
        settle(Api(cluster.workers[0].url, cluster.keys[account]), account,
               [c for c in commands if c["account_id"] == account])
    wait_exported(cluster, QUIET_TOPICS, timeout=120)
    verified = audit_cli(cluster, "verify")
    assert verified.returncode == 0, verified.stdout[-3000:] + verified.stderr[-2000:]
    assert verified.stdout.strip().splitlines()[-1] == "72 of 72 partitions complete, 0 problems"  # 9 topics of 8 partitions
    trail = cluster.root / "audit" / "audit" / f"topic={cluster.topic('commands')}"
    sent = [json.loads(r.value)["command_id"] for p in trail.rglob("*.jsonl.gz") for r in decode(p.read_bytes())]
    assert sorted(sent) == sorted(c["command_id"] for c in commands)
    replayed = audit_cli(cluster, "replay")
    assert replayed.returncode == 0, replayed.stdout[-3000:] + replayed.stderr[-2000:]
    assert replayed.stdout.strip().endswith(", 0 differences")
    check_the_sql_views(cluster)


def sql(cluster: Cluster, query: str) -> list[dict]:
    done = audit_cli(cluster, "sql", query, "--format", "json")
    assert done.returncode == 0, done.stderr[-2000:]
    return [json.loads(line) for line in done.stdout.splitlines()]


def check_the_sql_views(cluster: Cluster) -> None:
    """`audit sql`'s views over the same trail: each execution report once, however often the kills made it sent."""
    trail = cluster.root / "audit" / "audit" / f"topic={cluster.topic('executions')}"
    records = [json.loads(r.value) for p in trail.rglob("*.jsonl.gz") for r in decode(p.read_bytes())]
    exec_ids = {r["exec_id"] for r in records}
    [counted] = sql(cluster, "SELECT count(*) AS all_rows, (SELECT count(*) FROM atlas_execution_reports) AS reports, "
                             "(SELECT count(DISTINCT exec_id) FROM atlas_execution_reports) AS distinct_ids "
                             "FROM atlas_execution_reports_all")
    assert counted == {"all_rows": len(records), "reports": len(exec_ids), "distinct_ids": len(exec_ids)}
    # Each order's reports once: seq 1..n without a gap or a repeat.
    gaps = sql(cluster, "SELECT order_id, count(*) AS n, max(seq) AS last FROM atlas_execution_reports "
                        "GROUP BY order_id HAVING count(*) <> max(seq) OR min(seq) <> 1")
    assert gaps == []
    [fills] = sql(cluster, "SELECT count(*) AS fills, sum(quantity) AS quantity FROM atlas_fills")
    traded = {r["exec_id"]: r for r in records if r["exec_type"] == "TRADE"}
    assert fills["fills"] == len(traded) and D(fills["quantity"]) == sum(D(r["last_qty"]) for r in traded.values())


async def send_while(cluster: Cluster, commands: list[dict], disturb) -> None:
    """Send the commands at about 40/s while `disturb()` runs."""
    producer = AIOKafkaProducer(bootstrap_servers=cluster.bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        sending = send_commands(producer, cluster.topic("commands"), commands, per_pause=2)
        await asyncio.wait_for(asyncio.gather(sending, disturb()), timeout=300)
    finally:
        await producer.stop()


async def kills(cluster: Cluster) -> None:
    """Kill the worker and restart it, KILLS times."""
    for _ in range(KILLS):
        await kill_and_restart(cluster.workers[0], after=2.5)


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_repeated_kill_9_leaves_a_complete_verifiable_replayable_trail(kafka_bootstrap, tmp_path, guarantee):
    cluster = Cluster(kafka_bootstrap, tmp_path, f"akill-{guarantee[:5]}-{uuid.uuid4().hex[:6]}", guarantee=guarantee,
                      venue=True, audit=True, audit_max_age=0.2, extra_env={"ATLAS_AUDIT_MAX_RECORDS": "40"})
    cluster.start_worker()
    try:
        commands = plan(asyncio.run(current_mid(cluster)))
        asyncio.run(send_while(cluster, commands, lambda: kills(cluster)))
        settle_and_check_the_trail(cluster, commands)
    finally:
        cluster.stop()
    log = cluster.workers[0].log_path.read_text(errors="replace")
    resumed = [int(n) for n in re.findall(r"audit: \d+ partitions assigned, (\d+) of them resume after", log)]
    assert len(resumed) >= KILLS + 1 and max(resumed) > 0, "each restart must resume from the sink's manifests"


async def churn(cluster: Cluster) -> None:
    """A second worker joins, leaves cleanly, joins again and is killed."""
    loop = asyncio.get_running_loop()
    await asyncio.sleep(2.0)
    second = await loop.run_in_executor(None, cluster.start_worker, "w1")
    await asyncio.sleep(3.0)
    await loop.run_in_executor(None, second.stop)  # SIGTERM: the exporter flushes its open batches
    await asyncio.sleep(1.0)
    await loop.run_in_executor(None, second.start)
    await asyncio.sleep(3.0)
    await loop.run_in_executor(None, second.kill)  # SIGKILL: its partitions move back after the session timeout


def test_exporters_sharing_partitions_through_rebalances_leave_one_complete_trail(kafka_bootstrap, tmp_path):
    cluster = Cluster(kafka_bootstrap, tmp_path, f"areb-{uuid.uuid4().hex[:6]}", venue=True, audit=True,
                      audit_max_age=0.2, extra_env={"ATLAS_AUDIT_MAX_RECORDS": "40"})
    cluster.start_worker()
    try:
        commands = plan(asyncio.run(current_mid(cluster)))
        asyncio.run(send_while(cluster, commands, lambda: churn(cluster)))
        settle_and_check_the_trail(cluster, commands)
    finally:
        cluster.stop()
    second = (cluster.root / "w1.log").read_text(errors="replace")
    assert re.search(r"audit: \d+ partitions assigned", second), "the second worker's exporter took partitions"
