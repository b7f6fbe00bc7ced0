"""SIGKILL the worker in the middle of a stream of orders and fills; after a restart nothing is lost or doubled.

The test plays the venue: it answers every new order on `venue.orders` with an ack and
fills (the whole quantity for even orders, half for odd ones), and records every fill it
sends. Afterwards each order must exist, carry exactly the fills sent for it, and every
balance must equal deposits plus net fills, with exactly the open orders' needs reserved.
"""
from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from decimal import Decimal as D

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from atlas.core.values import order_id_for
from tests.live import Api, Cluster, kill_and_restart, send_commands

pytestmark = [pytest.mark.integration, pytest.mark.faults]

ACCOUNTS = [f"trader-{n:02d}" for n in range(8)]
ORDERS_PER_ACCOUNT = 60
PRICE = {"BUY": D("64000.00"), "SELL": D("66000.00")}
QTY = D("0.0100")


def plan() -> list[dict]:
    """The orders to send: alternating buys and sells per account, interleaved across accounts."""
    commands = []
    for i in range(ORDERS_PER_ACCOUNT):
        for account in ACCOUNTS:
            side = "BUY" if i % 2 == 0 else "SELL"
            commands.append({"command": "SubmitOrder", "command_id": f"kill-{account}-{i}", "account_id": account,
                             "client_order_id": f"kill-{i}", "symbol": "BTC-USD", "side": side, "type": "LIMIT",
                             "quantity": str(QTY), "price": str(PRICE[side]), "time_in_force": "GTC"})
    return commands


async def run_flow(cluster: Cluster, disruption: Callable[[], Awaitable[None]]) -> dict[str, list[tuple[D, D]]]:
    """Send the orders at a steady rate, play the venue, and meanwhile await `disruption()` (a kill and a
    restart of the worker); returns the fills sent per order."""
    fills: dict[str, list[tuple[D, D]]] = defaultdict(list)
    answered: set[str] = set()
    deliveries: list[asyncio.Future] = []  # of every venue report sent: a lost one fails the run, not the OMS
    commands = plan()
    producer = AIOKafkaProducer(bootstrap_servers=cluster.bootstrap, acks="all", enable_idempotence=True)
    consumer = AIOKafkaConsumer(cluster.topic("venue.orders"), bootstrap_servers=cluster.bootstrap,
                                auto_offset_reset="earliest", group_id=None, isolation_level="read_committed")
    await producer.start()
    await consumer.start()

    async def venue() -> None:
        idle_since = time.monotonic()
        while len(answered) < len(commands) and time.monotonic() - idle_since < 90:
            batch = await consumer.getmany(timeout_ms=200)
            if batch:
                idle_since = time.monotonic()
            for records in batch.values():
                for record in records:
                    request = json.loads(record.value)
                    if request["request"] != "new" or request["order_id"] in answered:
                        continue  # a request sent again after the restart: answered already
                    answered.add(request["order_id"])
                    await answer(request)

    async def answer(request: dict) -> None:
        order_id, account = request["order_id"], request["account_id"]
        index = int(request["order_id"] in odd_orders)
        parts = [QTY] if not index else [QTY / 2]
        reports = [{"report_id": f"{order_id}-ack", "kind": "ACCEPTED"}]
        for k, qty in enumerate(parts):
            px = D(request["price"])
            fills[order_id].append((qty, px))
            reports.append({"report_id": f"{order_id}-fill-{k}", "kind": "FILL", "last_qty": str(qty), "last_px": str(px)})
        for report in reports:
            body = {"order_id": order_id, "account_id": account, "ts": int(time.time() * 1000), **report}
            deliveries.append(await producer.send(cluster.topic("venue.reports"), json.dumps(body).encode(),
                                                  key=account.encode()))

    odd_orders = {order_id_for(c["account_id"], c["client_order_id"]) for c in commands
                  if int(c["client_order_id"].split("-")[1]) % 4 in (1, 2)}

    try:
        sending = send_commands(producer, cluster.topic("commands"), commands, per_pause=20)  # ~400 orders/s
        await asyncio.wait_for(asyncio.gather(sending, venue(), disruption()), timeout=300)
        await producer.flush()
        await asyncio.gather(*deliveries)
    finally:
        await consumer.stop()
        await producer.stop()
    return fills


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_kill_9_mid_stream_loses_nothing_and_doubles_nothing(kafka_bootstrap, tmp_path, guarantee):
    cluster = Cluster(kafka_bootstrap, tmp_path, f"kill-{guarantee[:5]}-{uuid.uuid4().hex[:6]}", guarantee=guarantee)
    cluster.start_worker()
    try:
        fills = asyncio.run(run_flow(cluster, lambda: kill_and_restart(cluster.workers[0], 2.0)))
        check_flow(cluster, fills)
    finally:
        cluster.stop()
    log = cluster.workers[0].log_path.read_text(errors="replace")
    assert "wiping local tables" in log, "the restart after SIGKILL must restore from the changelog"


