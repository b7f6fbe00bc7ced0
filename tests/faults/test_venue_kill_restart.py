"""SIGKILL the worker while its venue trades; after a restart the book is the same and no fill happened twice.

Traders send marketable orders (filled by the market maker) and resting orders (far from the
market) straight to Kafka; the worker is killed mid-stream and restarted. Afterwards every
marketable order is filled exactly once over (the distinct fills the venue sent add up to its
quantity, no more: a request the OMS sends again after its restart is not executed again), the
OMS agrees with the venue, balances equal deposits plus net fills, and every resting order is
still on the venue's book: cancelling it succeeds.
"""
from __future__ import annotations

import asyncio
import json
import uuid
from collections import defaultdict
from decimal import Decimal as D

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from atlas.core.values import order_id_for
from tests.live import Api, Cluster, current_mid, kill_and_restart, send_commands, settle, trading_plan

pytestmark = [pytest.mark.integration, pytest.mark.faults]

TRADERS = [f"trader-{n:02d}" for n in range(6)]
ROUNDS = 40
QTY = D("0.0010")


def plan(mid: D) -> list[dict]:
    """Per round and trader: a marketable buy or sell, and every fifth round a resting order."""
    return trading_plan(mid, TRADERS, ROUNDS, rest_every=5, tag="vk", quantity=QTY)


async def run_flow(cluster: Cluster, commands: list[dict], kill_after: float) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=cluster.bootstrap, acks="all", enable_idempotence=True)
    await producer.start()

    try:
        sending = send_commands(producer, cluster.topic("commands"), commands, per_pause=10)  # ~200 orders/s
        await asyncio.wait_for(asyncio.gather(sending, kill_and_restart(cluster.workers[0], kill_after)), timeout=240)
    finally:
        await producer.stop()


async def venue_fills(cluster: Cluster) -> dict[str, dict[str, D]]:
    """order id -> {fill: quantity} of every FILL the venue sent.

    A fill is its report id at its place in the venue's log: copies share both, but a request
    executed twice makes the same report ids at another place.
    """
    consumer = AIOKafkaConsumer(cluster.topic("venue.reports"), bootstrap_servers=cluster.bootstrap,
                                auto_offset_reset="earliest", group_id=None, isolation_level="read_committed")
    await consumer.start()
    fills: dict[str, dict[str, D]] = defaultdict(dict)
    try:
        while batch := await consumer.getmany(timeout_ms=2000):
            for records in batch.values():
                for record in records:
                    message = json.loads(record.value)
                    for report in message.get("reports", [message]):  # one report, or an input's several
                        if report["kind"] == "FILL":
                            fill = f"{report['report_id']}@{report['venue_offset']}"
                            fills[report["order_id"]][fill] = D(report["last_qty"])
    finally:
        await consumer.stop()
    return fills


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_kill_9_while_trading_keeps_the_book_and_fills_nothing_twice(kafka_bootstrap, tmp_path, guarantee):
    cluster = Cluster(kafka_bootstrap, tmp_path, f"vkill-{guarantee[:5]}-{uuid.uuid4().hex[:6]}", guarantee=guarantee,
                      venue=True)
    cluster.start_worker()
    try:
        commands = plan(asyncio.run(current_mid(cluster)))
        asyncio.run(run_flow(cluster, commands, kill_after=1.5))
        apis = {account: Api(cluster.workers[0].url, cluster.keys[account]) for account in TRADERS}
        for account, api in apis.items():
            settle(api, account, [c for c in commands if c["account_id"] == account])
        fills = asyncio.run(venue_fills(cluster))
        for cmd in commands:
            order_id = order_id_for(cmd["account_id"], cmd["client_order_id"])
            sent = sum(fills.get(order_id, {}).values(), D(0))
            expected = QTY if cmd["client_order_id"].startswith("mkt") else D(0)
            assert sent == expected, f"{order_id} ({cmd['client_order_id']}): the venue filled {sent} of {QTY}"
        for account, api in apis.items():
            check_balances(api, account)
            for cmd in commands:
                if cmd["account_id"] == account and cmd["client_order_id"].startswith("rest"):
                    cancel_resting(api, order_id_for(account, cmd["client_order_id"]))
    finally:
        cluster.stop()
    log = cluster.workers[0].log_path.read_text(errors="replace")
    assert "wiping local tables" in log, "the restart after SIGKILL must restore from the changelog"


def check_balances(api: Api, account: str) -> None:
    """Balances equal deposits plus the net of the OMS's fills; exactly the resting buys are reserved."""
    usd, btc, reserved = D("1000000"), D("10"), D(0)
    for order in api.all_orders().body["orders"]:
        executions = api.get(f"/api/v1/orders/{order['order_id']}/executions").body["executions"]
        assert len({e["exec_id"] for e in executions}) == len(executions), f"{order['order_id']}: repeated reports"
        for e in executions:
            if e["exec_type"] == "TRADE":
                qty, px = D(e["last_qty"]), D(e["last_px"])
                usd += -qty * px if order["side"] == "BUY" else qty * px
                btc += qty if order["side"] == "BUY" else -qty
        if order["status"] == "NEW":
            reserved += D(order["leaves_quantity"]) * D(order["price"])
    balances = api.get("/api/v1/balances").body["balances"]
    assert (D(balances["USD"]["total"]), D(balances["BTC"]["total"])) == (usd, btc), f"{account}: {balances}"
    assert D(balances["USD"]["reserved"]) == reserved, f"{account}: reserved {balances['USD']} != {reserved}"


def cancel_resting(api: Api, order_id: str) -> None:
    """The venue still has the order after the restart: its cancel completes."""
    assert api.request("DELETE", f"/api/v1/orders/{order_id}").status == 202
    done = api.wait_for(f"/api/v1/orders/{order_id}/executions",
                        lambda doc: doc["executions"][-1]["exec_type"] in ("CANCELED", "CANCEL_REJECTED"), timeout=30)
    last = done["executions"][-1]
    assert last["exec_type"] == "CANCELED", f"{order_id}: the venue lost the order in the restart: {last}"
