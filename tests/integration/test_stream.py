"""The live stream (`/api/v1/stream`, WebSocket): reports with their resume offsets, balances, market data."""
from __future__ import annotations

import asyncio
import time
import uuid
from decimal import Decimal as D

import aiohttp
import pytest

from tests.live import Api, Cluster

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def venue_cluster(kafka_bootstrap, tmp_path_factory):
    cluster = Cluster(kafka_bootstrap, tmp_path_factory.mktemp("stream"), f"st-{uuid.uuid4().hex[:8]}", venue=True)
    cluster.start_worker()
    asyncio.run(_stream_ready(cluster))
    yield cluster
    assert asyncio.run(_stop_with_a_stream_open(cluster)) == 1001


async def _stop_with_a_stream_open(cluster: Cluster) -> int:
    """Stop the worker (SIGTERM) while a client holds a subscribed stream: the close code the client gets."""
    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url(cluster)) as ws:
        await ws.send_json({"op": "subscribe", "key": cluster.keys["trader-39"], "symbols": ["BTC-USD"]})
        assert (await ws.receive_json(timeout=30))["type"] == "hello"
        stopping = asyncio.get_running_loop().run_in_executor(None, cluster.stop)
        while (await ws.receive(timeout=30)).type not in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
            pass  # market data until the worker says it is going away
        await stopping
        return ws.close_code


def ws_url(cluster: Cluster) -> str:
    return cluster.workers[0].url.replace("http://", "ws://") + "/api/v1/stream"


