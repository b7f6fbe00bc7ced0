"""The synthetic market: per symbol, a mid price that moves as a seeded random walk and a maker quoting around it.

Pure: every random draw comes from `(seed, symbol, tick number)`, so the same ticks give the
same mids and quotes in any process, after any restart. Prices are integer ticks and sizes
integer lots; the draw is a float, turned into an exact Decimal before it touches a price.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, replace
from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Decimal

from atlas.core.values import Side

# Levels sit one basis point of the mid apart (at least one tick).
LEVEL_STEP_BPS = Decimal(1)
_BPS = Decimal(10_000)


@dataclass(frozen=True)
class MarketParams:
    """How one symbol's synthetic market behaves; changed live through `atlas.venue.control`."""

    volatility: Decimal = Decimal("0.0005")  # standard deviation of the mid's relative move per second
    spread_bps: Decimal = Decimal(10)  # best ask minus best bid, in basis points of the mid
    liquidity: int = 10  # lots quoted per level
    levels: int = 10  # levels per side
    tick_interval_ms: int = 250
    halted: bool = False

    def updated(self, **changes: object) -> "MarketParams":
        """These parameters with the given ones changed (None leaves a value as it is)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


@dataclass(frozen=True, slots=True)
class Quote:
    side: Side
    price: int  # ticks
    quantity: int  # lots


def draw(seed: int, symbol: str, tick: int) -> Decimal:
    """The standard normal draw of one tick, as an exact Decimal."""
    return Decimal(repr(random.Random(f"{seed}/{symbol}/{tick}").gauss(0.0, 1.0)))


def next_mid(mid: int, params: MarketParams, seed: int, symbol: str, tick: int) -> int:
    """The mid (in ticks) after tick number `tick`: a geometric random-walk step, never below one tick."""
    seconds = Decimal(params.tick_interval_ms) / 1000
    move = Decimal(mid) * params.volatility * seconds.sqrt() * draw(seed, symbol, tick)
    return max(1, mid + int(move.to_integral_value(ROUND_HALF_EVEN)))


def quotes(mid: int, params: MarketParams) -> list[Quote]:
    """The maker's ladder around `mid`: `levels` bids and asks of `liquidity` lots, best first per side."""
    if params.halted or params.levels <= 0 or params.liquidity <= 0:
        return []
    half = max(1, int((Decimal(mid) * params.spread_bps / _BPS / 2).to_integral_value(ROUND_CEILING)))
    step = max(1, int((Decimal(mid) * LEVEL_STEP_BPS / _BPS).to_integral_value(ROUND_CEILING)))
    bids = [Quote(Side.BUY, mid - half - i * step, params.liquidity) for i in range(params.levels)]
    asks = [Quote(Side.SELL, mid + half + i * step, params.liquidity) for i in range(params.levels)]
    return [q for q in bids if q.price > 0] + asks
