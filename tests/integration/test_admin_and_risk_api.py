"""Limits, kill switches, halts and reference prices: admin actions travel through Kafka and are enforced."""
from __future__ import annotations

import json
import time
import uuid

import pytest
from openapi_spec_validator import validate

pytestmark = pytest.mark.integration


def placed_status(api, **order) -> dict:
    """Place an order and wait for the OMS's verdict (PENDING_NEW or REJECTED)."""
    response = api.order(**order)
    assert response.status == 202, response
    return api.wait_for(f"/api/v1/orders/{response.body['order_id']}",
                        lambda o: o["status"] in ("PENDING_NEW", "REJECTED"))


def test_limits_are_readable_by_the_account(trader):
    doc = trader.get("/api/v1/limits").body
    assert doc["account_id"] == trader.account_id
    assert doc["limits"]["max_order_quantity"]["BTC-USD"] == "10"
    assert doc["kill_switch"] == {"engaged": False, "reason": ""}


def test_admin_changes_limits_live_and_they_are_enforced(trader, admin):
    limits = trader.get("/api/v1/limits").body["limits"]
    new = {**limits, "max_order_notional": "1000"}
    response = admin.request("PUT", f"/api/v1/admin/accounts/{trader.account_id}/limits", new)
    assert response.status == 202
    trader.wait_for("/api/v1/limits", lambda d: d["limits"]["max_order_notional"] == "1000")
    order = placed_status(trader, quantity="0.1", price="64000.00")
    assert order["status"] == "REJECTED" and order["reject_reason"].startswith("MAX_ORDER_NOTIONAL")
    assert placed_status(trader, quantity="0.01", price="64000.00")["status"] == "PENDING_NEW"


def test_limits_for_unknown_account_is_404_and_bad_limits_422(admin):
    assert admin.request("PUT", "/api/v1/admin/accounts/nobody/limits", {"max_order_notional": "1"}).status == 404
    response = admin.request("PUT", "/api/v1/admin/accounts/alice/limits", {"max_order_notional": "lots"})
    assert response.status == 422 and response.body["code"] == "VALIDATION_ERROR"


def test_order_rate_throttle_rejects_the_excess(trader, admin, kafka, cluster):
    limits = {**trader.get("/api/v1/limits").body["limits"], "max_orders_per_second": 2}
    admin.request("PUT", f"/api/v1/admin/accounts/{trader.account_id}/limits", limits)
    trader.wait_for("/api/v1/limits", lambda d: d["limits"]["max_orders_per_second"] == 2)
    commands = [{"command": "SubmitOrder", "command_id": f"burst-{i}-{uuid.uuid4().hex[:6]}",
                 "account_id": trader.account_id, "client_order_id": f"burst-{i}", "symbol": "SOL-USD",
                 "side": "BUY", "type": "LIMIT", "quantity": "1.00", "price": "150.000"} for i in range(6)]
    kafka.produce(cluster.topic("commands"), [(trader.account_id.encode(), json.dumps(c).encode()) for c in commands])
    orders = trader.wait_for("/api/v1/orders?symbol=SOL-USD", lambda d: len(d["orders"]) >= 6)["orders"]
    statuses = [o["status"] for o in orders if o["client_order_id"].startswith("burst-")]
    reasons = [o["reject_reason"] for o in orders if o["status"] == "REJECTED"]
    assert statuses.count("PENDING_NEW") >= 2 and statuses.count("REJECTED") >= 1
    assert all(r.startswith("RATE_LIMIT") for r in reasons)


def test_account_kill_switch_cancels_open_orders_and_blocks_new_ones(trader, admin, kafka, cluster):
    resting = placed_status(trader, quantity="0.01", price="63000.00")
    assert resting["status"] == "PENDING_NEW"
    response = admin.post("/api/v1/admin/kill-switch", {"engaged": True, "account_id": trader.account_id, "reason": "test"})
    # The switch travels on atlas.admin, beside the account's orders: the answer waits until it is applied,
    # so an order sent after it is refused (no wait here).
    assert response.status == 202 and response.body["applied"] is True, response
    blocked = placed_status(trader)
    trader.wait_for(f"/api/v1/orders/{resting['order_id']}", lambda o: o["status"] == "PENDING_CANCEL")
    assert blocked["status"] == "REJECTED" and blocked["reject_reason"].startswith("KILL_SWITCH")
    assert trader.get("/api/v1/limits").body["kill_switch"]["engaged"] is True
    admin.post("/api/v1/admin/kill-switch", {"engaged": False, "account_id": trader.account_id})
    trader.wait_for("/api/v1/limits", lambda d: d["kill_switch"]["engaged"] is False)
    assert placed_status(trader)["status"] == "PENDING_NEW"


