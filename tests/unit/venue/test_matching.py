"""The matching engine: examples of each rule, and properties over random call sequences."""
from __future__ import annotations

from collections import defaultdict

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atlas.core.values import OrderType, Side, TimeInForce
from atlas.venue.matching import (
    Accepted, Book, CancelReason, Canceled, CancelRejected, Expired, RejectReason, Rejected, Replaced, ReplaceRejected,
    Trade,
)
from tests.book_model import ReferenceBook, assert_book_invariants

BUY, SELL = Side.BUY, Side.SELL
LIMIT, MARKET = OrderType.LIMIT, OrderType.MARKET
GTC, DAY, IOC, FOK = TimeInForce.GTC, TimeInForce.DAY, TimeInForce.IOC, TimeInForce.FOK


class Checked(Book):
    """A Book that checks its invariants after every call."""

    def __getattribute__(self, name):
        attr = super().__getattribute__(name)
        if name in ("submit", "cancel", "replace", "expire_day"):
            def checked(*args, **kwargs):
                events = attr(*args, **kwargs)
                assert_book_invariants(self)
                return events
            return checked
        return attr


def limit(book: Book, order_id: str, side: Side, quantity: int, price: int, account: str = "a",
          tif: TimeInForce = GTC) -> list:
    return book.submit(order_id, account, side, LIMIT, tif, quantity, price)


def trades(events: list) -> list[tuple[str, str, int, int]]:
    """(maker, taker, lots, price) of each trade."""
    return [(e.maker_order_id, e.taker_order_id, e.quantity, e.price) for e in events if isinstance(e, Trade)]


# -- resting and matching ------------------------------------------------------------------


def test_limit_order_that_does_not_cross_rests_and_is_accepted():
    book = Checked("BTC-USD")
    assert limit(book, "b1", BUY, 5, 100) == [Accepted("b1", "a")]
    assert book.best_bid() == 100 and book.depth() == ([(100, 5)], [])


def test_crossing_order_trades_at_maker_price_in_price_then_time_priority():
    book = Checked("BTC-USD")
    limit(book, "s1", SELL, 2, 101, "m1")
    limit(book, "s2", SELL, 2, 100, "m2")
    limit(book, "s3", SELL, 2, 100, "m3")
    events = limit(book, "b1", BUY, 5, 101, "t")
    assert trades(events) == [("s2", "b1", 2, 100), ("s3", "b1", 2, 100), ("s1", "b1", 1, 101)]
    assert book.depth() == ([], [(101, 1)])
    assert events[-1].taker_leaves == 0 and events[-1].maker_leaves == 1


def test_partial_fill_rests_the_remainder_at_its_limit():
    book = Checked("BTC-USD")
    limit(book, "s1", SELL, 2, 100, "m")
    events = limit(book, "b1", BUY, 5, 100, "t")
    assert trades(events) == [("s1", "b1", 2, 100)]
    assert book.depth() == ([(100, 3)], []) and book.orders["b1"].filled == 2


def test_market_order_takes_liquidity_and_cancels_the_unfilled_rest():
    book = Checked("BTC-USD")
    limit(book, "s1", SELL, 2, 100, "m")
    limit(book, "s2", SELL, 2, 105, "m")
    events = book.submit("b1", "t", BUY, MARKET, IOC, 6)
    assert trades(events) == [("s1", "b1", 2, 100), ("s2", "b1", 2, 105)]
    assert events[-1] == Canceled("b1", "t", 2, CancelReason.UNFILLED)
    assert "b1" not in book.orders


def test_market_order_with_a_guard_price_trades_no_worse_than_it():
    book = Checked("BTC-USD")
    limit(book, "s1", SELL, 2, 100, "m")
    limit(book, "s2", SELL, 2, 105, "m")
    events = book.submit("b1", "t", BUY, MARKET, IOC, 4, 102)
    assert trades(events) == [("s1", "b1", 2, 100)] and events[-1].quantity == 2


def test_ioc_never_rests():
    book = Checked("BTC-USD")
    limit(book, "s1", SELL, 1, 100, "m")
    events = limit(book, "b1", BUY, 3, 100, "t", IOC)
    assert trades(events) == [("s1", "b1", 1, 100)]
    assert events[-1] == Canceled("b1", "t", 2, CancelReason.UNFILLED) and not book.bids


