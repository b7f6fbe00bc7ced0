"""Order entry and queries over HTTP, with the venue's reports played onto Kafka by the test."""
from __future__ import annotations

import json
import threading
import time
from decimal import Decimal as D

import pytest

from tests.live import Api

pytestmark = pytest.mark.integration


def report(kafka, cluster, account: str, order_id: str, kind: str, **fields) -> None:
    """Produce a venue report for an order, as the venue would."""
    body = {"report_id": f"{order_id}-{kind}-{time.monotonic_ns()}", "kind": kind, "order_id": order_id,
            "account_id": account, "ts": int(time.time() * 1000), **fields}
    kafka.produce(cluster.topic("venue.reports"), [(account.encode(), json.dumps(body).encode())])


def wait_status(api: Api, order_id: str, status: str) -> dict:
    return api.wait_for(f"/api/v1/orders/{order_id}", lambda o: o["status"] == status)


def test_submit_order_returns_202_and_reaches_pending_new(trader):
    placed = trader.order(client_order_id="first-order")
    assert placed.status == 202
    assert placed.body["status"] == "PENDING_NEW"
    assert placed.headers["location"] == f"/api/v1/orders/{placed.body['order_id']}"
    order = wait_status(trader, placed.body["order_id"], "PENDING_NEW")
    assert order["client_order_id"] == "first-order"
    assert order["account_id"] == trader.account_id
    assert (order["quantity"], order["price"], order["leaves_quantity"]) == ("0.01", "64000.00", "0.01")
    assert set(order) == {"order_id", "client_order_id", "account_id", "symbol", "side", "type", "time_in_force",
                          "quantity", "price", "status", "filled_quantity", "leaves_quantity", "avg_price",
                          "reject_reason", "created_at", "updated_at", "seq"}


def test_accepted_order_reaches_the_venue_topic_keyed_by_symbol(trader, kafka, cluster):
    placed = trader.order(symbol="ETH-USD", quantity="0.5", price="3200.00")
    order_id = placed.body["order_id"]
    records = kafka.consume(cluster.topic("venue.orders"),
                            lambda rs: any(r["value"]["order_id"] == order_id for r in rs))
    sent = next(r for r in records if r["value"]["order_id"] == order_id)
    assert sent["key"] == b"ETH-USD"
    assert sent["value"]["request"] == "new"
    assert sent["value"]["quantity"] == "0.5" and sent["value"]["price"] == "3200.00"


def test_buy_reserves_quote_and_fills_move_balances_exactly(trader, kafka, cluster):
    before = trader.get("/api/v1/balances").body["balances"]
    placed = trader.order(quantity="0.5", price="64000.00")
    order_id = placed.body["order_id"]
    wait_status(trader, order_id, "PENDING_NEW")
    assert D(trader.get("/api/v1/balances").body["balances"]["USD"]["reserved"]) == D("32000")
    report(kafka, cluster, trader.account_id, order_id, "ACCEPTED")
    wait_status(trader, order_id, "NEW")
    report(kafka, cluster, trader.account_id, order_id, "FILL", last_qty="0.2", last_px="63990.00")
    order = wait_status(trader, order_id, "PARTIALLY_FILLED")
    assert (order["filled_quantity"], order["leaves_quantity"], order["avg_price"]) == ("0.2", "0.3", "63990")
    report(kafka, cluster, trader.account_id, order_id, "FILL", last_qty="0.3", last_px="64000.00")
    order = wait_status(trader, order_id, "FILLED")
    assert order["avg_price"] == "63996"
    after = trader.get("/api/v1/balances").body["balances"]
    assert D(after["USD"]["total"]) == D(before["USD"]["total"]) - D("0.2") * D("63990") - D("0.3") * D("64000")
    assert D(after["USD"]["reserved"]) == 0
    assert D(after["BTC"]["available"]) == D(before["BTC"]["available"]) + D("0.5")
    executions = trader.get(f"/api/v1/orders/{order_id}/executions").body["executions"]
    assert [e["exec_type"] for e in executions] == ["PENDING_NEW", "NEW", "TRADE", "TRADE"]
    assert [e["seq"] for e in executions] == [1, 2, 3, 4]
    last = executions[-1]
    assert (last["cum_qty"], last["leaves_qty"], last["last_qty"], last["last_px"]) == ("0.5", "0", "0.3", "64000.00")


