"""Rebuilding orders and balances from the trail's execution reports, and comparing them with the live tables."""
from __future__ import annotations

from typing import Any, Callable

import pytest

from atlas.audit.replay import Book, OrderView, compare, live_book, rebuild
from atlas.core.events import ExecType, ExecutionReport, OrdStatus, VenueRequest
from atlas.core.values import OrderType, Side, TimeInForce
from atlas.runtime.reference import instruments
from tests import helpers
from tests.helpers import ALICE_BALANCES, D

OPENINGS = {"alice": {"USD": D("100000"), "BTC": D("1")}, "bob": {"USD": D("5000"), "ETH": D("10")}}


def report(seq: int, exec_type: ExecType, status: OrdStatus, *, order_id: str = "O1", account_id: str = "alice",
           symbol: str | None = "BTC-USD", side: Side | None = Side.BUY, type: OrderType | None = OrderType.LIMIT,
           quantity: str | None = "0.5", price: str | None = "64000", last_qty: str = "0", last_px: str | None = None,
           cum_qty: str = "0", leaves_qty: str | None = None, avg_px: str | None = None) -> ExecutionReport:
    """An execution report; leaves default to quantity - cum for an open order, 0 for a closed one."""
    if leaves_qty is None:
        leaves_qty = "0" if status.is_closed or quantity is None else str(D(quantity) - D(cum_qty))
    return ExecutionReport(
        exec_id=f"{order_id}-{seq}", seq=seq, cause_id=f"cause-{order_id}-{seq}", order_id=order_id,
        client_order_id=f"cl-{order_id}", account_id=account_id, symbol=symbol, side=side, type=type,
        time_in_force=TimeInForce.GTC if type is not OrderType.MARKET else TimeInForce.IOC, exec_type=exec_type,
        status=status, quantity=quantity, price=price, last_qty=last_qty, last_px=last_px, cum_qty=cum_qty,
        leaves_qty=leaves_qty, avg_px=avg_px, ts=helpers.T0 + seq,
    )


def new(**kw: Any) -> ExecutionReport:
    """The venue's acknowledgement (seq 2 unless told)."""
    return report(kw.pop("seq", 2), ExecType.NEW, OrdStatus.NEW, **kw)


def trade(seq: int, qty: str, px: str, cum: str, avg: str, *, filled: bool = False, **kw: Any) -> ExecutionReport:
    status = OrdStatus.FILLED if filled else OrdStatus.PARTIALLY_FILLED
    return report(seq, ExecType.TRADE, status, last_qty=qty, last_px=px, cum_qty=cum, avg_px=avg, **kw)


def guard_request(order_id: str, guard: str, side: Side = Side.BUY) -> VenueRequest:
    """The OMS's venue request for a market order, carrying the guard price it reserved at."""
    return VenueRequest(request="new", request_id=f"{order_id}-1", order_id=order_id, account_id="alice",
                        symbol="BTC-USD", side=side, type=OrderType.MARKET, time_in_force=TimeInForce.IOC,
                        quantity="0.5", price=None, limit_guard=guard, ts=helpers.T0)


def books(reports: list[ExecutionReport], requests: list[VenueRequest] = ()) -> dict[str, Book]:
    return rebuild(reports, requests, OPENINGS, instruments())


# -- rebuild ---------------------------------------------------------------------------------------


def test_rebuild_resting_limit_buy_reserves_leaves_at_limit_price():
    book = books([report(1, ExecType.PENDING_NEW, OrdStatus.PENDING_NEW), new()])["alice"]
    assert book.balances == {"USD": (D("68000"), D("32000")), "BTC": (D("1"), D("0"))}
    assert book.orders == {"O1": OrderView("NEW", D("0.5"), D("64000"), D("0"), D("0.5"), None)}


def test_rebuild_pending_new_buy_already_reserves():
    book = books([report(1, ExecType.PENDING_NEW, OrdStatus.PENDING_NEW)])["alice"]
    assert book.balances["USD"] == (D("68000"), D("32000"))


def test_rebuild_partial_fill_moves_totals_and_reserves_leaves():
    book = books([new(), trade(3, "0.2", "63900", cum="0.2", avg="63900")])["alice"]
    # USD total 100000 - 0.2 * 63900 = 87220, of which 0.3 * 64000 = 19200 still held.
    assert book.balances == {"USD": (D("68020"), D("19200")), "BTC": (D("1.2"), D("0"))}
    assert book.orders["O1"] == OrderView("PARTIALLY_FILLED", D("0.5"), D("64000"), D("0.2"), D("0.3"), D("63900"))


