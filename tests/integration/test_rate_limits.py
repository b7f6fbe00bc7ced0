"""Rate limits at the gateway (issue 14, finding 3), on a worker with small buckets: 429 before Kafka, and capped streams."""
from __future__ import annotations

import asyncio
import json
import uuid

import aiohttp
import pytest

from tests.live import Api, Cluster

pytestmark = pytest.mark.integration

ORDERS_BURST = 5
STREAMS_PER_ACCOUNT = 2
STREAMS = 4


@pytest.fixture(scope="module")
def limited(kafka_bootstrap, tmp_path_factory):
    cluster = Cluster(kafka_bootstrap, tmp_path_factory.mktemp("limits"), f"rl-{uuid.uuid4().hex[:8]}", extra_env={
        "ATLAS_RATE_LIMITS": json.dumps({"orders": {"per_second": 0.2, "burst": ORDERS_BURST}}),
        "ATLAS_STREAM_MAX_PER_ACCOUNT": str(STREAMS_PER_ACCOUNT), "ATLAS_STREAM_MAX_SESSIONS": str(STREAMS)})
    cluster.start_worker()
    yield cluster
    cluster.stop()


def test_orders_past_the_accounts_bucket_are_429_and_never_reach_kafka(limited):
    api = Api(limited.workers[0].url, limited.keys["trader-01"])
    answers = [api.order(client_order_id=f"rl-{n}") for n in range(ORDERS_BURST + 3)]
    assert [a.status for a in answers] == [202] * ORDERS_BURST + [429] * 3
    assert [a.headers["ratelimit-remaining"] for a in answers[:ORDERS_BURST]] == \
        [str(n) for n in range(ORDERS_BURST - 1, -1, -1)]
    refused = answers[-1]
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.body["code"] == "RATE_LIMITED" and int(refused.headers["retry-after"]) >= 1
    assert refused.headers["ratelimit-limit"] == str(ORDERS_BURST)
    # The accepted orders reach the OMS; the refused ones never do.
    listed = api.wait_for("/api/v1/orders", lambda doc: len(doc["orders"]) == ORDERS_BURST)
    assert {o["client_order_id"] for o in listed["orders"]} == {f"rl-{n}" for n in range(ORDERS_BURST)}
    # Another account's bucket is its own; reads are another class.
    assert Api(limited.workers[0].url, limited.keys["trader-02"]).order().status == 202
    assert api.get("/api/v1/balances").status == 200


def test_an_account_and_a_worker_hold_a_bounded_number_of_streams(limited):
    url = limited.workers[0].url.replace("http://", "ws://") + "/api/v1/stream"

    async def subscribe(http, key):
        ws = await http.ws_connect(url)
        await ws.send_json({"op": "subscribe", "key": key})
        return ws, await ws.receive_json(timeout=15)

    async def run() -> None:
        async with aiohttp.ClientSession() as http:
            first = [await subscribe(http, limited.keys["trader-03"]) for _ in range(STREAMS_PER_ACCOUNT)]
            assert [hello["type"] for _, hello in first] == ["hello"] * STREAMS_PER_ACCOUNT
            ws, refused = await subscribe(http, limited.keys["trader-03"])
            assert refused["code"] == "TOO_MANY_STREAMS"
            await ws.receive(timeout=10)
            assert ws.close_code == 4429
            others = [await subscribe(http, limited.keys["trader-04"]) for _ in range(STREAMS - STREAMS_PER_ACCOUNT)]
            assert [hello["type"] for _, hello in others] == ["hello"] * (STREAMS - STREAMS_PER_ACCOUNT)
            # The worker is full: the next handshake is refused before the upgrade.
            with pytest.raises(aiohttp.WSServerHandshakeError) as handshake:
                await http.ws_connect(url)
            assert handshake.value.status == 503
            # A stream closed frees its place (once the server has seen it close).
            await first[0][0].close()
            hello = {}
            for _ in range(50):
                try:
                    again, hello = await subscribe(http, limited.keys["trader-03"])
                except aiohttp.WSServerHandshakeError:  # the worker has not seen the close yet: still full
                    await asyncio.sleep(0.2)
                    continue
                if hello["type"] == "hello":
                    break
                await again.close()
                await asyncio.sleep(0.2)
            assert hello.get("type") == "hello"
            for ws, _ in [*first[1:], *others, (again, None)]:
                await ws.close()

    asyncio.run(run())
