"""One symbol's venue: requests in decimals become engine calls, engine events become the OMS's reports."""
from __future__ import annotations

import json
from decimal import Decimal

import pytest

from atlas.core.events import VenueReportKind, VenueRequest
from atlas.core.values import OrderType, Side, TimeInForce
from atlas.venue.exchange import SymbolVenue
from atlas.venue.market_maker import MarketParams
from tests.book_model import assert_book_invariants
from tests.helpers import QUIET, T0, Book as OmsBook, D, account, btc_venue, instruments, submit, venue_request

K = VenueReportKind
BTC = instruments()["BTC-USD"]
venue, request = btc_venue, venue_request


def kinds(out) -> list[tuple[str, VenueReportKind]]:
    return [(r.order_id, r.kind) for r in out.reports]


def test_order_that_does_not_cross_is_accepted_and_rests():
    v = venue()
    out = v.handle(request("o1"))
    assert kinds(out) == [("o1", K.ACCEPTED)] and out.reports[0].request_id == "o1-new"
    assert v.book.depth() == ([(6_400_000, 100)], [])


def test_tick_quotes_the_ladder_around_the_mid():
    v = venue()
    v.tick(T0)
    bids, asks = v.book.depth()
    assert [p for p, _ in asks] == [6_503_250, 6_503_900, 6_504_550] and asks[0][1] == 100
    assert [p for p, _ in bids] == [6_496_750, 6_496_100, 6_495_450]
    v.tick(T0 + 250)  # the old ladder is replaced, not added to
    assert len(v.book.orders) == 6
    assert_book_invariants(v.book)


def test_buy_crossing_the_maker_fills_at_its_price_and_only_the_client_gets_reports():
    v = venue()
    v.tick(T0)
    out = v.handle(request("o1", price="65100.00", quantity="0.015"))
    assert kinds(out) == [("o1", K.ACCEPTED), ("o1", K.FILL), ("o1", K.FILL)]
    assert [(r.last_qty, r.last_px) for r in out.reports[1:]] == [(D("0.01"), D("65032.50")), (D("0.005"), D("65039.00"))]
    assert [(t.price, t.quantity, t.aggressor) for t in out.trades] == [
        (D("65032.50"), D("0.01"), Side.BUY), (D("65039.00"), D("0.005"), Side.BUY)]
    assert len({r.report_id for r in out.reports}) == 3


def test_two_clients_trading_both_get_fills_and_the_maker_report_has_no_request_id():
    v = venue()
    v.handle(request("bob-1", account_id="bob", side=Side.SELL, price="64500.00"))
    out = v.handle(request("alice-1", price="64500.00"))
    fills = {(r.order_id, r.account_id, r.request_id) for r in out.reports if r.kind is K.FILL}
    assert fills == {("bob-1", "bob", None), ("alice-1", "alice", "alice-1-new")}


def test_ioc_remainder_is_canceled_and_market_order_respects_its_guard():
    v = venue()
    v.tick(T0)
    ioc = v.handle(request("o1", tif=TimeInForce.IOC, price="65032.50", quantity="0.02"))
    assert kinds(ioc)[-1] == ("o1", K.CANCELED) and ioc.reports[-1].reason == "UNFILLED"
    market = v.handle(request("o2", order_type=OrderType.MARKET, tif=TimeInForce.IOC, price=None, quantity="0.05",
                              guard="65039.00"))
    assert sum(r.last_qty for r in market.reports if r.kind is K.FILL) == D("0.01")
    assert max(r.last_px for r in market.reports if r.kind is K.FILL) <= D("65039.00")


def test_off_grid_order_is_rejected_by_the_venue():
    out = venue().handle(request("o1", quantity="0.00005"))
    assert kinds(out) == [("o1", K.REJECTED)] and "INVALID_GRID" in out.reports[0].reason


def test_cancel_and_replace_of_unknown_order_are_rejected_too_late():
    v = venue()
    assert kinds(v.handle(request("nope", "cancel"))) == [("nope", K.CANCEL_REJECTED)]
    assert kinds(v.handle(request("nope", "replace"))) == [("nope", K.REPLACE_REJECTED)]


def test_replace_reports_the_new_terms_then_cancel_removes_the_order():
    v = venue()
    v.handle(request("o1"))
    out = v.handle(request("o1", "replace", quantity="0.02", price="64100.00"))
    assert kinds(out) == [("o1", K.REPLACED)]
    assert (out.reports[0].quantity, out.reports[0].price) == (D("0.02"), D("64100.00"))
    assert kinds(v.handle(request("o1", "cancel"))) == [("o1", K.CANCELED)] and not v.book.orders


def test_halted_symbol_rejects_orders_and_quotes_nothing():
    v = venue()
    v.tick(T0)
    v.set_params(QUIET.updated(halted=True))
    assert v.handle(request("o1")).reports[0].reason == "HALTED"
    v.tick(T0 + 250)
    assert v.book.depth() == ([], [])


def test_day_orders_expire_when_a_tick_starts_a_new_utc_day():
    v = venue()
    v.tick(T0)
    v.handle(request("o1", tif=TimeInForce.DAY))
    v.handle(request("o2"))
    same_day = v.tick(T0 + 1000)
    assert not [r for r in same_day.reports if r.kind is K.EXPIRED]
    next_day = v.tick(T0 + 86_400_000)
    assert kinds(next_day) == [("o1", K.EXPIRED)] and "o2" in v.book.orders


@pytest.mark.parametrize("seed", [1, 2])
def test_same_seed_and_input_give_the_same_reports(seed):
    params = MarketParams(volatility=Decimal("0.002"), spread_bps=Decimal(4), liquidity=50, levels=5)

    def session() -> list:
        v, reports = venue(params, seed), []
        for n in range(40):
            reports += v.tick(T0 + 250 * n).reports
            side = Side.BUY if n % 2 else Side.SELL
            price = "65010.00" if side is Side.BUY else "64990.00"
            reports += v.handle(request(f"o{n}", side=side, price=price, quantity="0.0300")).reports
        return reports

    first, second = session(), session()
    assert first == second and any(r.kind is K.FILL for r in first)


def test_oms_order_filled_by_the_maker_settles_exact_balances():
    """The OMS core and the venue together: alice's buy fills against the maker's asks."""
    oms = OmsBook(account(balances={"USD": "100000", "BTC": "0"}))
    v = venue()
    v.tick(T0)
    outcome = oms.command(submit(quantity="0.015", price="65100.00"))
    (venue_request,) = outcome.venue
    for report in v.handle(venue_request).reports:
        oms.report(report)
    order = oms.order(venue_request.order_id)
    assert order.status.value == "FILLED" and order.filled_quantity == D("0.015")
    cost = D("0.01") * D("65032.50") + D("0.005") * D("65039.00")
    assert order.avg_price == (cost / D("0.015")).quantize(D("1e-10")).normalize()
    assert oms.balance("USD") == (D("100000") - cost, 0) and oms.balance("BTC") == (D("0.015"), 0)
    last = oms.executions(order.order_id)[-1]
    assert (last.cum_qty, last.leaves_qty) == (D("0.015"), 0)
