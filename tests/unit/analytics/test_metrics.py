"""Control-center metrics: volatility, spread, depth, trend, suggested prices and fill probability.

The standard book (`book()`): bids 100 x1, 99.5 x2, 99 x3, 98.5 x4, 98 x5, 97.5 x100;
asks 100.5 x0.5, 101 x1.5, 101.5 x2, 102 x2, 102.5 x4, 103 x50. The sixth level of each side
lies outside the five-level depth. Mid 100.25, spread 0.5.
"""
from __future__ import annotations

import math
import re
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from atlas.analytics.metrics import (
    Book, Level, MidPoint, TradePoint, book_from_message, fill_probability, market_metrics, suggested_prices,
)
from atlas.core.values import Side
from tests.helpers import D, T0

BIDS = (("100", "1"), ("99.5", "2"), ("99", "3"), ("98.5", "4"), ("98", "5"), ("97.5", "100"))
ASKS = (("100.5", "0.5"), ("101", "1.5"), ("101.5", "2"), ("102", "2"), ("102.5", "4"), ("103", "50"))
LN_1_01 = math.log(1.01)


def levels(rows) -> tuple[Level, ...]:
    return tuple(Level(D(price), D(quantity)) for price, quantity in rows)


def book(bids=BIDS, asks=ASKS) -> Book:
    return Book(bids=levels(bids), asks=levels(asks), ts=T0)


def mids_every(step_ms: int, *values: str) -> list[MidPoint]:
    return [MidPoint(T0 + i * step_ms, D(v)) for i, v in enumerate(values)]


def trade(side: Side, quantity: str, ts: int = T0) -> TradePoint:
    return TradePoint(ts=ts, price=D("100"), quantity=D(quantity), aggressor=side)


def touch(price: float, reference: float, sigma: float, horizon_s: float) -> float:
    """The reflection-principle formula written out with Phi, to check the module against."""
    z = abs(math.log(price / reference)) / (sigma * math.sqrt(horizon_s))
    phi = 0.5 * (1 + math.erf(z / math.sqrt(2)))
    return 2 * (1 - phi)


def floats_in(value) -> list:
    if isinstance(value, float):
        return [value]
    if isinstance(value, dict):
        return [f for v in value.values() for f in floats_in(v)]
    if isinstance(value, (list, tuple)):
        return [f for v in value for f in floats_in(v)]
    return []


# --- volatility ---

def test_volatility_of_alternating_mids_each_second_is_the_log_return():
    m = market_metrics(mids_every(1000, "100", "101", "100", "101"), [], None, now_ms=T0 + 3000)
    assert m.volatility_per_s == Decimal("0.00995033")  # ln(1.01) = 0.009950330853...
    assert float(m.volatility_per_min) == pytest.approx(LN_1_01 * math.sqrt(60), rel=1e-5)


def test_volatility_with_two_second_steps_is_scaled_per_second():
    m = market_metrics(mids_every(2000, "100", "101", "100", "101"), [], None, now_ms=T0 + 6000)
    assert float(m.volatility_per_s) == pytest.approx(LN_1_01 / math.sqrt(2), rel=1e-5)


def test_volatility_of_a_flat_mid_is_zero():
    m = market_metrics(mids_every(1000, "100", "100", "100"), [], None, now_ms=T0 + 2000)
    assert m.volatility_per_s == 0 and m.volatility_per_min == 0


def test_volatility_with_fewer_than_three_mids_is_none():
    m = market_metrics(mids_every(1000, "100", "101"), [], None, now_ms=T0 + 1000)
    assert m.volatility_per_s is None and m.volatility_per_min is None and m.mids == 2


def test_volatility_when_old_mids_fall_outside_the_window_is_none():
    history = mids_every(1000, "100", "150", "100", "101")
    m = market_metrics(history, [], None, now_ms=T0 + 3000, window_ms=1000)
    assert m.mids == 2 and m.volatility_per_s is None and m.mid_change_bps == D("100.00")


# --- spread, depth, imbalance ---

def test_spread_is_exact_and_bps_over_the_book_mid():
    m = market_metrics([], [], book(), now_ms=T0)
    assert m.spread == D("0.5")
    assert m.spread_bps == D("49.88")  # 0.5 / 100.25 * 10000 = 49.8753...


def test_depth_counts_five_levels_and_top_is_the_best_level():
    m = market_metrics([], [], book(), now_ms=T0)
    assert (m.best_bid_quantity, m.best_ask_quantity) == (D("1"), D("0.5"))
    assert (m.bid_depth, m.ask_depth) == (D("15"), D("10"))
    assert m.book_imbalance == D("0.200")  # (15 - 10) / 25


def test_spread_when_a_side_is_empty_is_none():
    m = market_metrics([], [], book(asks=()), now_ms=T0)
    assert m.spread is None and m.spread_bps is None and m.best_ask_quantity is None
    assert m.book_imbalance == D("1.000") and m.ask_depth == 0


