"""The read model live: a worker with its venue trades, the projector (`python -m atlas cloud project`, its own
process) follows it into moto's DynamoDB (its own process), and is killed with SIGKILL in the middle of it.

Afterwards every order, execution report and balance in DynamoDB equals what the worker's API
answers from its tables, and a second worker reading the read model (`ATLAS_READ_MODEL=dynamodb`)
answers the API's reads as the first does from its tables; a report sent again and an older one
sent late change nothing.
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

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from atlas.audit.broker import group_lag
from atlas.cloud import provision
from atlas.cloud.resources import TABLES
from atlas.infra.kafka.broker import free_port
from atlas.infra.s3 import MotoServer
from atlas.launch import WorkerProcess
from tests.helpers import ROOT
from tests.live import Api, Cluster, current_mid, send_commands, settle, trading_plan

pytestmark = pytest.mark.integration
TRADERS = [f"trader-{n:02d}" for n in range(4)]
WARM_UP = 12  # orders sent before the projector is waited for


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
    admin = AIOKafkaAdminClient(bootstrap_servers=cluster.bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=cluster.bootstrap)
    await admin.start()
    await consumer.start()
    try:
        lag = await group_lag(admin, consumer, (cluster.topic("executions"), f"{cluster.app_id}-oms-changelog"),
                              f"{cluster.app_id}-projector")
    finally:
        await consumer.stop()
        await admin.close()
    return sum(lag.values())


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
    db = moto.client("dynamodb")
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
                sent: list = []

                async def send(batch: list) -> None:
                    for command in batch:  # one at a time, 50 ms apart
                        await send_commands(producer, cluster.topic("commands"), [command], per_pause=1)
                        sent.append(command)

                async def kill_midway() -> None:
                    # Once a dozen more orders are sent after the first, while the rest still come.
                    while len(sent) < WARM_UP + 12:
                        await asyncio.sleep(0.01)
                    projector.kill()
                    cluster.killed_after = len(sent)
                    await asyncio.sleep(1.0)
                    projector.start()
                # The projector has written something before the kill: however slowly it started, it is
                # killed while it has records to write, not before it has any or after the burst.
                await send(commands[:WARM_UP])
                deadline = time.monotonic() + 60
                while not db.scan(TableName=f"{prefix}-executions", Select="COUNT", Limit=1)["Count"]:
                    assert time.monotonic() < deadline, "the projector wrote nothing"
                    await asyncio.sleep(0.1)
                await asyncio.gather(send(commands[WARM_UP:]), kill_midway())
            finally:
                await producer.stop()
        asyncio.run(burst())
        for account in TRADERS:
            settle(Api(cluster.workers[0].url, cluster.keys[account]), account,
                   [c for c in commands if c["account_id"] == account])
        wait_projected(cluster)
        # The tables' answers, while the first worker owns every account (after the gateway joins, it would forward
        # some requests to it).
        cluster.expected = {account: reads(cluster.workers[0].url, cluster.keys[account]) for account in TRADERS}
        gateway = WorkerProcess({**cluster.env("gw", free_port()), **moto.env(), "ATLAS_READ_MODEL": "dynamodb",
                                 "ATLAS_CLOUD_TABLE_PREFIX": prefix}, root / "gw.log", "gw")
        cluster.workers.append(gateway)
        gateway.start()
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
    assert WARM_UP < cluster.killed_after < len(trading_plan(0, TRADERS, 15, rest_every=5, tag="rm"))  # in the burst
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
    kept = items(db, f"{prefix}-executions", "order_id", filled["order_id"])
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
    assert items(db, f"{prefix}-executions", "order_id", filled["order_id"]) == kept


def pages(client: Api, query: str) -> list[dict]:
    """Every order, a page of 7 at a time, following next_cursor."""
    found, cursor = [], None
    while True:
        answer = client.get(f"/api/v1/orders?limit=7{query}" + (f"&cursor={cursor}" if cursor else ""))
        assert answer.status == 200, answer.body
        found += answer.body["orders"]
        cursor = answer.body["next_cursor"]
        if cursor is None:
            return found


def reads(url: str, key: str) -> dict:
    """The API's read answers for one account: order lists (every filter, paged), a few orders and their reports,
    a lookup by client order id, the balances."""
    client, found = Api(url, key), {}
    for query in ("", "&status=open", "&status=closed", "&symbol=BTC-USD", "&symbol=ETH-USD"):
        found[f"orders{query}"] = pages(client, query)
    for order in found["orders"][:3]:
        path = f"/api/v1/orders/{order['order_id']}"
        for asked in (path, f"{path}/executions?limit=2", f"{path}/executions?limit=2&cursor=2"):
            found[asked] = client.get(asked).body
    asked = f"/api/v1/orders?client_order_id={found['orders'][0]['client_order_id']}"
    found[asked] = client.get(asked).body
    found["/api/v1/balances"] = client.get("/api/v1/balances").body
    return found


def test_a_gateway_reading_dynamodb_answers_the_reads_as_the_tables_do(traded):
    cluster, _, _, _ = traded
    for account in TRADERS:
        expected = cluster.expected[account]
        assert len(expected["orders"]) > 7  # more than one page
        answered = reads(cluster.workers[1].url, cluster.keys[account])
        assert answered.keys() == expected.keys()
        for asked, answer in expected.items():
            assert answered[asked] == answer, asked


def test_the_gateway_reads_dynamodb_itself(traded):
    """An item changed in DynamoDB behind the projector's back shows at the gateway: it reads there, not the tables."""
    cluster, db, prefix, _ = traded
    there = Api(cluster.workers[1].url, cluster.keys[TRADERS[0]])
    order = pages(there, "")[0]
    key = {"account_id": {"S": TRADERS[0]}, "order_id": {"S": order["order_id"]}}
    db.update_item(TableName=f"{prefix}-orders", Key=key, UpdateExpression="SET reject_reason = :r",
                   ExpressionAttributeValues={":r": {"S": "set in DynamoDB by the test"}})
    try:
        assert there.get(f"/api/v1/orders/{order['order_id']}").body["reject_reason"] == "set in DynamoDB by the test"
    finally:
        db.update_item(TableName=f"{prefix}-orders", Key=key, UpdateExpression="SET reject_reason = :r",
                       ExpressionAttributeValues={":r": {"NULL": True} if order["reject_reason"] is None
                                                  else {"S": order["reject_reason"]}})


