"""The venue in the worker: orders placed over HTTP trade against the market maker and each other."""
from __future__ import annotations

import json
import time
import uuid
from decimal import Decimal as D

import pytest

from atlas.oms.risk import collar_bounds
from tests.live import Api, Cluster, Kafka

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def market(kafka_bootstrap, tmp_path_factory) -> Cluster:
    cluster = Cluster(kafka_bootstrap, tmp_path_factory.mktemp("venue"), f"venue-{uuid.uuid4().hex[:8]}", venue=True)
    cluster.start_worker()
    yield cluster
    cluster.stop()


def trader(cluster: Cluster, n: int) -> Api:
    return cluster.trader(n)


def market_data(cluster: Cluster, until) -> list[dict]:
    """The documents on the market-data topic, read until `until(documents)` holds."""
    records = Kafka(cluster.bootstrap).consume(cluster.topic("marketdata"), lambda seen: until([r["value"] for r in seen]))
    return [r["value"] for r in records]


def mid(cluster: Cluster, symbol: str = "BTC-USD") -> D:
    """The venue's latest mid for a symbol, from its market data."""
    docs = market_data(cluster, lambda seen: any(d.get("type") == "mid" and d["symbol"] == symbol for d in seen))
    return D([d for d in docs if d.get("type") == "mid" and d["symbol"] == symbol][-1]["mid"])


def executions(api: Api, order_id: str, status: str, exec_type: str | None = None) -> list[dict]:
    """The order's execution reports, once the last one has `status` (and `exec_type`, if given)."""
    def done(doc: dict) -> bool:
        last = doc["executions"][-1] if doc["executions"] else None
        return last is not None and last["status"] == status and exec_type in (None, last["exec_type"])
    return api.wait_for(f"/api/v1/orders/{order_id}/executions", done, timeout=30)["executions"]


def demo_account(cluster: Cluster, name: str) -> Api:
    api = Api(cluster.workers[0].url, cluster.keys[name])
    api.account_id = name
    return api


def test_alice_marketable_buy_fills_against_the_maker_and_moves_balances_by_the_trades(market):
    alice = demo_account(market, "alice")
    before = alice.get("/api/v1/balances").body["balances"]
    price = (mid(market) * D("1.01")).quantize(D("0.01"))
    placed = alice.order(client_order_id="lift", quantity="0.0100", price=str(price))
    assert placed.status == 202, placed
    reports = executions(alice, placed.body["order_id"], "FILLED")
    trades = [r for r in reports if r["exec_type"] == "TRADE"]
    assert [r["exec_type"] for r in reports][:2] == ["PENDING_NEW", "NEW"] and trades
    assert sum(D(t["last_qty"]) for t in trades) == D("0.0100")
    assert all(D(t["last_px"]) <= price for t in trades)
    last = reports[-1]
    assert (D(last["cum_qty"]), D(last["leaves_qty"])) == (D("0.0100"), 0)
    cost = sum(D(t["last_qty"]) * D(t["last_px"]) for t in trades)
    assert D(last["avg_px"]) == (cost / D("0.0100")).quantize(D("1e-10")).normalize()
    after = alice.wait_for("/api/v1/balances", lambda doc: D(doc["balances"]["USD"]["reserved"]) == 0)["balances"]
    assert D(after["USD"]["total"]) == D(before["USD"]["total"]) - cost
    assert D(after["BTC"]["total"]) == D(before["BTC"]["total"]) + D("0.0100")


def test_bob_sells_to_alice_once_the_maker_stops_quoting(market):
    # The control center takes the maker's ladder away on SOL-USD (through atlas.venue.control).
    sent = int(time.time() * 1000)
    control = {"symbol": "SOL-USD", "levels": 0, "ts": sent}
    Kafka(market.bootstrap).produce(market.topic("venue.control"), [(b"SOL-USD", json.dumps(control).encode())])
    market_data(market, lambda seen: any(d.get("type") == "book" and d["symbol"] == "SOL-USD" and d["ts"] > sent
                                         and not d["bids"] and not d["asks"] for d in seen))
    seller, buyer = demo_account(market, "bob"), demo_account(market, "alice")
    ask = seller.order(client_order_id="ask", symbol="SOL-USD", side="SELL", quantity="2.00", price="150.000")
    assert ask.status == 202
    executions(seller, ask.body["order_id"], "NEW")
    bid = buyer.order(client_order_id="bid", symbol="SOL-USD", side="BUY", quantity="2.00", price="150.000")
    buys = [r for r in executions(buyer, bid.body["order_id"], "FILLED") if r["exec_type"] == "TRADE"]
    sells = [r for r in executions(seller, ask.body["order_id"], "FILLED") if r["exec_type"] == "TRADE"]
    for reports in (buys, sells):
        assert [(D(r["last_qty"]), D(r["last_px"])) for r in reports] == [(D("2.00"), D("150.000"))]
        last = reports[-1]
        assert (D(last["cum_qty"]), D(last["leaves_qty"]), D(last["avg_px"])) == (D("2.00"), 0, D("150.000"))
    bob_balances = seller.get("/api/v1/balances").body["balances"]
    assert D(bob_balances["SOL"]["total"]) == D("498.00") and D(bob_balances["SOL"]["reserved"]) == 0
    assert D(bob_balances["USD"]["total"]) == D("500000") + D("300.000")
    alice_sol = buyer.wait_for("/api/v1/balances", lambda doc: D(doc["balances"]["SOL"]["total"]) > 1000)
    assert D(alice_sol["balances"]["SOL"]["total"]) == D("1002.00")


