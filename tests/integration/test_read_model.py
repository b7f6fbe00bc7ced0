"""The read model live: a worker with its venue trades, the projector (`python -m atlas cloud project`, its own
process) follows it into moto's DynamoDB (its own process), and is killed with SIGKILL in the middle of it.

Afterwards every order, execution report and balance in DynamoDB equals what the worker's API
answers from its tables; a report sent again and an older one sent late change nothing.
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid

import boto3
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from atlas.cloud import provision
from atlas.cloud.resources import TABLES
from atlas.infra.s3 import MotoServer
from tests.helpers import ROOT
from tests.live import Api, Cluster, current_mid, send_commands, settle, trading_plan

pytestmark = pytest.mark.integration
TRADERS = [f"trader-{n:02d}" for n in range(4)]


class Projector:
    """`python -m atlas cloud project` for the cluster, writing to moto."""

    def __init__(self, cluster: Cluster, moto: MotoServer, table_prefix: str):
        self.env = {**os.environ, **cluster.env("projector", 1), **moto.env(), "ATLAS_CLOUD_TABLE_PREFIX": table_prefix}
        self.log_path = cluster.root / "projector.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "atlas", "cloud", "project"], env=self.env, cwd=ROOT,
                                         stdout=log, stderr=subprocess.STDOUT)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)


async def _lag(cluster: Cluster) -> int:
    """Records of the executions topic and the OMS changelog the projector's group has not committed yet."""
    topics = (cluster.topic("executions"), f"{cluster.app_id}-oms-changelog")
    admin = AIOKafkaAdminClient(bootstrap_servers=cluster.bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=cluster.bootstrap)
    await admin.start()
    await consumer.start()
    try:
        tps = [TopicPartition(d["topic"], p["partition"]) for d in await admin.describe_topics(list(topics))
               for p in d["partitions"]]
        ends = await consumer.end_offsets(tps)
        committed = await admin.list_consumer_group_offsets(f"{cluster.app_id}-projector")
    finally:
        await consumer.stop()
        await admin.close()
    return sum(end - (committed[tp].offset if tp in committed else 0) for tp, end in ends.items())