def test_fok_that_cannot_fill_completely_trades_nothing():
    book = Checked("BTC-USD")
    limit(book, "s1", SELL, 2, 100, "m")
    events = limit(book, "b1", BUY, 3, 100, "t", FOK)
    assert events == [Accepted("b1", "t"), Canceled("b1", "t", 3, CancelReason.FOK_UNFILLABLE)]
    assert book.depth() == ([], [(100, 2)])


def test_fok_that_can_fill_completely_fills_across_levels():
    book = Checked("BTC-USD")
    limit(book, "s1", SELL, 2, 100, "m")
    limit(book, "s2", SELL, 2, 101, "m")
    events = limit(book, "b1", BUY, 3, 101, "t", FOK)
    assert sum(q for _, _, q, _ in trades(events)) == 3 and not isinstance(events[-1], Canceled)


# -- self-trade prevention ----------------------------------------------------------------


def test_self_trade_cancels_the_incoming_order_after_what_it_traded_before():
    book = Checked("BTC-USD")
    limit(book, "s1", SELL, 1, 100, "other")
    limit(book, "s2", SELL, 1, 100, "me")
    limit(book, "s3", SELL, 1, 100, "other")
    events = limit(book, "b1", BUY, 3, 100, "me")
    assert trades(events) == [("s1", "b1", 1, 100)]
    assert events[-1] == Canceled("b1", "me", 2, CancelReason.SELF_TRADE)
    assert set(book.orders) == {"s2", "s3"}


def test_fok_counts_liquidity_only_up_to_its_own_resting_order():
    book = Checked("BTC-USD")
    limit(book, "s1", SELL, 1, 100, "me")
    limit(book, "s2", SELL, 5, 100, "other")
    events = limit(book, "b1", BUY, 2, 100, "me", FOK)
    assert events[-1].reason is CancelReason.FOK_UNFILLABLE and not trades(events)


# -- cancel and replace ---------------------------------------------------------------------


def test_cancel_removes_the_order_and_reports_its_leaves():
    book = Checked("BTC-USD")
    limit(book, "b1", BUY, 5, 100)
    limit(book, "s1", SELL, 2, 100, "m")
    assert book.cancel("b1") == [Canceled("b1", "a", 3, CancelReason.REQUESTED)]
    assert not book.bids and book.cancel("b1") == [CancelRejected("b1", RejectReason.UNKNOWN_ORDER)]


def test_cancelled_order_is_skipped_by_later_matching():
    book = Checked("BTC-USD")
    limit(book, "s1", SELL, 1, 100, "m")
    limit(book, "s2", SELL, 1, 100, "m")
    book.cancel("s1")
    assert trades(limit(book, "b1", BUY, 1, 100, "t")) == [("s2", "b1", 1, 100)]


def test_replace_down_in_quantity_keeps_time_priority():
    book = Checked("BTC-USD")
    limit(book, "s1", SELL, 5, 100, "m1")
    limit(book, "s2", SELL, 5, 100, "m2")
    assert book.replace("s1", 3, 100) == [Replaced("s1", "m1", 100, 3, 3, True)]
    assert trades(limit(book, "b1", BUY, 1, 100, "t")) == [("s1", "b1", 1, 100)]


@pytest.mark.parametrize("quantity, price", [(6, 100), (5, 99)])
def test_replace_up_in_quantity_or_to_a_new_price_loses_time_priority(quantity, price):
    book = Checked("BTC-USD")
    limit(book, "s1", SELL, 5, 100, "m1")
    limit(book, "s2", SELL, 5, price, "m2")
    assert book.replace("s1", quantity, price)[0].kept_priority is False
    assert trades(limit(book, "b1", BUY, 1, 100, "t")) == [("s2", "b1", 1, price)]


def test_replace_to_a_crossing_price_trades_at_once():
    book = Checked("BTC-USD")
    limit(book, "s1", SELL, 2, 101, "m")
    limit(book, "b1", BUY, 3, 99, "t")
    events = book.replace("b1", 3, 101)
    assert events[0] == Replaced("b1", "t", 101, 3, 3, False)
    assert trades(events) == [("s1", "b1", 2, 101)] and book.depth() == ([(101, 1)], [])


def test_replace_counts_fills_so_far_against_the_new_quantity():
    book = Checked("BTC-USD")
    limit(book, "b1", BUY, 5, 100)
    limit(book, "s1", SELL, 2, 100, "m")
    assert book.replace("b1", 2, 100) == [ReplaceRejected("b1", RejectReason.INVALID_QUANTITY)]
    assert book.replace("b1", 4, 100) == [Replaced("b1", "a", 100, 4, 2, True)]