def test_rebuild_partial_fill_then_fill_moves_totals_by_each_fill_and_releases():
    book = books([new(), trade(3, "0.2", "63900", cum="0.2", avg="63900"),
                  trade(4, "0.3", "64000", cum="0.5", avg="63960", filled=True)])["alice"]
    # USD: 100000 - 12780 - 19200; BTC: 1 + 0.2 + 0.3.
    assert book.balances == {"USD": (D("68020"), D("0")), "BTC": (D("1.5"), D("0"))}
    assert book.orders["O1"].status == "FILLED" and book.orders["O1"].leaves == 0


def test_rebuild_resting_sell_reserves_base_leaves():
    book = books([new(side=Side.SELL, quantity="0.4", price="70000")])["alice"]
    assert book.balances == {"BTC": (D("0.6"), D("0.4")), "USD": (D("100000"), D("0"))}


def test_rebuild_sell_fill_debits_base_and_credits_quote():
    book = books([new(side=Side.SELL, quantity="0.4", price="70000"),
                  trade(3, "0.1", "70100", cum="0.1", avg="70100", side=Side.SELL, quantity="0.4", price="70000")])
    assert book["alice"].balances == {"BTC": (D("0.6"), D("0.3")), "USD": (D("107010"), D("0"))}


def test_rebuild_market_buy_reserves_leaves_at_venue_request_guard():
    reports = [new(order_id="M1", type=OrderType.MARKET, price=None)]
    book = books(reports, [guard_request("M1", "71500")])["alice"]
    assert book.balances["USD"] == (D("64250"), D("35750"))


def test_rebuild_market_buy_partial_fill_holds_rest_at_guard():
    reports = [new(order_id="M1", type=OrderType.MARKET, price=None),
               trade(3, "0.1", "65010", cum="0.1", avg="65010", order_id="M1", type=OrderType.MARKET, price=None)]
    book = books(reports, [guard_request("M1", "71500")])["alice"]
    # USD total 100000 - 6501 = 93499, of which 0.4 * 71500 = 28600 held.
    assert book.balances == {"USD": (D("64899"), D("28600")), "BTC": (D("1.1"), D("0"))}


def test_rebuild_market_buy_without_its_venue_request_reserves_nothing():
    book = books([new(order_id="M1", type=OrderType.MARKET, price=None)])["alice"]
    assert book.balances["USD"] == (D("100000"), D("0"))


def test_rebuild_market_sell_reserves_base_not_guard():
    reports = [new(order_id="M1", type=OrderType.MARKET, price=None, side=Side.SELL)]
    book = books(reports, [guard_request("M1", "58500", side=Side.SELL)])["alice"]
    assert book.balances == {"BTC": (D("0.5"), D("0.5")), "USD": (D("100000"), D("0"))}


def test_rebuild_canceled_order_releases_reservation():
    book = books([new(), report(3, ExecType.PENDING_CANCEL, OrdStatus.PENDING_CANCEL),
                  report(4, ExecType.CANCELED, OrdStatus.CANCELED)])["alice"]
    assert book.balances["USD"] == (D("100000"), D("0"))
    assert book.orders["O1"].status == "CANCELED" and book.orders["O1"].leaves == 0


def test_rebuild_pending_cancel_still_reserves():
    book = books([new(), report(3, ExecType.PENDING_CANCEL, OrdStatus.PENDING_CANCEL)])["alice"]
    assert book.balances["USD"] == (D("68000"), D("32000"))


def test_rebuild_partially_filled_then_canceled_keeps_fill_releases_rest():
    book = books([new(), trade(3, "0.2", "63900", cum="0.2", avg="63900"),
                  report(4, ExecType.CANCELED, OrdStatus.CANCELED, cum_qty="0.2", avg_px="63900")])["alice"]
    assert book.balances == {"USD": (D("87220"), D("0")), "BTC": (D("1.2"), D("0"))}


def test_rebuild_rejected_order_holds_nothing():
    book = books([report(1, ExecType.REJECTED, OrdStatus.REJECTED)])["alice"]
    assert book.balances["USD"] == (D("100000"), D("0"))
    assert book.orders["O1"].status == "REJECTED"


def test_rebuild_duplicate_reports_counted_once():
    fill = trade(3, "0.2", "63900", cum="0.2", avg="63900")
    once = books([new(), fill])
    assert books([new(), new(), fill, fill, fill]) == once
    assert once["alice"].balances["BTC"] == (D("1.2"), D("0"))


def test_rebuild_same_seq_twice_keeps_first_report():
    # Same (order_id, seq) is one report delivered twice; a second body under it is not applied.
    other = trade(3, "0.4", "63000", cum="0.4", avg="63000")
    book = books([new(), trade(3, "0.2", "63900", cum="0.2", avg="63900"), other])["alice"]
    assert book.balances["BTC"] == (D("1.2"), D("0"))