def wait_projected(cluster: Cluster, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while (behind := asyncio.run(_lag(cluster))) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert behind == 0, f"the projector is {behind} records behind"


def items(db, table: str, key: str, value: str, index: str | None = None) -> list[dict]:
    found, start = [], None
    while True:
        args = {"TableName": table, "KeyConditionExpression": f"{key} = :v",
                "ExpressionAttributeValues": {":v": {"S": value}}, **({"IndexName": index} if index else {}),
                **({"ConsistentRead": True} if index is None else {}), **({"ExclusiveStartKey": start} if start else {})}
        page = db.query(**args)
        found += [{k: None if "NULL" in v else next(iter(v.values())) for k, v in item.items()} for item in page["Items"]]
        start = page.get("LastEvaluatedKey")
        if not start:
            return found


@pytest.fixture(scope="module")
def traded(kafka_bootstrap, tmp_path_factory):
    """A burst of orders, the projector SIGKILLed in its middle and started again; everything settled and projected."""
    root = tmp_path_factory.mktemp("read-model")
    moto = MotoServer(root / "moto.log").start()
    db = boto3.client("dynamodb", endpoint_url=moto.url, aws_access_key_id="test", aws_secret_access_key="test",
                      region_name="us-east-1")
    prefix = f"rm{uuid.uuid4().hex[:6]}"
    for spec in TABLES:
        provision.table(db, spec, prefix, lambda _: None)
    cluster = Cluster(kafka_bootstrap, root, f"rmod-{uuid.uuid4().hex[:6]}", venue=True)
    cluster.start_worker()
    projector = Projector(cluster, moto, prefix)
    projector.start()
    try:
        commands = trading_plan(asyncio.run(current_mid(cluster)), TRADERS, 15, rest_every=5, tag="rm")

        async def burst() -> None:
            producer = AIOKafkaProducer(bootstrap_servers=cluster.bootstrap, acks="all", enable_idempotence=True)
            await producer.start()
            try:
                async def kill_midway() -> None:
                    await asyncio.sleep(1.5)
                    projector.kill()
                    await asyncio.sleep(1.0)
                    projector.start()
                await asyncio.gather(send_commands(producer, cluster.topic("commands"), commands, per_pause=2),
                                     kill_midway())
            finally:
                await producer.stop()
        asyncio.run(burst())
        for account in TRADERS:
            settle(Api(cluster.workers[0].url, cluster.keys[account]), account,
                   [c for c in commands if c["account_id"] == account])
        wait_projected(cluster)
        yield cluster, db, prefix, projector
    finally:
        projector.stop()
        cluster.stop()
        moto.stop()


def api(cluster: Cluster, account: str) -> Api:
    return Api(cluster.workers[0].url, cluster.keys[account])


def test_orders_in_dynamodb_equal_the_tables_after_a_kill_9(traded):
    cluster, db, prefix, projector = traded
    assert projector.log_path.read_text().count("into the tables") == 2  # started, killed, started again
    for account in TRADERS:
        listed = {o["order_id"]: o for o in api(cluster, account).all_orders().body["orders"]}
        stored = {i["order_id"]: i for i in items(db, f"{prefix}-orders", "account_id", account)}
        assert set(stored) == set(listed) and listed
        for order_id, order in listed.items():
            item = stored[order_id]
            assert (item["status"], item["filled_quantity"], item["leaves_quantity"], item["avg_price"],
                    item["quantity"], item["price"], int(item["version"]), int(item["created_at"])) == \
                (order["status"], order["filled_quantity"], order["leaves_quantity"], order["avg_price"],
                 order["quantity"], order["price"], order["seq"], order["created_at"]), order_id
        open_ids = {i["order_id"] for i in items(db, f"{prefix}-orders", "open_account_id", account, "open-orders")}
        assert open_ids == {o for o, order in listed.items() if order["status"] == "NEW"}


def test_execution_reports_and_balances_equal_the_tables(traded):
    cluster, db, prefix, _ = traded
    for account in TRADERS:
        client = api(cluster, account)
        for order in client.all_orders().body["orders"][:5]:
            reports = client.get(f"/api/v1/orders/{order['order_id']}/executions").body["executions"]
            stored = items(db, f"{prefix}-executions", "order_id", order["order_id"])
            assert [(int(i["seq"]), i["exec_id"], i["exec_type"], i["status"]) for i in stored] == \
                [(r["seq"], r["exec_id"], r["exec_type"], r["status"]) for r in reports]
        balances = client.get("/api/v1/balances").body["balances"]
        stored = {i["asset"]: {k: i[k] for k in ("available", "reserved", "total")}
                  for i in items(db, f"{prefix}-balances", "account_id", account)}
        assert stored == balances


def test_a_report_sent_again_and_an_older_one_sent_late_change_nothing(traded):
    cluster, db, prefix, _ = traded
    account = TRADERS[0]
    filled = next(o for o in api(cluster, account).all_orders().body["orders"] if o["status"] == "FILLED")
    reports = api(cluster, account).get(f"/api/v1/orders/{filled['order_id']}/executions").body["executions"]
    before = items(db, f"{prefix}-orders", "account_id", account)
    late = dict(reports[1], exec_id=reports[1]["exec_id"] + "-late")  # an older version of the order, a new id

    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=cluster.bootstrap, acks="all")
        await producer.start()
        try:
            for doc in (reports[-1], late):
                await producer.send_and_wait(cluster.topic("executions"), json.dumps(doc).encode(),
                                             key=account.encode())
        finally:
            await producer.stop()
    asyncio.run(send())
    wait_projected(cluster)
    assert items(db, f"{prefix}-orders", "account_id", account) == before
