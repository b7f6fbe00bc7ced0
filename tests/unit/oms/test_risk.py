"""Pre-trade risk: one test per reject code, the collar, reservations and the throttle.

Defaults (helpers): alice holds 1,000,000 USD and 10 BTC; BTC-USD trades on a 0.01 tick and
0.0001 lot, reference 65000; a 1000 bps collar puts limit prices in [58500, 71500].
"""
from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atlas.core.values import OrderType, Side
from atlas.oms.risk import RejectCode, Reservation, check_order, collar_bounds, reservation_for, take_throttle_token
from atlas.oms.state import AccountState, Balance
from tests.helpers import D, T0, account, instruments, limits, market, submit

BTC = instruments()["BTC-USD"]


def code_of(order, account_state=None, market_state=None) -> RejectCode | None:
    reject = check_order(order, account_state or account(), market_state or market())
    return None if reject is None else reject.code


# -- a passing order ---------------------------------------------------------------------


def test_check_order_when_every_limit_holds_returns_none():
    assert check_order(submit(), account(), market()) is None


@pytest.mark.parametrize("order", [
    submit(side=Side.SELL, price="66000"),
    submit(type=OrderType.MARKET),
    submit(type=OrderType.MARKET, side=Side.SELL),
    submit(symbol="SOL-USD", quantity="10.5", price="150.125"),
], ids=["limit-sell", "market-buy", "market-sell", "sol-limit-buy"])
def test_check_order_for_other_order_kinds_within_limits_returns_none(order):
    assert check_order(order, account(), market()) is None


# -- one test per reject code ------------------------------------------------------------


def test_check_order_when_global_kill_engaged_rejects_kill_switch_global():
    assert code_of(submit(), market_state=market(global_kill=True)) is RejectCode.KILL_SWITCH_GLOBAL


def test_check_order_when_account_killed_rejects_kill_switch_with_reason():
    killed = account().model_copy(update={"killed": True, "kill_reason": "fat finger"})
    reject = check_order(submit(), killed, market())
    assert reject.code is RejectCode.KILL_SWITCH
    assert "fat finger" in reject.message


def test_check_order_kill_switch_wins_over_later_checks():
    killed = account().model_copy(update={"killed": True})
    assert code_of(submit(symbol="DOGE-USD"), killed) is RejectCode.KILL_SWITCH


def test_check_order_for_unknown_symbol_rejects_unknown_symbol():
    assert code_of(submit(symbol="DOGE-USD")) is RejectCode.UNKNOWN_SYMBOL


def test_check_order_for_restricted_symbol_rejects_symbol_restricted():
    restricted = account(limits=limits(restricted_symbols=["BTC-USD"]))
    assert code_of(submit(), restricted) is RejectCode.SYMBOL_RESTRICTED
    assert code_of(submit(symbol="ETH-USD", price="3200"), restricted) is None


def test_check_order_for_halted_symbol_rejects_symbol_halted():
    assert code_of(submit(), market_state=market(halted=frozenset({"BTC-USD"}))) is RejectCode.SYMBOL_HALTED


@pytest.mark.parametrize("quantity", ["0", "-0.5", "0.00005", "0.50001", "100.0001"],
                         ids=["zero", "negative", "below-lot", "off-lot", "above-instrument-max"])
def test_check_order_for_bad_quantity_rejects_invalid_quantity(quantity):
    # A huge limit so the instrument's own bound is what fails.
    roomy = account(limits=limits(max_order_quantity={}))
    assert code_of(submit(quantity=quantity, price="58500"), roomy) is RejectCode.INVALID_QUANTITY


def test_check_order_for_quantity_below_instrument_min_rejects_invalid_quantity():
    coarse = instruments() | {"BTC-USD": BTC.model_copy(update={"min_quantity": D("0.01")})}
    assert code_of(submit(quantity="0.0099"), market_state=market(instruments=coarse)) is RejectCode.INVALID_QUANTITY


@pytest.mark.parametrize("price", ["64000.001", "0", "-64000"], ids=["off-tick", "zero", "negative"])
def test_check_order_for_bad_price_rejects_invalid_price(price):
    assert code_of(submit(price=price)) is RejectCode.INVALID_PRICE


@pytest.mark.parametrize(("quantity", "price", "expected"), [
    # The wire grammar refuses exponents; a Python caller may still pass such a Decimal.
    (D("1e30"), "64000", RejectCode.INVALID_QUANTITY),
    ("0.5", D("1e30"), RejectCode.INVALID_PRICE),
], ids=["huge-quantity", "huge-price"])
def test_check_order_for_huge_exponent_rejects_instead_of_raising(quantity, price, expected):
    assert code_of(submit(quantity=quantity, price=price)) is expected


