"""Two workers with their venues: each symbol runs on one of them, and either answers for any symbol."""
from __future__ import annotations

import uuid
from decimal import Decimal as D

import pytest

from tests.live import Api, Cluster

pytestmark = pytest.mark.integration

SYMBOLS = ["BTC-USD", "ETH-USD", "SOL-USD"]


@pytest.fixture(scope="module")
def pair(kafka_bootstrap, tmp_path_factory):
    cluster = Cluster(kafka_bootstrap, tmp_path_factory.mktemp("vpair"), f"vpair-{uuid.uuid4().hex[:8]}", venue=True)
    first = cluster.start_worker("a")
    second = cluster.start_worker("b")
    first.wait_ready()
    second.wait_ready()
    yield cluster
    cluster.stop()


def test_every_symbol_is_served_by_its_owner_through_either_worker(pair):
    for symbol in SYMBOLS:
        answers = []
        for worker in pair.workers:
            api = Api(worker.url, pair.keys["alice"])
            book = api.wait_for(f"/api/v1/marketdata/{symbol}", lambda doc: len(doc["bids"]) == 10, timeout=30)
            assert D(book["bids"][0]["price"]) < D(book["mid"]) < D(book["asks"][0]["price"])
            answers.append(api.get(f"/api/v1/venue/{symbol}").headers["x-atlas-worker"])
        assert answers[0] == answers[1], f"{symbol}: the workers name different owners {answers}"


def test_an_order_fills_whichever_worker_takes_it(pair):
    for n, worker in enumerate(pair.workers):
        alice = Api(worker.url, pair.keys["alice"])
        mid = D(alice.get("/api/v1/marketdata/BTC-USD").body["mid"])
        placed = alice.order(client_order_id=f"via-{n}", quantity="0.0010", price=str((mid * D("1.01")).quantize(D("0.01"))))
        assert placed.status == 202
        order = alice.wait_for(f"/api/v1/orders/{placed.body['order_id']}", lambda o: o["status"] == "FILLED", timeout=30)
        assert D(order["filled_quantity"]) == D("0.0010")
