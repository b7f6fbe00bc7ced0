"""The broker goes away under a running worker: orders get a 503 with Retry-After, and a retry after it is back makes one order."""
from __future__ import annotations

import time
import uuid

import pytest

from atlas.infra.kafka.broker import LocalBroker, free_port
from tests.live import Api, Cluster

pytestmark = [pytest.mark.integration, pytest.mark.faults]


@pytest.fixture
def own_broker(tmp_path):
    """A broker of this test's own, since the test stops it."""
    broker = LocalBroker(tmp_path / "kafka", port=free_port())
    broker.start()
    yield broker
    broker.stop()


def test_order_while_broker_is_down_gets_503_and_its_retry_makes_one_order(own_broker, tmp_path):
    cluster = Cluster(own_broker.bootstrap, tmp_path, f"outage-{uuid.uuid4().hex[:6]}")
    worker = cluster.start_worker()
    alice = Api(worker.url, cluster.keys["alice"])
    try:
        assert alice.order().status == 202
        body = {"client_order_id": "during-outage", "symbol": "BTC-USD", "side": "BUY", "type": "LIMIT",
                "quantity": "0.01", "price": "64000.00", "time_in_force": "GTC"}

        own_broker.stop()
        refused = alice.post("/api/v1/orders", body)
        assert refused.status == 503, refused
        assert refused.headers.get("retry-after") == "2"
        assert refused.headers.get("content-type", "").startswith("application/problem+json")
        assert refused.body["code"] == "BROKER_UNAVAILABLE" and refused.body["status"] == 503
        assert alice.get("/readyz").status == 503

        own_broker.start()
        deadline = time.monotonic() + 60
        while (retried := alice.post("/api/v1/orders", body)).status == 503 and time.monotonic() < deadline:
            time.sleep(1)
        assert retried.status in (200, 202), retried
        found = alice.wait_for("/api/v1/orders?client_order_id=during-outage&status=all",
                               lambda doc: len(doc["orders"]) == 1 and doc["orders"][0]["status"] == "PENDING_NEW",
                               timeout=60)
        order_id = found["orders"][0]["order_id"]
        executions = alice.wait_for(f"/api/v1/orders/{order_id}/executions",
                                    lambda doc: len(doc["executions"]) >= 1)["executions"]
        assert [e["exec_type"] for e in executions] == ["PENDING_NEW"]
    finally:
        cluster.stop()
