"""The synthetic market: a reproducible random walk and a ladder that never crosses."""
from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from atlas.core.values import Side
from atlas.venue.market_maker import MarketParams, Quote, draw, next_mid, quotes

MID = 6_500_000  # BTC-USD at 65,000.00 in 0.01 ticks


def walk(seed: int, ticks: int, params: MarketParams = MarketParams(), mid: int = MID) -> list[int]:
    mids = []
    for tick in range(1, ticks + 1):
        mid = next_mid(mid, params, seed, "BTC-USD", tick)
        mids.append(mid)
    return mids


def test_same_seed_gives_the_same_walk_and_another_seed_another():
    assert walk(7, 200) == walk(7, 200)
    assert walk(7, 200) != walk(8, 200)


def test_a_tick_depends_only_on_seed_symbol_and_tick_number():
    assert draw(7, "BTC-USD", 41) == draw(7, "BTC-USD", 41)
    assert draw(7, "BTC-USD", 41) != draw(7, "ETH-USD", 41)


def test_zero_volatility_keeps_the_mid_still():
    assert set(walk(7, 50, MarketParams(volatility=Decimal(0)))) == {MID}


def test_walk_moves_by_about_the_volatility():
    params = MarketParams(volatility=Decimal("0.001"), tick_interval_ms=1000)
    mids = [MID] + walk(3, 2_000, params)
    moves = [abs(b - a) / a for a, b in zip(mids, mids[1:])]
    mean = sum(moves) / len(moves)
    # E|N(0, 0.001)| = 0.001 * sqrt(2/pi) ~ 0.0008
    assert 0.0006 < mean < 0.001


def test_ladder_has_the_spread_levels_and_sizes_asked_for():
    ladder = quotes(MID, MarketParams(spread_bps=Decimal(10), liquidity=7, levels=3))
    bids = [q for q in ladder if q.side is Side.BUY]
    asks = [q for q in ladder if q.side is Side.SELL]
    assert [q.price for q in bids] == [MID - 3250, MID - 3250 - 650, MID - 3250 - 1300]
    assert [q.price for q in asks] == [MID + 3250, MID + 3250 + 650, MID + 3250 + 1300]
    assert {q.quantity for q in ladder} == {7}
    assert asks[0].price - bids[0].price == 6500  # 10 bps of 65,000.00


def test_halted_market_quotes_nothing():
    assert quotes(MID, MarketParams(halted=True)) == []


def test_updated_changes_only_what_is_given():
    params = MarketParams().updated(spread_bps=Decimal(20), halted=None)
    assert params.spread_bps == 20 and params.halted is False and params.levels == MarketParams().levels


@given(st.integers(1, 10**9), st.decimals(min_value=0, max_value=500, places=2), st.integers(1, 25))
def test_ladder_never_crosses_and_prices_stay_positive(mid, spread, levels):
    ladder = quotes(mid, MarketParams(spread_bps=spread, levels=levels))
    bids = [q.price for q in ladder if q.side is Side.BUY]
    asks = [q.price for q in ladder if q.side is Side.SELL]
    assert all(p > 0 for p in bids + asks)
    assert not bids or max(bids) < min(asks)
    assert asks == sorted(asks) and bids == sorted(bids, reverse=True)
    assert all(isinstance(q, Quote) for q in ladder)