def test_resting_order_is_replaced_then_cancelled_end_to_end(market):
    alice = trader(market, 3)
    low = (mid(market) * D("0.95")).quantize(D("0.01"))  # below the maker's bids, inside the price collar
    placed = alice.order(client_order_id="rest", quantity="0.0100", price=str(low))
    order_id = placed.body["order_id"]
    executions(alice, order_id, "NEW")
    assert alice.request("PATCH", f"/api/v1/orders/{order_id}", {"price": str(low + 1)}).status == 202
    replaced = executions(alice, order_id, "NEW", "REPLACED")
    assert [r["exec_type"] for r in replaced][-2:] == ["PENDING_REPLACE", "REPLACED"]
    assert D(replaced[-1]["price"]) == low + 1
    assert alice.request("DELETE", f"/api/v1/orders/{order_id}").status == 202
    canceled = executions(alice, order_id, "CANCELED")
    assert [r["exec_type"] for r in canceled][-2:] == ["PENDING_CANCEL", "CANCELED"]
    balances = alice.get("/api/v1/balances").body["balances"]
    assert D(balances["USD"]["reserved"]) == 0


def test_venue_publishes_book_and_mid_every_tick(market):
    docs = market_data(market, lambda seen: sum(d.get("type") == "book" for d in seen) >= 6)
    books = [d for d in docs if d.get("type") == "book" and d["symbol"] == "BTC-USD"]
    assert books, json.dumps(docs[:3])
    book = books[-1]
    assert len(book["bids"]) == 10 and len(book["asks"]) == 10
    assert D(book["bids"][0][0]) < D(book["mid"]) < D(book["asks"][0][0])


def test_venue_parameters_change_live_through_the_admin_endpoint(market):
    admin = Api(market.workers[0].url, market.keys["admin"])
    alice = trader(market, 4)
    before = alice.get("/api/v1/venue/ETH-USD")
    assert before.status == 200 and before.body["levels"] == 10
    assert alice.post("/api/v1/admin/venue/ETH-USD", {"spread_bps": "20"}).status == 403
    assert admin.post("/api/v1/admin/venue/ETH-USD", {"liquidity": "0.0001"}).body["code"] == "INVALID_QUANTITY"
    assert admin.post("/api/v1/admin/venue/ETH-USD", {"spread_bps": "-1"}).status == 422
    changed = admin.post("/api/v1/admin/venue/ETH-USD", {"spread_bps": "20", "liquidity": "0.250", "levels": 4})
    assert changed.status == 202, changed
    params = alice.wait_for("/api/v1/venue/ETH-USD", lambda doc: doc["levels"] == 4)
    assert (D(params["spread_bps"]), D(params["liquidity"])) == (D(20), D("0.250"))
    book = alice.wait_for("/api/v1/marketdata/ETH-USD", lambda doc: len(doc["bids"]) == 4)
    assert all(D(level["quantity"]) == D("0.250") for level in book["bids"] + book["asks"])
    spread = D(book["asks"][0]["price"]) - D(book["bids"][0]["price"])
    assert abs(spread / D(book["mid"]) * 10_000 - 20) < 1  # bps, within rounding to the tick


def test_marketdata_endpoints_show_the_book_and_the_latest_trades(market):
    alice = trader(market, 5)
    book = alice.get("/api/v1/marketdata/BTC-USD").body
    assert len(book["bids"]) == 10 and D(book["bids"][0]["price"]) < D(book["mid"]) < D(book["asks"][0]["price"])
    lift = (D(book["mid"]) * D("1.01")).quantize(D("0.01"))
    placed = alice.order(client_order_id="for-the-tape", quantity="0.0030", price=str(lift))
    fills = [r for r in executions(alice, placed.body["order_id"], "FILLED") if r["exec_type"] == "TRADE"]
    tape = alice.wait_for("/api/v1/marketdata/BTC-USD/trades?limit=100",
                          lambda doc: any(t["ts"] == fills[-1]["ts"] for t in doc["trades"]))["trades"]
    assert [t["ts"] for t in tape] == sorted((t["ts"] for t in tape), reverse=True)
    assert {(t["price"], t["quantity"]) for t in tape} >= {(f["last_px"], f["last_qty"]) for f in fills}
    assert alice.get("/api/v1/marketdata/BTC-USD/trades?limit=0").body["code"] == "INVALID_QUERY"
    assert alice.get("/api/v1/marketdata/DOGE-USD").body["code"] == "UNKNOWN_SYMBOL"
    assert alice.get("/api/v1/marketdata/BTC-USD").body["last_trade"] is not None