def test_metrics_without_a_book_or_history_are_empty():
    m = market_metrics([], [], None, now_ms=T0)
    assert (m.mids, m.trades, m.spread, m.bias) == (0, 0, None, None)
    assert m.book_imbalance is None and m.mid_change_bps is None


# --- trend ---

def test_bias_is_buy_minus_sell_over_the_total_in_the_window():
    trades = [trade(Side.BUY, "2"), trade(Side.BUY, "1"), trade(Side.SELL, "1"),
              trade(Side.SELL, "100", ts=T0 - 61_000)]  # older than the window: ignored
    m = market_metrics([], trades, None, now_ms=T0)
    assert (m.buy_volume, m.sell_volume, m.trades) == (D("3"), D("1"), 3)
    assert m.bias == D("0.500")


def test_bias_when_only_sells_is_minus_one():
    m = market_metrics([], [trade(Side.SELL, "0.3")], None, now_ms=T0)
    assert m.bias == D("-1.000")


def test_mid_change_is_last_over_first_in_bps():
    m = market_metrics(mids_every(1000, "200", "199", "198"), [], None, now_ms=T0 + 2000)
    assert m.mid_change_bps == D("-100.00")


# --- suggested prices ---

def test_suggestions_for_a_buy_join_the_bid_and_cross_the_ask_by_a_spread():
    s = suggested_prices(book(), Side.BUY, D("0.5"))
    assert (s.passive, s.aggressive) == (D("100"), D("101"))  # ask 100.5 + spread 0.5
    assert s.mid == D("100")  # 100.25 floored to the 0.5 grid


def test_suggestions_for_a_sell_join_the_ask_and_cross_the_bid_by_a_spread():
    s = suggested_prices(book(), Side.SELL, D("0.5"))
    assert (s.passive, s.aggressive) == (D("100.5"), D("99.5"))  # bid 100 - spread 0.5
    assert s.mid == D("100.5")  # 100.25 raised to the 0.5 grid


def test_aggressive_suggestion_in_a_volatile_market_crosses_by_two_sigma_of_the_horizon():
    # mid 100.25 x 1 % per s x 2 x sqrt(4 s) = 4.01 beyond the touch, rounded away from it to the 0.5 grid.
    s = suggested_prices(book(), Side.BUY, D("0.5"), volatility_per_s=D("0.01"), horizon_s=4)
    assert s.aggressive == D("105")  # 100.5 + 4.01 = 104.51 -> 105
    s = suggested_prices(book(), Side.SELL, D("0.5"), volatility_per_s=D("0.01"), horizon_s=4)
    assert s.aggressive == D("95.5")  # 100 - 4.01 = 95.99 -> 95.5
    calm = suggested_prices(book(), Side.BUY, D("0.5"), volatility_per_s=D("0.0001"), horizon_s=4)
    assert calm.aggressive == D("101")  # the spread is the larger buffer


def test_suggested_mid_off_the_grid_rounds_toward_the_passive_side():
    wide = book(bids=(("100", "1"),), asks=(("101.5", "1"),))  # mid 100.75
    assert suggested_prices(wide, Side.BUY, D("0.5")).mid == D("100.5")
    assert format(suggested_prices(wide, Side.SELL, D("0.5")).mid, "f") == "101.0"


def test_suggested_mid_on_the_grid_is_kept():
    s = suggested_prices(book(bids=(("100", "1"),), asks=(("101", "1"),)), Side.BUY, D("0.5"))
    assert s.mid == D("100.5")


def test_suggestions_when_a_side_is_empty_are_none():
    assert suggested_prices(book(bids=()), Side.BUY, D("0.5")) is None


# --- fill probability ---

def test_fill_probability_of_a_price_too_far_for_a_float_ratio_is_zero():
    estimate = fill_probability(Side.BUY, D("1E-400"), D("1"), book(), D("0.01"))
    assert (estimate.probability, estimate.method) == (D("0.000"), "touch")


def test_fill_probability_when_marketable_and_covered_is_one():
    f = fill_probability(Side.BUY, D("101"), D("2"), book(), D("0.001"))
    assert (f.probability, f.method, f.immediate_quantity) == (D("1.000"), "marketable", D("2"))


def test_fill_probability_when_marketable_and_partly_covered_is_the_fraction():
    f = fill_probability(Side.BUY, D("101"), D("3"), book(), D("0.001"))
    assert (f.probability, f.immediate_quantity) == (D("0.666"), D("2"))  # 2/3, rounded down


def test_fill_probability_of_a_marketable_sell_counts_bids_at_or_above_the_price():
    f = fill_probability(Side.SELL, D("99.5"), D("6"), book(), None)
    assert (f.probability, f.method, f.immediate_quantity) == (D("0.500"), "marketable", D("3"))