def test_check_order_above_account_max_quantity_rejects_max_order_quantity():
    assert code_of(submit(quantity="10.0001", price="64000")) is RejectCode.MAX_ORDER_QUANTITY
    assert code_of(submit(quantity="10", price="64000")) is None


@pytest.mark.parametrize(("price", "expected"), [
    ("58499.99", RejectCode.PRICE_COLLAR),
    ("58500.00", None),
    ("71500.00", None),
    ("71500.01", RejectCode.PRICE_COLLAR),
], ids=["below", "low-edge", "high-edge", "above"])
def test_check_order_price_collar_bounds_both_sides(price, expected):
    assert code_of(submit(price=price)) is expected
    assert code_of(submit(price=price, side=Side.SELL)) is expected


def test_check_order_collar_follows_the_mid_price_over_the_instrument_reference():
    moved = market(reference_prices={"BTC-USD": D("50000")})  # collar [45000, 55000]
    assert code_of(submit(price="64000"), market_state=moved) is RejectCode.PRICE_COLLAR
    assert code_of(submit(price="54000"), market_state=moved) is None


def test_check_order_above_max_notional_rejects_max_order_notional():
    small = account(limits=limits(max_order_notional="100000"))
    assert code_of(submit(quantity="2", price="64000"), small) is RejectCode.MAX_ORDER_NOTIONAL
    assert code_of(submit(quantity="1.5", price="64000"), small) is None  # 96000


def test_check_order_market_order_notional_uses_the_reference_price():
    small = account(limits=limits(max_order_notional="100000"))
    assert code_of(submit(type=OrderType.MARKET, quantity="1.5385"), small) is RejectCode.MAX_ORDER_NOTIONAL  # 100002.5
    assert code_of(submit(type=OrderType.MARKET, side=Side.SELL, quantity="1.5384"), small) is None  # 99996


def test_check_order_at_max_open_orders_rejects_max_open_orders():
    full = account(limits=limits(max_open_orders=2)).model_copy(update={"open_count": 2})
    assert code_of(submit(), full) is RejectCode.MAX_OPEN_ORDERS
    assert code_of(submit(), full.model_copy(update={"open_count": 1})) is None


def test_check_order_buy_beyond_max_position_rejects_position_limit():
    capped = account(limits=limits(max_position={"BTC": "10.4"}))  # holds 10
    assert code_of(submit(quantity="0.5"), capped) is RejectCode.POSITION_LIMIT
    assert code_of(submit(quantity="0.4"), capped) is None
    assert code_of(submit(quantity="5", side=Side.SELL), capped) is None  # sells only reduce the position


def test_check_order_position_limit_counts_open_buys():
    capped = account(limits=limits(max_position={"BTC": "11"})).model_copy(update={"open_buys": {"BTC": D("0.6")}})
    assert code_of(submit(quantity="0.5"), capped) is RejectCode.POSITION_LIMIT
    assert code_of(submit(quantity="0.4"), capped) is None


def test_check_order_buy_beyond_available_quote_rejects_insufficient_funds():
    poor = account(balances={"USD": "31999.99", "BTC": "10"})
    reject = check_order(submit(quantity="0.5", price="64000"), poor, market())
    assert reject.code is RejectCode.INSUFFICIENT_FUNDS
    assert "32000" in reject.message and "USD" in reject.message
    assert code_of(submit(quantity="0.5", price="63999.98"), poor) is None  # 31999.99


def test_check_order_sell_beyond_available_base_rejects_insufficient_funds():
    poor = account(balances={"USD": "0", "BTC": "0.4999"})
    reject = check_order(submit(side=Side.SELL, quantity="0.5"), poor, market())
    assert reject.code is RejectCode.INSUFFICIENT_FUNDS
    assert "BTC" in reject.message
    assert code_of(submit(side=Side.SELL, quantity="0.4999"), poor) is None


def test_check_order_market_buy_needs_funds_at_the_collar_high():
    # 0.5 at the reference (32500) is covered, 0.5 at the collar high (35750) is not.
    poor = account(balances={"USD": "35749.99"})
    assert code_of(submit(type=OrderType.MARKET), poor) is RejectCode.INSUFFICIENT_FUNDS
    assert code_of(submit(type=OrderType.MARKET), account(balances={"USD": "35750"})) is None


def test_check_order_insufficient_funds_counts_only_available_not_reserved():
    held = account().model_copy(update={"balances": {"USD": Balance(available=D("100"), reserved=D("50000"))}})
    assert code_of(submit(), held) is RejectCode.INSUFFICIENT_FUNDS