def test_the_dynamodb_gateway_refuses_what_it_cannot_answer_and_reports_the_projection(traded):
    cluster, _, _, _ = traded
    there = Api(cluster.workers[1].url, cluster.keys[TRADERS[0]])
    assert there.get("/api/v1/orders/Onope").status == 404
    assert there.get("/api/v1/orders/Onope/executions").status == 404
    assert there.get("/api/v1/orders/" + "O" * 2000).status == 404  # no id is that long: refused before DynamoDB
    bad = there.get("/api/v1/orders?cursor=bm90IGEga2V5")
    assert bad.status == 400 and "handed out" in bad.body["detail"], bad.body  # the read model's own refusal
    other = Api(cluster.workers[1].url, cluster.keys[TRADERS[1]])
    mine = pages(there, "")[0]["order_id"]
    assert other.get(f"/api/v1/orders/{mine}").status == 404  # another account's order is not found
    deadline = time.monotonic() + 30
    while (ready := Api(cluster.workers[1].url).get("/readyz").body).get("read_model", {}).get("lag") is None \
            and time.monotonic() < deadline:
        time.sleep(0.5)
    assert ready["read_model"]["mode"] == "dynamodb" and ready["read_model"]["lag"] == 0, ready
    metrics = Api(cluster.workers[1].url, cluster.keys["admin"]).get("/metrics")
    assert metrics.status == 200 and f'group="{cluster.app_id}-projector"' in metrics.body