def test_replace_of_unknown_order_is_rejected():
    assert Checked("X").replace("nope", 1, 1) == [ReplaceRejected("nope", RejectReason.UNKNOWN_ORDER)]


def test_expire_day_removes_day_orders_only():
    book = Checked("BTC-USD")
    limit(book, "b1", BUY, 1, 100, tif=DAY)
    limit(book, "b2", BUY, 1, 99)
    limit(book, "s1", SELL, 2, 105, tif=DAY)
    assert book.expire_day() == [Expired("b1", "a", 1), Expired("s1", "a", 2)]
    assert set(book.orders) == {"b2"}


# -- rejects ---------------------------------------------------------------------------------


@pytest.mark.parametrize("order_type, quantity, price, reason", [
    (LIMIT, 0, 100, RejectReason.INVALID_QUANTITY),
    (LIMIT, 11, 100, RejectReason.INVALID_QUANTITY),
    (LIMIT, 1, None, RejectReason.INVALID_PRICE),
    (LIMIT, 1, 0, RejectReason.INVALID_PRICE),
    (MARKET, 1, -5, RejectReason.INVALID_PRICE),
])
def test_invalid_new_order_is_rejected(order_type, quantity, price, reason):
    book = Checked("X", min_lots=1, max_lots=10)
    assert book.submit("o", "a", BUY, order_type, GTC, quantity, price) == [Rejected("o", "a", reason)]


def test_duplicate_order_id_and_halted_book_are_rejected():
    book = Checked("X")
    limit(book, "o", BUY, 1, 100)
    assert limit(book, "o", BUY, 1, 100) == [Rejected("o", "a", RejectReason.DUPLICATE_ORDER)]
    book.halted = True
    assert limit(book, "p", BUY, 1, 100) == [Rejected("p", "a", RejectReason.HALTED)]
    assert book.cancel("o")[0].reason is CancelReason.REQUESTED  # cancels still work when halted


# -- properties -------------------------------------------------------------------------------

ACCOUNTS = ["a", "b", "c"]
op = st.one_of(
    st.tuples(st.just("submit"), st.sampled_from(ACCOUNTS), st.sampled_from(Side), st.sampled_from(OrderType),
              st.sampled_from(TimeInForce), st.integers(1, 12), st.one_of(st.none(), st.integers(95, 105))),
    st.tuples(st.just("cancel"), st.integers(0, 40)),
    st.tuples(st.just("replace"), st.integers(0, 40), st.integers(1, 12), st.integers(95, 105)),
    st.tuples(st.just("expire")),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(op, max_size=60))
def test_engine_matches_the_reference_and_keeps_every_invariant(ops):
    book, ref = Checked("X", min_lots=1, max_lots=10), ReferenceBook(min_lots=1, max_lots=10)
    quantity: dict[str, int] = {}
    filled: dict[str, int] = defaultdict(int)
    for n, (kind, *args) in enumerate(ops):
        if kind == "submit":
            account, side, order_type, tif, lots, price = args
            oid = f"o{n}"
            got = book.submit(oid, account, side, order_type, tif, lots, price)
            want = ref.submit(oid, account, side, order_type, tif, lots, price)
            if isinstance(got[0], Accepted):
                quantity[oid] = lots
            traded = sum(e.quantity for e in got if isinstance(e, Trade))
            if tif is FOK:
                assert traded in (0, lots), f"FOK {oid} traded {traded} of {lots}"
            if tif in (IOC, FOK) or order_type is MARKET:
                assert oid not in book.orders, f"{tif.value} {order_type.value} {oid} rests"
        elif kind == "cancel":
            oid = f"o{args[0]}"
            got, want = book.cancel(oid), ref.cancel(oid)
        elif kind == "replace":
            oid, lots, price = f"o{args[0]}", args[1], args[2]
            got, want = book.replace(oid, lots, price), ref.replace(oid, lots, price)
            if got and isinstance(got[0], Replaced):
                quantity[oid] = lots
        else:
            got, want = book.expire_day(), ref.expire_day()
        assert got == want, f"step {n} {kind} {args}: engine {got} != reference {want}"
        for trade in (e for e in got if isinstance(e, Trade)):
            assert trade.maker_account_id != trade.taker_account_id, "self trade"
            filled[trade.maker_order_id] += trade.quantity
            filled[trade.taker_order_id] += trade.quantity
    for oid, lots in filled.items():
        assert lots <= quantity[oid], f"{oid} filled {lots} of {quantity[oid]}"
    for order in book.orders.values():
        assert order.filled == filled.get(order.order_id, 0), f"{order.order_id}: fills do not add up"