# -- collar ------------------------------------------------------------------------------


@pytest.mark.parametrize(("reference", "bps", "tick", "low", "high"), [
    ("65000", 1000, "0.01", "58500.00", "71500.00"),
    ("64999.99", 1000, "0.01", "58500.00", "71499.98"),  # raw 58499.991 and 71499.989
    ("150.001", 250, "0.001", "146.251", "153.751"),  # raw 146.250975 and 153.751025
    ("3200.37", 1, "0.01", "3200.05", "3200.69"),  # raw 3200.049963 and 3200.690037
], ids=["round", "btc-uneven", "sol-fine-tick", "one-bp"])
def test_collar_bounds_round_inward_to_the_tick_grid(reference, bps, tick, low, high):
    assert collar_bounds(D(reference), bps, D(tick)) == (D(low), D(high))


def test_collar_bounds_low_never_below_one_tick():
    low, high = collar_bounds(D("0.05"), 100_000, D("0.01"))  # a 1000 % collar
    assert low == D("0.01")
    assert high == D("0.55")


@settings(max_examples=200, deadline=None, derandomize=True)
@given(ticks=st.integers(min_value=1, max_value=10_000_000), bps=st.integers(min_value=1, max_value=100_000),
       tick=st.sampled_from(["0.01", "0.001", "0.5", "1"]))
def test_collar_bounds_for_any_reference_are_on_grid_and_contain_only_prices_inside(ticks, bps, tick):
    tick = D(tick)
    reference = ticks * tick
    low, high = collar_bounds(reference, bps, tick)
    width = reference * bps / Decimal(10_000)
    assert low % tick == 0 and high % tick == 0
    assert low >= max(reference - width, tick) and low - tick < max(reference - width, tick)
    assert high <= reference + width < high + tick


# -- reservations ------------------------------------------------------------------------


def test_reservation_for_limit_buy_holds_quote_at_the_limit_price():
    assert reservation_for(submit(quantity="0.5", price="64000"), BTC, market(), 1000) == Reservation(
        asset="USD", amount=D("32000"), unit_price=D("64000"), limit_guard=None)


def test_reservation_for_market_buy_holds_quote_at_the_collar_high_and_guards_there():
    assert reservation_for(submit(type=OrderType.MARKET, quantity="0.5"), BTC, market(), 1000) == Reservation(
        asset="USD", amount=D("35750"), unit_price=D("71500"), limit_guard=D("71500"))


def test_reservation_for_limit_sell_holds_base_quantity():
    assert reservation_for(submit(side=Side.SELL, quantity="0.5", price="66000"), BTC, market(), 1000) == Reservation(
        asset="BTC", amount=D("0.5"), unit_price=None, limit_guard=None)


def test_reservation_for_market_sell_holds_base_and_guards_at_the_collar_low():
    order = submit(side=Side.SELL, type=OrderType.MARKET, quantity="0.5")
    assert reservation_for(order, BTC, market(), 1000) == Reservation(
        asset="BTC", amount=D("0.5"), unit_price=None, limit_guard=D("58500"))


# -- throttle ----------------------------------------------------------------------------


def _take(account_state: AccountState, now_ms: int) -> AccountState | None:
    token = take_throttle_token(account_state, now_ms)
    if token is None:
        return None
    return account_state.model_copy(update={"throttle_tokens": token[0], "throttle_ts": token[1]})


def test_throttle_allows_a_burst_of_the_rate_then_refuses():
    state = account(limits=limits(max_orders_per_second=5))
    for _ in range(5):
        state = _take(state, T0)
        assert state is not None
    assert _take(state, T0) is None


def test_throttle_refills_one_order_per_interval():
    state = account(limits=limits(max_orders_per_second=5))
    for _ in range(5):
        state = _take(state, T0)
    assert _take(state, T0 + 199) is None
    state = _take(state, T0 + 200)  # 1/5 s later: one token back
    assert state is not None
    assert _take(state, T0 + 200) is None


def test_throttle_refill_is_capped_at_the_burst():
    state = account(limits=limits(max_orders_per_second=5))
    state = _take(state, T0)
    later = T0 + 60_000
    for _ in range(5):
        state = _take(state, later)
        assert state is not None
    assert _take(state, later) is None


def test_throttle_with_a_clock_going_backwards_does_not_refill():
    state = account(limits=limits(max_orders_per_second=2))
    state = _take(_take(state, T0), T0)
    assert _take(state, T0 - 5_000) is None