def test_rebuild_reports_out_of_seq_order_latest_seq_wins():
    reports = [new(), trade(3, "0.2", "63900", cum="0.2", avg="63900"),
               trade(4, "0.3", "64000", cum="0.5", avg="63960", filled=True)]
    assert books(list(reversed(reports))) == books(reports)
    assert books(list(reversed(reports)))["alice"].orders["O1"].status == "FILLED"


def test_rebuild_seq_zero_reports_ignored():
    unknown = report(0, ExecType.CANCEL_REJECTED, OrdStatus.REJECTED, order_id="Onope", symbol=None, side=None,
                     type=None, quantity=None, price=None)
    assert books([unknown]) == {}
    assert books([new(), unknown]) == books([new()])


def test_rebuild_accounts_kept_apart():
    found = books([new(), new(order_id="E1", account_id="bob", symbol="ETH-USD", quantity="2", price="3000")])
    assert found["alice"].balances["USD"] == (D("68000"), D("32000"))
    assert found["bob"].balances == {"USD": (D("-1000"), D("6000")), "ETH": (D("10"), D("0"))}
    assert set(found["bob"].orders) == {"E1"}


def test_rebuild_account_without_opening_starts_from_zero():
    found = books([new(account_id="carol")])
    assert found["carol"].balances == {"USD": (D("-32000"), D("32000"))}


# -- compare ---------------------------------------------------------------------------------------

VIEW = OrderView("NEW", D("0.5"), D("64000"), D("0"), D("0.5"), None)


def same_book() -> Book:
    return Book({"O1": VIEW}, {"USD": (D("68000"), D("32000")), "BTC": (D("1"), D("0"))})


def test_compare_equal_books_lists_nothing():
    assert compare({"alice": same_book()}, {"alice": same_book()}) == []
    assert compare({}, {}) == []


def test_compare_equal_values_written_differently_lists_nothing():
    live = Book({"O1": OrderView("NEW", D("0.50"), D("64000.00"), D("0"), D("0.5000"), None)},
                {"USD": (D("68000.0"), D("32000.00")), "BTC": (D("1.0"), D("0"))})
    assert compare({"alice": same_book()}, {"alice": live}) == []


def test_compare_balance_differs_lists_it():
    live = same_book()
    live.balances["USD"] = (D("67000"), D("33000"))
    assert compare({"alice": same_book()}, {"alice": live}) == [
        "alice USD: trail gives available 68000 reserved 32000, the live table 67000 and 33000"]


def test_compare_asset_on_one_side_only_is_compared_with_zero():
    live = same_book()
    live.balances["ETH"] = (D("5"), D("0"))
    assert compare({"alice": same_book()}, {"alice": live}) == [
        "alice ETH: trail gives available 0 reserved 0, the live table 5 and 0"]


def test_compare_order_missing_from_trail_lists_it():
    live = same_book()
    live.orders["O2"] = VIEW
    assert compare({"alice": same_book()}, {"alice": live}) == ["alice order O2: in the live table, not in the trail"]


def test_compare_open_order_missing_from_live_lists_it():
    mine = same_book()
    mine.orders["O2"] = VIEW
    assert compare({"alice": mine}, {"alice": same_book()}) == ["alice order O2: open in the trail, not in the live table"]


def test_compare_closed_order_missing_from_live_is_archived_not_a_problem():
    mine = same_book()
    mine.orders["O2"] = OrderView("FILLED", D("0.5"), D("64000"), D("0.5"), D("0"), D("64000"))
    assert compare({"alice": mine}, {"alice": same_book()}) == []


def test_compare_order_status_changed_lists_it():
    live = same_book()
    live.orders["O1"] = OrderView("CANCELED", D("0.5"), D("64000"), D("0"), D("0"), None)
    problems = compare({"alice": same_book()}, {"alice": live})
    assert len(problems) == 1
    assert problems[0].startswith("alice order O1: trail gives ") and "CANCELED" in problems[0]


def test_compare_account_on_one_side_lists_all_it_holds():
    problems = compare({"alice": same_book()}, {})
    assert problems == [
        "alice BTC: trail gives available 1 reserved 0, the live table 0 and 0",
        "alice USD: trail gives available 68000 reserved 32000, the live table 0 and 0",
        "alice order O1: open in the trail, not in the live table",
    ]


# -- rebuild against the OMS's own state -----------------------------------------------------------


class Recorder(helpers.Book):
    """The OMS driven through the pure core, keeping every execution report and venue request it emitted."""

    def __init__(self) -> None:
        super().__init__()
        self.reports: list[ExecutionReport] = []
        self.requests: list[VenueRequest] = []

    def _store(self, outcome):
        self.reports += outcome.reports
        self.requests += outcome.venue
        return super()._store(outcome)

    def differences(self) -> list[str]:
        """compare() of what the reports rebuild and what the OMS holds."""
        openings = {"alice": {asset: D(amount) for asset, amount in ALICE_BALANCES.items()}}
        rebuilt = rebuild(self.reports, self.requests, openings, instruments(), accounts=["alice"])
        return compare(rebuilt, {"alice": live_book(self.account, self.orders.values())})