def test_global_kill_switch_blocks_every_account(trader, alice, admin):
    assert admin.post("/api/v1/admin/kill-switch", {"engaged": True, "reason": "drill"}).status == 202
    try:
        deadline = time.monotonic() + 20
        while True:
            order = placed_status(trader)
            if order["status"] == "REJECTED" or time.monotonic() > deadline:
                break
        assert order["reject_reason"].startswith("KILL_SWITCH_GLOBAL")
        assert placed_status(alice)["status"] == "REJECTED"
    finally:
        admin.post("/api/v1/admin/kill-switch", {"engaged": False})
    deadline = time.monotonic() + 20
    while placed_status(trader)["status"] != "PENDING_NEW":
        assert time.monotonic() < deadline, "orders still rejected after the global kill switch was released"


def test_halted_symbol_is_rejected(trader, kafka, cluster):
    control = lambda halted: (b"ETH-USD", json.dumps({"symbol": "ETH-USD", "halted": halted}).encode())
    kafka.produce(cluster.topic("venue.control"), [control(True)])
    try:
        deadline = time.monotonic() + 20
        while (order := placed_status(trader, symbol="ETH-USD", quantity="0.1", price="3200.00"))["status"] != "REJECTED":
            assert time.monotonic() < deadline
        assert order["reject_reason"].startswith("SYMBOL_HALTED")
    finally:
        kafka.produce(cluster.topic("venue.control"), [control(False)])


def test_reference_price_from_market_data_moves_the_collar(trader, kafka, cluster):
    mid = lambda price: (b"SOL-USD", json.dumps({"type": "mid", "symbol": "SOL-USD", "mid": price, "ts": 1}).encode())
    kafka.produce(cluster.topic("marketdata"), [mid("300.000")])
    try:
        deadline = time.monotonic() + 20
        while (order := placed_status(trader, symbol="SOL-USD", quantity="1.00", price="150.000"))["status"] != "REJECTED":
            assert time.monotonic() < deadline
        assert order["reject_reason"].startswith("PRICE_COLLAR")
        assert placed_status(trader, symbol="SOL-USD", quantity="1.00", price="300.000")["status"] == "PENDING_NEW"
    finally:
        kafka.produce(cluster.topic("marketdata"), [mid("150.000")])


def test_sell_beyond_holdings_is_insufficient_funds(trader):
    assert placed_status(trader, side="SELL", quantity="6", price="64000.00")["status"] == "PENDING_NEW"
    order = placed_status(trader, side="SELL", quantity="6", price="64000.00")
    assert order["status"] == "REJECTED" and order["reject_reason"].startswith("INSUFFICIENT_FUNDS")
    balances = trader.get("/api/v1/balances").body["balances"]["BTC"]
    assert (balances["available"], balances["reserved"], balances["total"]) == ("4", "6", "10")


def test_openapi_document_is_valid_and_lists_every_endpoint(anonymous):
    response = anonymous.get("/api/v1/openapi.json")
    assert response.status == 200
    validate(response.body)
    assert {"/api/v1/orders", "/api/v1/orders/{order_id}", "/api/v1/orders/{order_id}/executions", "/api/v1/balances",
            "/api/v1/limits", "/api/v1/admin/accounts/{account_id}/limits", "/api/v1/admin/kill-switch",
            "/api/v1/venue/{symbol}", "/api/v1/admin/venue/{symbol}", "/api/v1/marketdata/{symbol}",
            "/api/v1/marketdata/{symbol}/trades", "/api/v1/stream", "/healthz", "/readyz", "/api/v1/positions",
            "/api/v1/risk/preview", "/api/v1/telemetry", "/api/v1/console/config", "/api/v1/admin/accounts",
            "/api/v1/marketdata/{symbol}/metrics", "/api/v1/marketdata/{symbol}/history"} <= set(response.body["paths"])


def test_openapi_document_declares_what_the_edge_enforces(anonymous):
    doc = anonymous.get("/api/v1/openapi.json").body
    place = doc["paths"]["/api/v1/orders"]["post"]["responses"]
    assert {"400", "401", "403", "413", "421", "429"} <= set(place)
    assert {"Retry-After", "RateLimit-Remaining"} <= set(place["429"]["headers"])
    assert "RateLimit-Limit" in place["202"]["headers"]
    assert {"426", "503"} <= set(doc["paths"]["/api/v1/stream"]["get"]["responses"])
    assert "nullable" not in json.dumps(doc)  # OpenAPI 3.1: a null is a type ("type": ["string", "null"])
    assert doc["components"]["schemas"]["Order"]["properties"]["price"]["type"] == ["string", "null"]


def test_outside_demo_mode_no_key_is_offered(anonymous):
    assert anonymous.get("/api/v1/console/config").body == {"demo": False, "accounts": []}


def test_health_and_readiness(anonymous):
    assert anonymous.get("/healthz").body == {"status": "ok"}
    ready = anonymous.get("/readyz")
    assert ready.status == 200
    assert ready.body["checks"] == {"broker": True, "tables_recovered": True, "partitions_assigned": True,
                                    "ownership_known": True}