def check_flow(cluster: Cluster, fills: dict[str, list[tuple[D, D]]]) -> None:
    """Every order reached the venue, and every account holds exactly the fills sent (see `check_account`)."""
    missing = [(c["account_id"], c["client_order_id"]) for c in plan()
               if order_id_for(c["account_id"], c["client_order_id"]) not in fills]
    assert not missing, f"{len(missing)} orders never reached the venue: " + "; ".join(
        describe(cluster, account, client_order_id) for account, client_order_id in missing[:4])
    for account in ACCOUNTS:
        check_account(Api(cluster.workers[0].url, cluster.keys[account]), account, fills)


def describe(cluster: Cluster, account: str, client_order_id: str) -> str:
    """What the OMS knows of an order, for a failure message."""
    api = Api(cluster.workers[0].url, cluster.keys[account])
    order_id = order_id_for(account, client_order_id)
    order = api.get(f"/api/v1/orders/{order_id}").body
    executions = api.get(f"/api/v1/orders/{order_id}/executions").body
    return f"{account}/{client_order_id}: {order} {executions}"


def check_account(api: Api, account: str, fills: dict[str, list[tuple[D, D]]]) -> None:
    """Every order there with exactly its fills; balances equal deposits plus net fills."""
    expected_fills = {f"kill-{i}": fills[order_id_for(account, f"kill-{i}")] for i in range(ORDERS_PER_ACCOUNT)}

    def unsettled(doc: dict) -> list[str]:
        by_id = {o["client_order_id"]: o for o in doc["orders"]}
        return [f"{cid}: {by_id[cid]['status'] if cid in by_id else 'missing'} "
                f"filled {by_id[cid]['filled_quantity'] if cid in by_id else '-'} of {sum(q for q, _ in f)} sent"
                for cid, f in expected_fills.items()
                if cid not in by_id or D(by_id[cid]["filled_quantity"]) != sum(q for q, _ in f)]

    deadline = time.monotonic() + 90
    while (behind := unsettled(doc := api.all_orders().body)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not behind, f"{account}: {len(behind)} orders differ from the fills sent: {behind[:5]}"
    orders = doc["orders"]
    by_id = {o["client_order_id"]: o for o in orders}
    usd, btc = D("1000000"), D("10")
    reserved_usd = reserved_btc = D(0)
    for cid, order_fills in expected_fills.items():
        order = by_id[cid]
        executions = api.get(f"/api/v1/orders/{order['order_id']}/executions").body["executions"]
        trades = [e for e in executions if e["exec_type"] == "TRADE"]
        assert len(trades) == len(order_fills), f"{account}/{cid}: {len(trades)} fills applied, {len(order_fills)} sent"
        assert len({e["exec_id"] for e in executions}) == len(executions)
        assert [e["seq"] for e in executions] == list(range(1, len(executions) + 1))
        for qty, px in order_fills:
            usd += -qty * px if order["side"] == "BUY" else qty * px
            btc += qty if order["side"] == "BUY" else -qty
        leaves = D(order["leaves_quantity"])
        if order["side"] == "BUY":
            reserved_usd += leaves * D(order["price"])
        else:
            reserved_btc += leaves
        assert order["status"] == ("FILLED" if leaves == 0 else "PARTIALLY_FILLED")
    balances = api.get("/api/v1/balances").body["balances"]
    assert D(balances["USD"]["total"]) == usd and D(balances["BTC"]["total"]) == btc
    assert D(balances["USD"]["reserved"]) == reserved_usd and D(balances["BTC"]["reserved"]) == reserved_btc