def test_live_book_holds_orders_and_balances_of_oms_state():
    oms = Recorder()
    order = oms.place()
    book = live_book(oms.account, oms.orders.values())
    assert book.orders == {order.order_id: OrderView("NEW", D("0.5"), D("64000"), D("0"), D("0.5"), None)}
    assert book.balances["USD"] == (D("968000"), D("32000"))
    assert book.balances["BTC"] == (D("10"), D("0"))


def _partial_then_fill(oms: Recorder) -> None:
    order = oms.place()
    oms.fill(order.order_id, "0.2", "63900")
    oms.fill(order.order_id, "0.3", "63950")


def _sell_partial(oms: Recorder) -> None:
    oms.fill(oms.place(side="SELL", price="66000").order_id, "0.1", "66000")


def _market_buy_partial(oms: Recorder) -> None:
    oms.fill(oms.place(type="MARKET", time_in_force="IOC").order_id, "0.1", "65010")


def _market_buy_beyond_guard(oms: Recorder) -> None:
    oms.fill(oms.place(type="MARKET", time_in_force="IOC").order_id, "0.1", "80000")


def _market_sell_expired(oms: Recorder) -> None:
    order = oms.place(type="MARKET", side="SELL", time_in_force="IOC")
    oms.fill(order.order_id, "0.2", "64000")
    oms.venue(order.order_id, "EXPIRED")


def _partial_then_canceled(oms: Recorder) -> None:
    order = oms.place()
    oms.fill(order.order_id, "0.2", "63900")
    oms.command(helpers.cancel(order.order_id))
    oms.venue(order.order_id, "CANCELED")


def _pending_cancel(oms: Recorder) -> None:
    oms.command(helpers.cancel(oms.place().order_id))


def _rejected_for_funds(oms: Recorder) -> None:
    oms.submit(quantity="99")


def _rejected_by_venue(oms: Recorder) -> None:
    oms.venue(oms.submit().order_id, "REJECTED", reason="closed")


def _replaced_up(oms: Recorder) -> None:
    order = oms.place()
    oms.command(helpers.replace(order.order_id, quantity="0.8", price="64500"))
    oms.venue(order.order_id, "REPLACED")


def _replace_rejected(oms: Recorder) -> None:
    order = oms.place()
    oms.command(helpers.replace(order.order_id, quantity="0.8", price="64500"))
    oms.venue(order.order_id, "REPLACE_REJECTED")


def _pending_replace_down(oms: Recorder) -> None:
    oms.command(helpers.replace(oms.place().order_id, quantity="0.3", price="63000"))


SCENARIOS: dict[str, Callable[[Recorder], None]] = {
    "limit buy partial then fill": _partial_then_fill,
    "sell partial": _sell_partial,
    "market buy partial": _market_buy_partial,
    "market buy beyond its guard": _market_buy_beyond_guard,
    "market sell expired": _market_sell_expired,
    "partial then canceled": _partial_then_canceled,
    "pending cancel": _pending_cancel,
    "rejected for funds": _rejected_for_funds,
    "rejected by the venue": _rejected_by_venue,
    "replaced to more": _replaced_up,
    "replace rejected": _replace_rejected,
    "pending replace to less": _pending_replace_down,
}


@pytest.mark.parametrize("scenario", SCENARIOS.values(), ids=SCENARIOS.keys())
def test_rebuild_from_oms_reports_matches_live_book(scenario):
    oms = Recorder()
    scenario(oms)
    assert oms.reports
    assert oms.differences() == []


def test_rebuild_from_oms_reports_replayed_twice_matches_live_book():
    oms = Recorder()
    _partial_then_fill(oms)
    oms.reports += oms.reports  # an at_least_once redelivery of every report
    assert oms.differences() == []


# The two tests below fail: they show differences between the trail and the live table where there are none.


def test_rebuild_pending_replace_to_more_reserves_like_oms():
    # The OMS holds the larger of the old and the pending terms while a replace is pending
    # (oms._required); the PENDING_REPLACE report carries the old terms, the venue request the new.
    oms = Recorder()
    oms.command(helpers.replace(oms.place().order_id, quantity="0.8", price="64500"))
    assert oms.account.balance("USD").reserved == D("51600")
    assert oms.differences() == []


def test_rebuild_account_with_only_seq_zero_reports_matches_live_book():
    # A cancel of an unknown order emits a seq-0 report and stores the account (agents.oms saves a
    # fresh account): the live table has its balances, and the rebuild, told of the account, its openings.
    oms = Recorder()
    oms.command(helpers.cancel("O-unknown"))
    assert [r.seq for r in oms.reports] == [0]
    assert oms.differences() == []