def test_fill_probability_when_resting_matches_the_reflection_formula():
    f = fill_probability(Side.BUY, D("99"), D("1"), book(), D("0.001"), horizon_s=60)
    expected = touch(99, 100.5, 0.001, 60)  # about 0.052
    assert f.method == "touch" and f.immediate_quantity == 0
    assert float(f.probability) == pytest.approx(expected, abs=0.001)


def test_fill_probability_of_a_resting_sell_uses_the_best_bid():
    f = fill_probability(Side.SELL, D("101"), D("1"), book(), D("0.001"), horizon_s=60)
    assert float(f.probability) == pytest.approx(touch(101, 100, 0.001, 60), abs=0.001)


def test_fill_probability_when_resting_far_away_is_smaller_than_near():
    far = fill_probability(Side.BUY, D("99"), D("1"), book(), D("0.001"))
    near = fill_probability(Side.BUY, D("100.4"), D("1"), book(), D("0.001"))
    assert far.probability < D("0.1") < D("0.8") < near.probability


def test_fill_probability_with_higher_volatility_is_higher():
    calm = fill_probability(Side.BUY, D("99"), D("1"), book(), D("0.0005"))
    wild = fill_probability(Side.BUY, D("99"), D("1"), book(), D("0.002"))
    assert calm.probability < wild.probability


@pytest.mark.parametrize("volatility", [None, D("0")])
def test_fill_probability_when_resting_without_volatility_is_zero(volatility):
    f = fill_probability(Side.BUY, D("99"), D("1"), book(), volatility)
    assert (f.probability, f.method) == (D("0.000"), "no-volatility")


def test_fill_probability_when_the_opposite_side_is_empty_is_zero():
    f = fill_probability(Side.BUY, D("99"), D("1"), book(asks=()), D("0.001"))
    assert (f.probability, f.method) == (D("0"), "no-book")


def test_fill_probability_of_a_zero_quantity_is_refused():
    with pytest.raises(ValueError):
        fill_probability(Side.BUY, D("99"), D("0"), book(), D("0.001"))


@given(
    ask_ticks=st.integers(min_value=2, max_value=1_000_000),
    below=st.lists(st.integers(min_value=1, max_value=1_000_000), min_size=2, max_size=2),
    volatility=st.decimals(min_value=Decimal("0.000001"), max_value=Decimal("0.1"), places=6),
    horizon_s=st.integers(min_value=1, max_value=3600),
)
def test_fill_probability_is_bounded_and_rises_toward_the_ask(ask_ticks, below, volatility, horizon_s):
    tick = D("0.01")
    ask = ask_ticks * tick
    quotes = book(bids=(((ask - tick), "1"),), asks=((ask, "1"),))
    # Resting BUY prices strictly below the ask and above zero, lower one first.
    far, near = sorted(max(1, ask_ticks - b) * tick for b in below)
    p_far = fill_probability(Side.BUY, far, D("1"), quotes, volatility, horizon_s).probability
    p_near = fill_probability(Side.BUY, near, D("1"), quotes, volatility, horizon_s).probability
    assert D("0") <= p_far <= p_near <= D("1")
    for side in Side:
        p = fill_probability(side, near, D("2"), quotes, volatility, horizon_s).probability
        assert D("0") <= p <= D("1")


# --- public() and parsing ---

def test_public_of_every_result_has_no_floats_and_no_exponents():
    mids = mids_every(1000, "100", "100.01", "100", "100.01")
    results = [
        market_metrics(mids, [trade(Side.BUY, "0.00000001")], book(), now_ms=T0 + 3000),
        suggested_prices(book(), Side.SELL, D("0.5")),
        fill_probability(Side.BUY, D("99"), D("1"), book(), D("0.001")),
        fill_probability(Side.BUY, D("99"), D("1"), book(), None),
    ]
    for result in results:
        public = result.public()
        assert floats_in(public) == []
        assert not [v for v in public.values() if isinstance(v, str) and re.search(r"\d[eE]", v)]
    metrics = results[0].public()
    assert metrics["buy_volume"] == "0.00000001" and metrics["volatility_per_s"] == "0.0000999950"  # ln(1.0001)
    assert metrics["bias"] == "1.000" and metrics["spread"] == "0.5"
    assert results[1].public()["side"] == "SELL"


def test_book_from_message_parses_strings_best_first():
    message = {"type": "book", "symbol": "BTC-USD", "bids": [["99", "2"], ["100", "1"]],
               "asks": [["101", "3"], ["100.5", "0.5"]], "mid": "100.25", "halted": False, "ts": T0}
    parsed = book_from_message(message)
    assert parsed.bids == levels((("100", "1"), ("99", "2")))
    assert parsed.asks == levels((("100.5", "0.5"), ("101", "3"))) and parsed.ts == T0


def test_book_from_message_with_a_float_price_is_refused():
    with pytest.raises(ValueError):
        book_from_message({"bids": [[100.5, "1"]], "asks": [], "ts": T0})