def test_the_oms_price_collar_is_centred_on_the_venues_mid(market):
    """The reference price comes from the venue's market data, not from the instrument's constant."""
    admin, alice = Api(market.workers[0].url, market.keys["admin"]), demo_account(market, "alice")
    # Let ETH-USD wander off its configured 3200.00, then hold it still so both sides agree on it.
    assert admin.post("/api/v1/admin/venue/ETH-USD", {"volatility": "0.02"}).status == 202
    time.sleep(3)
    assert admin.post("/api/v1/admin/venue/ETH-USD", {"volatility": "0"}).status == 202
    still = []

    def settled(doc: dict) -> bool:
        still.append(doc["mid"])
        return len(still) >= 8 and len(set(still[-8:])) == 1  # unchanged over 8 reads 0.1 s apart

    mid = D(alice.wait_for("/api/v1/marketdata/ETH-USD", settled, timeout=30)["mid"])
    assert mid != D("3200.00"), "the walk came back to the configured price: nothing to tell apart"
    time.sleep(1)  # a few more ticks publish the held mid to the OMS
    collar_bps = alice.get("/api/v1/limits").body["limits"]["price_collar_bps"]
    placed = alice.order(client_order_id="far-off", symbol="ETH-USD", quantity="0.010", price=str(mid * 2))
    reason = executions(alice, placed.body["order_id"], "REJECTED")[-1]["reason"]
    low, high = (D(x) for x in reason.split("[")[1].rstrip("]").split(", "))
    assert (low, high) == collar_bounds(mid, collar_bps, D("0.01")), reason


def test_a_request_sent_again_trades_nothing_twice_against_another_accounts_order(market):
    """A copy of an applied request (as the OMS sends after a restart) gets its reports again, not a second trade."""
    sent = int(time.time() * 1000)  # ETH-USD's maker stops quoting: alice can only trade with bob
    control = {"symbol": "ETH-USD", "levels": 0, "ts": sent}
    Kafka(market.bootstrap).produce(market.topic("venue.control"), [(b"ETH-USD", json.dumps(control).encode())])
    docs = market_data(market, lambda seen: any(d.get("type") == "book" and d["symbol"] == "ETH-USD" and d["ts"] > sent
                                                and not d["bids"] and not d["asks"] for d in seen))
    price = [d for d in docs if d.get("type") == "mid" and d["symbol"] == "ETH-USD"][-1]["mid"]
    seller, buyer = demo_account(market, "bob"), demo_account(market, "alice")
    ask = seller.order(client_order_id="eth-ask", symbol="ETH-USD", side="SELL", quantity="2.000", price=price)
    executions(seller, ask.body["order_id"], "NEW")
    bid = buyer.order(client_order_id="eth-bid", symbol="ETH-USD", side="BUY", quantity="1.000", price=price)
    bought = executions(buyer, bid.body["order_id"], "FILLED")
    executions(seller, ask.body["order_id"], "PARTIALLY_FILLED")

    # The OMS sends its request again, marked as a copy, as it does after a restart.
    kafka = Kafka(market.bootstrap)

    def alices(record: dict) -> bool:
        return isinstance(record["value"], dict) and record["value"].get("order_id") == bid.body["order_id"]
    request = next(filter(alices, kafka.consume(market.topic("venue.orders"), lambda seen: any(map(alices, seen)))))
    kafka.produce(market.topic("venue.orders"), [(request["key"], json.dumps(request["value"]).encode())],
                  partition=request["partition"], headers=[("atlas-poss-dup", b"Y")])

    def reports(record: dict) -> list[dict]:
        value = record["value"]
        return [r for r in value.get("reports", [value]) if r["order_id"] in (bid.body["order_id"], ask.body["order_id"])]
    def fill_places(seen: list[dict]) -> set[tuple[str, int]]:
        return {(r["report_id"], r["venue_offset"]) for record in seen for r in reports(record) if r["kind"] == "FILL"}
    # Read until the copies come, or a fill at a second place in the venue's log (a second trade).
    answered = kafka.consume(market.topic("venue.reports"), lambda seen: len({o for _, o in fill_places(seen)}) > 1 or any(
        r["headers"].get("atlas-poss-dup") == b"Y" and reports(r) for r in seen))
    fills = fill_places(answered)
    assert len(fills) == 2, f"one fill each for alice and bob, at one place in the venue's log: {sorted(fills)}"
    assert len({offset for _, offset in fills}) == 1
    time.sleep(1)  # the OMS has the copies too; they change nothing
    assert seller.get(f"/api/v1/orders/{ask.body['order_id']}").body["status"] == "PARTIALLY_FILLED"
    assert buyer.get(f"/api/v1/orders/{bid.body['order_id']}/executions").body["executions"] == bought
