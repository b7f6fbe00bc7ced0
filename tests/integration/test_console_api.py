"""The endpoints behind the console, on a live worker with its venue: risk preview, positions and P&L, market
metrics and history, telemetry, the admin's account reads, and demo mode's sign-in offer."""
from __future__ import annotations

import uuid
from decimal import Decimal as D

import pytest

from tests.live import ROOT, Api, Cluster, mid

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def desk(kafka_bootstrap, tmp_path_factory) -> Cluster:
    cluster = Cluster(kafka_bootstrap, tmp_path_factory.mktemp("desk"), f"desk-{uuid.uuid4().hex[:8]}", venue=True,
                      extra_env={"ATLAS_DEMO_KEYS_FILE": str(ROOT / "config" / "demo-keys.json")})
    cluster.start_worker()
    yield cluster
    cluster.stop()


def trader(cluster: Cluster, n: int) -> Api:
    return cluster.trader(n)


def filled_buy(api: Api, quantity: str = "0.0100") -> dict:
    """A buy priced through the market, once FILLED."""
    placed = api.order(quantity=quantity, price=str((mid(api) * D("1.03")).quantize(D("0.01"))), time_in_force="IOC")
    assert placed.status == 202, placed
    return api.wait_for(f"/api/v1/orders/{placed.body['order_id']}", lambda o: o["status"] == "FILLED", timeout=30)


def test_preview_of_a_limit_buy_reports_reservation_balances_and_exposure(desk):
    api = trader(desk, 1)
    doc = api.get("/api/v1/risk/preview?symbol=BTC-USD&side=BUY&type=LIMIT&quantity=0.5&price=64000.00").body
    assert doc["accepted"] is True and doc["block"] is None
    assert doc["required"]["asset"] == "USD" and D(doc["required"]["amount"]) == D("32000")
    assert D(doc["balances_after"]["USD"]["available"]) == D("1000000") - 32000
    assert D(doc["exposure"]["before"]) == 10 and D(doc["exposure"]["after"]) == D("10.5")
    low, high = D(doc["collar"]["low"]), D(doc["collar"]["high"])
    assert low < D(doc["reference_price"]) < high


def test_preview_blocks_with_the_reason_the_oms_then_gives(desk):
    api = trader(desk, 2)
    doc = api.get("/api/v1/risk/preview?symbol=BTC-USD&side=SELL&type=LIMIT&quantity=11&price=65000.00").body
    assert doc["accepted"] is False and doc["block"]["code"] == "MAX_ORDER_QUANTITY"
    placed = api.order(side="SELL", quantity="11", price="65000.00")
    order = api.wait_for(f"/api/v1/orders/{placed.body['order_id']}", lambda o: o["status"] == "REJECTED")
    assert order["reject_reason"].startswith("MAX_ORDER_QUANTITY")


@pytest.mark.parametrize("query, status, code", [
    ("symbol=BTC-USD&side=BUY&type=LIMIT&quantity=0.5", 422, "VALIDATION_ERROR"),  # a limit order needs a price
    ("symbol=BTC-USD&side=UP&type=LIMIT&quantity=0.5&price=1", 422, "VALIDATION_ERROR"),
    ("symbol=BTC-USD&side=BUY&type=LIMIT&quantity=lots&price=1", 422, "VALIDATION_ERROR"),
    ("symbol=BTC-USD&side=BUY&type=MARKET&quantity=1&colour=red", 400, "INVALID_QUERY"),
])
def test_preview_with_bad_terms_is_a_problem_document(desk, query, status, code):
    response = trader(desk, 3).get(f"/api/v1/risk/preview?{query}")
    assert (response.status, response.body["code"]) == (status, code)


def test_preview_of_terms_the_instrument_cannot_take_is_refused_as_an_order_would_be(desk):
    api = trader(desk, 3)
    absurd = api.get(f"/api/v1/risk/preview?symbol=BTC-USD&side=BUY&type=LIMIT&quantity={'9' * 24}&price=2")
    assert (absurd.status, absurd.body["code"]) == (422, "INVALID_QUANTITY")
    exponent = api.get("/api/v1/risk/preview?symbol=BTC-USD&side=BUY&type=LIMIT&quantity=9E999999&price=2")
    assert (exponent.status, exponent.body["code"]) == (422, "VALIDATION_ERROR")  # not the wire's grammar
    off_tick = api.get("/api/v1/risk/preview?symbol=BTC-USD&side=BUY&type=LIMIT&quantity=1&price=64000.001")
    assert (off_tick.status, off_tick.body["code"]) == (422, "INVALID_PRICE")
    unknown = api.get("/api/v1/risk/preview?symbol=DOGE-USD&side=BUY&type=LIMIT&quantity=1&price=1")
    assert (unknown.status, unknown.body["code"]) == (422, "UNKNOWN_SYMBOL")


def test_preview_needs_a_key(desk):
    assert Api(desk.workers[0].url).get("/api/v1/risk/preview?symbol=BTC-USD").status == 401


def test_positions_after_a_fill_hold_it_at_its_price_marked_to_mid(desk):
    api = trader(desk, 4)
    order = filled_buy(api)
    doc = api.get("/api/v1/positions").body
    (position,) = doc["positions"]
    assert position["symbol"] == "BTC-USD" and D(position["quantity"]) == D("0.01")
    assert D(position["avg_price"]) == D(order["avg_price"]) and D(position["realised"]) == 0
    mark = D(position["mark"])
    assert D(position["unrealised"]) == (D("0.01") * (mark - D(order["avg_price"]))).quantize(D("1e-10")).normalize()
    assert D(doc["summary"]["total"]["USD"]) == D(position["unrealised"])
    btc = next(e for e in doc["exposures"] if e["asset"] == "BTC")
    assert D(btc["total"]) == D("10.01") and D(btc["value"]) == D("10.01") * mark