def test_same_client_order_id_same_body_returns_original_with_replayed_header(trader):
    body = {"client_order_id": "idem-1", "symbol": "SOL-USD", "side": "BUY", "type": "LIMIT",
            "quantity": "1.00", "price": "150.000", "time_in_force": "GTC"}
    first = trader.post("/api/v1/orders", body)
    wait_status(trader, first.body["order_id"], "PENDING_NEW")
    again = trader.post("/api/v1/orders", body)
    assert again.status == 200
    assert again.headers["idempotent-replayed"] == "true"
    assert again.body["order_id"] == first.body["order_id"]


def test_same_client_order_id_other_body_is_422(trader):
    body = {"client_order_id": "idem-2", "symbol": "SOL-USD", "side": "BUY", "type": "LIMIT",
            "quantity": "1.00", "price": "150.000"}
    first = trader.post("/api/v1/orders", body)
    wait_status(trader, first.body["order_id"], "PENDING_NEW")
    other = trader.post("/api/v1/orders", {**body, "quantity": "2.00"})
    assert other.status == 422
    assert other.body["code"] == "DUPLICATE_CLIENT_ORDER_ID"
    assert other.headers["content-type"].startswith("application/problem+json")


def test_racing_identical_submissions_make_one_order(trader):
    body = {"client_order_id": "race-1", "symbol": "BTC-USD", "side": "BUY", "type": "LIMIT",
            "quantity": "0.01", "price": "64000.00"}
    results = []
    threads = [threading.Thread(target=lambda: results.append(trader.post("/api/v1/orders", body))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {r.status for r in results} <= {200, 202}
    order_id = results[0].body["order_id"]
    assert {r.body["order_id"] for r in results} == {order_id}
    wait_status(trader, order_id, "PENDING_NEW")
    time.sleep(1.0)  # any duplicate would have been applied by now
    orders = trader.get("/api/v1/orders?client_order_id=race-1").body["orders"]
    assert len(orders) == 1
    executions = trader.get(f"/api/v1/orders/{order_id}/executions").body["executions"]
    assert [e["exec_type"] for e in executions] == ["PENDING_NEW"]
    balances = trader.get("/api/v1/balances").body["balances"]
    assert D(balances["USD"]["reserved"]) == D("640")


def test_lookup_by_client_order_id_finds_the_order(trader):
    placed = trader.order(client_order_id="lost-response")
    wait_status(trader, placed.body["order_id"], "PENDING_NEW")
    found = trader.get("/api/v1/orders?client_order_id=lost-response").body["orders"]
    assert [o["order_id"] for o in found] == [placed.body["order_id"]]
    assert trader.get("/api/v1/orders?client_order_id=never-sent").body["orders"] == []


def test_list_filters_by_status_and_symbol(trader, kafka, cluster):
    open_id = trader.order(symbol="ETH-USD", quantity="0.1", price="3200.00").body["order_id"]
    closed_id = trader.order(symbol="SOL-USD", quantity="1.00", price="150.000").body["order_id"]
    wait_status(trader, closed_id, "PENDING_NEW")
    report(kafka, cluster, trader.account_id, closed_id, "REJECTED", reason="venue closed")
    wait_status(trader, closed_id, "REJECTED")
    wait_status(trader, open_id, "PENDING_NEW")
    ids = lambda q: {o["order_id"] for o in trader.get(f"/api/v1/orders{q}").body["orders"]}
    assert open_id in ids("?status=open") and closed_id not in ids("?status=open")
    assert closed_id in ids("?status=closed") and open_id not in ids("?status=closed")
    assert {open_id, closed_id} <= ids("?status=all")
    assert ids("?symbol=SOL-USD") >= {closed_id} and open_id not in ids("?symbol=SOL-USD")
    assert trader.get("/api/v1/orders?status=weird").status == 400


def test_another_accounts_order_is_404(trader, alice):
    placed = alice.order()
    wait_status(alice, placed.body["order_id"], "PENDING_NEW")
    response = trader.get(f"/api/v1/orders/{placed.body['order_id']}")
    assert response.status == 404
    assert response.body["code"] == "NOT_FOUND"
    assert trader.get(f"/api/v1/orders/{placed.body['order_id']}/executions").status == 404


def test_cancel_goes_pending_then_canceled_and_releases_funds(trader, kafka, cluster):
    order_id = trader.order(quantity="0.1", price="64000.00").body["order_id"]
    wait_status(trader, order_id, "PENDING_NEW")
    report(kafka, cluster, trader.account_id, order_id, "ACCEPTED")
    wait_status(trader, order_id, "NEW")
    response = trader.request("DELETE", f"/api/v1/orders/{order_id}")
    assert response.status == 202
    wait_status(trader, order_id, "PENDING_CANCEL")
    records = kafka.consume(cluster.topic("venue.orders"),
                            lambda rs: any(r["value"]["order_id"] == order_id and r["value"]["request"] == "cancel" for r in rs))
    assert records
    report(kafka, cluster, trader.account_id, order_id, "CANCELED")
    order = wait_status(trader, order_id, "CANCELED")
    assert order["leaves_quantity"] == "0"
    assert D(trader.get("/api/v1/balances").body["balances"]["USD"]["reserved"]) == 0


def test_cancel_of_filled_order_is_rejected_too_late(trader, kafka, cluster):
    order_id = trader.order(quantity="0.01", price="64000.00").body["order_id"]
    wait_status(trader, order_id, "PENDING_NEW")
    report(kafka, cluster, trader.account_id, order_id, "ACCEPTED")
    report(kafka, cluster, trader.account_id, order_id, "FILL", last_qty="0.01", last_px="64000.00")
    wait_status(trader, order_id, "FILLED")
    assert trader.request("DELETE", f"/api/v1/orders/{order_id}").status == 202
    executions = trader.wait_for(f"/api/v1/orders/{order_id}/executions",
                                 lambda d: d["executions"][-1]["exec_type"] == "CANCEL_REJECTED")["executions"]
    assert executions[-1]["reason"].startswith("TOO_LATE")
    assert executions[-1]["status"] == "FILLED"


def test_cancel_when_already_pending_is_rejected(trader):
    order_id = trader.order().body["order_id"]
    wait_status(trader, order_id, "PENDING_NEW")
    trader.request("DELETE", f"/api/v1/orders/{order_id}")
    wait_status(trader, order_id, "PENDING_CANCEL")
    trader.request("DELETE", f"/api/v1/orders/{order_id}")
    executions = trader.wait_for(f"/api/v1/orders/{order_id}/executions",
                                 lambda d: d["executions"][-1]["exec_type"] == "CANCEL_REJECTED")["executions"]
    assert executions[-1]["reason"].startswith("ALREADY_PENDING")


def test_cancel_of_unknown_order_is_404_and_reported_as_unknown_order(trader, kafka, cluster):
    response = trader.request("DELETE", "/api/v1/orders/Onosuchorder")
    assert response.status == 404 and response.body["code"] == "NOT_FOUND", response
    records = kafka.consume(cluster.topic("executions"), lambda rs: any(
        r["value"]["order_id"] == "Onosuchorder" and r["value"]["account_id"] == trader.account_id for r in rs))
    report_ = next(r["value"] for r in records if r["value"]["order_id"] == "Onosuchorder")
    assert report_["exec_type"] == "CANCEL_REJECTED" and report_["reason"].startswith("UNKNOWN_ORDER")


def test_replace_goes_pending_then_replaced_with_new_terms(trader, kafka, cluster):
    order_id = trader.order(quantity="0.1", price="64000.00").body["order_id"]
    wait_status(trader, order_id, "PENDING_NEW")
    report(kafka, cluster, trader.account_id, order_id, "ACCEPTED")
    wait_status(trader, order_id, "NEW")
    response = trader.request("PATCH", f"/api/v1/orders/{order_id}", {"quantity": "0.2", "price": "63000.00"})
    assert response.status == 202
    wait_status(trader, order_id, "PENDING_REPLACE")
    assert D(trader.get("/api/v1/balances").body["balances"]["USD"]["reserved"]) == D("12600")
    records = kafka.consume(cluster.topic("venue.orders"), lambda rs: any(
        r["value"]["order_id"] == order_id and r["value"]["request"] == "replace" for r in rs))
    request = next(r["value"] for r in records if r["value"]["request"] == "replace" and r["value"]["order_id"] == order_id)
    assert (request["quantity"], request["price"]) == ("0.2", "63000.00")
    report(kafka, cluster, trader.account_id, order_id, "REPLACED", quantity="0.2", price="63000.00")
    order = wait_status(trader, order_id, "NEW")
    assert (order["quantity"], order["price"]) == ("0.2", "63000.00")
    assert D(trader.get("/api/v1/balances").body["balances"]["USD"]["reserved"]) == D("12600")