async def _stream_ready(cluster: Cluster, timeout: float = 60.0) -> None:
    """Subscribe until the worker says hello: the first subscription waits for the executions feed to reach
    the topic's end, and on a loaded machine it may answer UNAVAILABLE (1013, "try again") first."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while True:
            async with http.ws_connect(ws_url(cluster)) as ws:
                await ws.send_json({"op": "subscribe", "key": cluster.keys["trader-39"], "symbols": ["BTC-USD"]})
                first = await ws.receive_json(timeout=30)
            if first["type"] == "hello":
                return
            assert first.get("code") == "UNAVAILABLE" and time.monotonic() < deadline, first


async def collect(ws, until, timeout: float = 20.0) -> list[dict]:
    """Messages from the socket until `until(messages)` holds."""
    seen: list[dict] = []
    deadline = time.monotonic() + timeout
    while not until(seen):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"condition not met; got {[m.get('type') for m in seen][-20:]}")
        seen.append(await ws.receive_json(timeout=remaining))
    return seen


def reports(messages: list[dict], order_id: str | None = None) -> list[dict]:
    return [m for m in messages if m["type"] == "execution" and (order_id is None or m["report"]["order_id"] == order_id)]


async def place(api: Api, **terms) -> str:
    response = await asyncio.to_thread(api.order, **terms)
    assert response.status == 202, response
    return response.body["order_id"]


def resting_price(api: Api, symbol: str, steps: int = 0) -> str:
    """A buy price 5% under the mid (inside the collar, far from a fill), a cent lower per step."""
    book = api.wait_for(f"/api/v1/marketdata/{symbol}", lambda b: b.get("mid") is not None)
    return str((D(book["mid"]) * D("0.95")).quantize(D("0.01")) - D("0.01") * steps)


def test_stream_pushes_reports_balances_and_market_data(venue_cluster):
    key = venue_cluster.keys["trader-00"]
    api = Api(venue_cluster.workers[0].url, key)

    async def run() -> None:
        async with aiohttp.ClientSession() as http, http.ws_connect(ws_url(venue_cluster)) as ws:
            await ws.send_json({"op": "subscribe", "key": key, "symbols": ["BTC-USD"]})
            hello = await ws.receive_json(timeout=10)
            assert hello["type"] == "hello" and hello["account_id"] == "trader-00" and isinstance(hello["since"], int)
            price = resting_price(api, "BTC-USD")
            order_id = await place(api, price=price)
            got = await collect(ws, lambda ms: len(reports(ms, order_id)) >= 2 and any(
                m["type"] == "balances" and D(m["balances"]["USD"]["reserved"]) == D("0.01") * D(price) for m in ms)
                and {"book", "mid"} <= {m["type"] for m in ms})
            mine = reports(got, order_id)
            assert [r["report"]["exec_type"] for r in mine[:2]] == ["PENDING_NEW", "NEW"]
            assert mine[0]["offset"] < mine[1]["offset"]
            assert all(m["symbol"] == "BTC-USD" for m in got if m["type"] in ("book", "mid", "trade"))

    asyncio.run(run())


def test_stream_resumed_from_the_last_offset_loses_and_repeats_no_report(venue_cluster):
    key = venue_cluster.keys["trader-01"]
    api = Api(venue_cluster.workers[0].url, key)

    async def run() -> None:
        async with aiohttp.ClientSession() as http:
            async with http.ws_connect(ws_url(venue_cluster)) as ws:
                await ws.send_json({"op": "subscribe", "key": key, "symbols": ["ETH-USD"]})
                await ws.receive_json(timeout=10)
                first = await place(api, symbol="ETH-USD", price=resting_price(api, "ETH-USD"))
                got = await collect(ws, lambda ms: len(reports(ms, first)) >= 2)
                last = max(m["offset"] for m in reports(got))
            # Disconnected: two more orders, and the first one cancelled.
            missed = [await place(api, symbol="ETH-USD", price=resting_price(api, "ETH-USD", n)) for n in (1, 2)]
            assert (await asyncio.to_thread(api.request, "DELETE", f"/api/v1/orders/{first}")).status == 202
            for order_id in missed:
                await asyncio.to_thread(api.wait_for, f"/api/v1/orders/{order_id}", lambda o: o["status"] == "NEW")
            await asyncio.to_thread(api.wait_for, f"/api/v1/orders/{first}", lambda o: o["status"] == "CANCELED")
            async with http.ws_connect(ws_url(venue_cluster)) as ws:
                await ws.send_json({"op": "subscribe", "key": key, "since": last + 1, "symbols": ["ETH-USD"]})
                hello = await ws.receive_json(timeout=10)
                assert hello["since"] == last + 1
                again = await collect(ws, lambda ms: all(len(reports(ms, o)) >= 2 for o in missed)
                                      and any(r["report"]["exec_type"] == "CANCELED" for r in reports(ms, first)))
            resumed = reports(again)
            offsets = [m["offset"] for m in resumed]
            assert offsets == sorted(set(offsets)) and offsets[0] > last
            assert all(m["report"]["account_id"] == "trader-01" for m in resumed)
            every = reports(got) + resumed
            assert len({m["report"]["exec_id"] for m in every}) == len(every), "a report came twice"
            streamed = {m["report"]["exec_id"] for m in every}
            for order_id in [first, *missed]:
                stored = await asyncio.to_thread(api.get, f"/api/v1/orders/{order_id}/executions")
                assert {e["exec_id"] for e in stored.body["executions"]} <= streamed, f"{order_id}: a report was lost"

    asyncio.run(run())


@pytest.mark.parametrize("first, close_code, error", [
    ({"op": "subscribe", "key": "not-a-key"}, 4401, "UNAUTHENTICATED"),
    ({"op": "hello"}, 4400, "BAD_SUBSCRIPTION"),
    ({"op": "subscribe", "key": "alice-demo-key", "since": -3}, 4400, "BAD_SUBSCRIPTION"),
    ({"op": "subscribe", "key": "alice-demo-key", "symbols": ["DOGE-USD"]}, 4400, "UNKNOWN_SYMBOL"),
    ({"op": "subscribe", "key": "alice-demo-key", "symbols": [[1]]}, 4400, "UNKNOWN_SYMBOL"),  # was a 500
])
def test_stream_refuses_a_bad_subscription_with_a_reason(venue_cluster, first, close_code, error):
    async def run() -> None:
        async with aiohttp.ClientSession() as http, http.ws_connect(ws_url(venue_cluster)) as ws:
            await ws.send_json(first)
            message = await ws.receive_json(timeout=10)
            assert message == {"type": "error", "code": error, "detail": message["detail"]} and message["detail"]
            closing = await ws.receive(timeout=10)
            assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            assert ws.close_code == close_code

    asyncio.run(run())


def test_many_subscribers_of_one_worker_each_get_their_own_reports_and_none_of_others(venue_cluster):
    """Every subscriber reads from the worker's one executions feed; two of them are the same account."""
    accounts = ["trader-02", "trader-03", "trader-04", "trader-05", "trader-02"]

    async def run() -> None:
        async with aiohttp.ClientSession() as http:
            sockets = [await http.ws_connect(ws_url(venue_cluster)) for _ in accounts]
            try:
                for ws, account in zip(sockets, accounts):
                    await ws.send_json({"op": "subscribe", "key": venue_cluster.keys[account], "symbols": ["SOL-USD"]})
                    assert (await ws.receive_json(timeout=10))["account_id"] == account
                placed = {}
                for account in dict.fromkeys(accounts):
                    api = Api(venue_cluster.workers[0].url, venue_cluster.keys[account])
                    placed[account] = await place(api, symbol="SOL-USD", price=resting_price(api, "SOL-USD"))
                for ws, account in zip(sockets, accounts):
                    got = await collect(ws, lambda ms, a=account: len(reports(ms, placed[a])) >= 2)
                    assert {m["report"]["account_id"] for m in reports(got)} == {account}
                    assert [m["report"]["exec_type"] for m in reports(got, placed[account])][:2] == ["PENDING_NEW", "NEW"]
            finally:
                for ws in sockets:
                    await ws.close()

    asyncio.run(run())