def test_metrics_give_spread_suggestions_on_the_tick_and_a_certain_fill_through_the_book(desk):
    api = trader(desk, 5)
    mid(api, "ETH-USD")
    doc = api.wait_for("/api/v1/marketdata/ETH-USD/metrics", lambda d: d["metrics"]["mids"] >= 3)
    metrics = doc["metrics"]
    assert D(metrics["spread_bps"]) > 0 and D(metrics["volatility_per_s"]) >= 0
    buy = doc["suggestions"]["BUY"]
    for price in (buy["passive"], buy["mid"], buy["aggressive"]):
        assert D(price) % D("0.01") == 0
    assert D(buy["passive"]) <= D(buy["mid"]) < D(buy["aggressive"])
    fill = api.get(f"/api/v1/marketdata/ETH-USD/metrics?side=BUY&price={buy['aggressive']}&quantity=0.001").body["fill"]
    assert fill == {"probability": "1.000", "method": "marketable", "horizon_s": 60, "immediate_quantity": "0.001"}
    far = api.get("/api/v1/marketdata/ETH-USD/metrics?side=BUY&price=1000.00&quantity=0.001").body["fill"]
    assert far["method"] in ("touch", "no-volatility") and D(far["probability"]) < D("0.01")


def test_metrics_refuse_bad_queries_and_unknown_symbols(desk):
    api = trader(desk, 5)
    assert api.get("/api/v1/marketdata/ETH-USD/metrics?side=UP").body["code"] == "INVALID_QUERY"
    assert api.get("/api/v1/marketdata/ETH-USD/metrics?price=-1&quantity=1").status == 400
    assert api.get("/api/v1/marketdata/ETH-USD/metrics?price=NaN&quantity=1").status == 400
    off_tick = api.get("/api/v1/marketdata/ETH-USD/metrics?price=3200.001&quantity=1")
    assert off_tick.status == 400 and "tick size" in off_tick.body["detail"]
    assert api.get("/api/v1/marketdata/ETH-USD/metrics?price=1E-400&quantity=1").status == 400
    assert api.get("/api/v1/marketdata/DOGE-USD/metrics").status == 404
    assert api.get("/api/v1/marketdata/DOGE-USD/history").status == 404


def test_history_has_mids_spreads_and_the_minute_of_a_trade(desk):
    api = trader(desk, 6)
    filled_buy(api)
    doc = api.wait_for("/api/v1/marketdata/BTC-USD/history", lambda d: d["flow"] and len(d["mid"]) >= 2)
    assert all(D(p["bps"]) > 0 for p in doc["spread_bps"])
    assert sum(D(m["buy"]) for m in doc["flow"]) >= D("0.01")


def test_telemetry_counts_the_flow_and_measures_its_latency(desk):
    filled_buy(trader(desk, 7))
    api = Api(desk.workers[0].url, desk.keys["admin"])  # every account's figures, and the workers: admins only
    refused = trader(desk, 7).get("/api/v1/telemetry")
    assert refused.status == 403 and refused.body["code"] == "FORBIDDEN"
    doc = api.wait_for("/api/v1/telemetry", lambda d: d["counts"]["fills"] >= 1)
    assert doc["workers"] == [desk.workers[0].url] and doc["unreachable"] == []
    assert doc["counts"]["submitted"] >= doc["counts"]["accepted"] >= 1
    fill = doc["latency_ms"]["submit_to_fill"]
    assert fill["count"] >= 1 and D(fill["p50"]) > 0 and sum(b["count"] for b in fill["buckets"]) == fill["count"]
    assert D(doc["throughput"]["events_per_s"]) > 0
    local = api.get("/api/v1/telemetry?scope=local").body
    assert local["counts"]["fills"] >= 1 and local["fill_latency"]
    assert api.get("/api/v1/telemetry?scope=moon").status == 400


def test_admin_reads_every_account_and_their_limits(desk):
    admin = Api(desk.workers[0].url, desk.keys["admin"])
    accounts = admin.get("/api/v1/admin/accounts").body["accounts"]
    assert {"account_id": "admin", "role": "admin"} in accounts and len(accounts) == 3 + 40
    doc = admin.get("/api/v1/admin/accounts/trader-08/limits").body
    assert doc == trader(desk, 8).get("/api/v1/limits").body
    assert doc["global_kill_switch"] == {"engaged": False, "reason": ""}
    assert admin.get("/api/v1/admin/accounts/nobody/limits").status == 404
    assert trader(desk, 8).get("/api/v1/admin/accounts").status == 403
    assert trader(desk, 8).get("/api/v1/admin/accounts/trader-08/limits").status == 403


def test_demo_mode_offers_the_demo_accounts_keys(desk):
    doc = Api(desk.workers[0].url).get("/api/v1/console/config").body
    assert doc == {"demo": True, "accounts": [
        {"account_id": "admin", "role": "admin", "key": "admin-demo-key"},
        {"account_id": "alice", "role": "trader", "key": "alice-demo-key"},
        {"account_id": "bob", "role": "trader", "key": "bob-demo-key"}]}

