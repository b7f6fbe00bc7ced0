"""Market metrics for a trader's control center: estimates for a screen, never inputs to risk.

Computed from a symbol's short history of mids, trades and the latest book, over a window
ending at `now_ms` (passed in, as is everything else):

- volatility: the driftless realised volatility of log mid returns, per second and per minute,
  as a fraction (0.001 is 0.1 % a second): sqrt(sum(r^2) / sum(dt in seconds)).
- spread and spread_bps: best ask minus best bid, and that over the book's mid in basis points.
- top and depth: the quantity at the best bid and ask, and over the first five levels a side.
- trend: aggressor buy and sell volume, bias (buy - sell) / (buy + sell) in [-1, 1], book
  imbalance (bid depth - ask depth) / (bid + ask depth), and the mid's change over the window.
- suggested prices: passive (join the own side), mid (rounded toward the passive side) and
  aggressive (cross the other side's best price by a buffer that survives a few seconds of
  movement), all on the tick grid.
- fill probability: for a marketable order, the share the visible levels fill right away; for a
  resting one, the chance the opposite best price touches it within the horizon, by the
  reflection principle for a driftless random walk of the log price.

Floats appear only inside the statistics (logs, square roots, the normal CDF), which are
estimates; prices and quantities stay exact Decimals throughout, and every statistic is
returned as a rounded Decimal.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, Decimal
from enum import Enum
from typing import Any

from atlas.core.values import ZERO, Side, decimal_text, parse_decimal

# Seconds of market movement an aggressive suggestion allows for (see suggested_prices).
AGGRESSIVE_HORIZON_S = 5
DEPTH_LEVELS = 5
BPS = Decimal(10_000)
_BPS_STEP = Decimal("0.01")
_RATIO_STEP = Decimal("0.001")
_SIGNIFICANT_DIGITS = 6


class _Public:
    def public(self) -> dict[str, Any]:
        """JSON-ready: decimals as plain strings, enums as their values, None kept."""
        return {f.name: _json(getattr(self, f.name)) for f in fields(self)}


def _json(value: Any) -> Any:
    if isinstance(value, Decimal):
        return decimal_text(value)
    if isinstance(value, Enum):
        return value.value
    return value


@dataclass(frozen=True)
class Level:
    """One price level: the price and the total quantity resting there."""

    price: Decimal
    quantity: Decimal


@dataclass(frozen=True)
class Book:
    """A book snapshot, each side best first (bids falling, asks rising)."""

    bids: tuple[Level, ...]
    asks: tuple[Level, ...]
    ts: int


@dataclass(frozen=True)
class MidPoint:
    """The venue's mid price at a time."""

    ts: int
    mid: Decimal


@dataclass(frozen=True)
class TradePoint:
    """A trade on the venue, with the side of the order that took liquidity."""

    ts: int
    price: Decimal
    quantity: Decimal
    aggressor: Side


def book_from_message(message: Mapping[str, Any]) -> Book:
    """Build a Book from a decoded `{"type": "book", ...}` message, each side sorted best first."""
    def side(rows: Sequence[Sequence[Any]], best_first_descending: bool) -> tuple[Level, ...]:
        levels = [Level(parse_decimal(price), parse_decimal(quantity)) for price, quantity in rows]
        return tuple(sorted(levels, key=lambda level: level.price, reverse=best_first_descending))

    return Book(bids=side(message.get("bids") or (), True), asks=side(message.get("asks") or (), False),
                ts=int(message["ts"]))


@dataclass(frozen=True)
class MarketMetrics(_Public):
    """The control center's figures for one symbol over a window."""

    window_ms: int
    mids: int
    trades: int
    volatility_per_s: Decimal | None
    volatility_per_min: Decimal | None
    spread: Decimal | None
    spread_bps: Decimal | None
    best_bid_quantity: Decimal | None
    best_ask_quantity: Decimal | None
    bid_depth: Decimal
    ask_depth: Decimal
    buy_volume: Decimal
    sell_volume: Decimal
    bias: Decimal | None
    book_imbalance: Decimal | None
    mid_change_bps: Decimal | None


@dataclass(frozen=True)
class Suggestions(_Public):
    """Three limit prices for an order on one side, on the tick grid."""

    side: Side
    passive: Decimal
    mid: Decimal
    aggressive: Decimal


@dataclass(frozen=True)
class FillEstimate(_Public):
    """How likely an order is to fill within the horizon, and how the figure was reached."""

    probability: Decimal
    method: str
    horizon_s: int
    immediate_quantity: Decimal


def market_metrics(mids: Sequence[MidPoint], trades: Sequence[TradePoint], book: Book | None,
                   now_ms: int, window_ms: int = 60_000) -> MarketMetrics:
    """Compute a symbol's figures from its history over the window ending at `now_ms`."""
    start = now_ms - window_ms
    recent_mids = sorted((m for m in mids if start <= m.ts <= now_ms and m.mid > 0), key=lambda m: m.ts)
    recent_trades = [t for t in trades if start <= t.ts <= now_ms]

    sigma = realised_volatility(recent_mids)
    buy = sum((t.quantity for t in recent_trades if t.aggressor is Side.BUY), ZERO)
    sell = sum((t.quantity for t in recent_trades if t.aggressor is Side.SELL), ZERO)
    change_bps = None
    if len(recent_mids) > 1:
        first, last = recent_mids[0].mid, recent_mids[-1].mid
        change_bps = ((last - first) / first * BPS).quantize(_BPS_STEP)

    bids, asks = (book.bids, book.asks) if book is not None else ((), ())
    bid_depth = sum((level.quantity for level in bids[:DEPTH_LEVELS]), ZERO)
    ask_depth = sum((level.quantity for level in asks[:DEPTH_LEVELS]), ZERO)
    spread = spread_bps = None
    if bids and asks:
        spread = asks[0].price - bids[0].price
        spread_bps = spread_in_bps(bids[0].price, asks[0].price)

    return MarketMetrics(
        window_ms=window_ms, mids=len(recent_mids), trades=len(recent_trades),
        volatility_per_s=None if sigma is None else _significant(sigma),
        volatility_per_min=None if sigma is None else _significant(sigma * math.sqrt(60)),
        spread=spread, spread_bps=spread_bps,
        best_bid_quantity=bids[0].quantity if bids else None,
        best_ask_quantity=asks[0].quantity if asks else None,
        bid_depth=bid_depth, ask_depth=ask_depth, buy_volume=buy, sell_volume=sell,
        bias=_ratio(buy - sell, buy + sell),
        book_imbalance=_ratio(bid_depth - ask_depth, bid_depth + ask_depth), mid_change_bps=change_bps,
    )


def spread_in_bps(bid: Decimal, ask: Decimal) -> Decimal:
    """Best ask minus best bid over their mid, in basis points to two places."""
    return ((ask - bid) / ((ask + bid) / 2) * BPS).quantize(_BPS_STEP)


def realised_volatility(mids: Sequence[MidPoint]) -> float | None:
    """Per-second volatility of log returns of time-ordered mids; None with fewer than three."""
    points = [m for m in mids if m.mid > 0]
    if len(points) < 3:
        return None
    squares = seconds = 0.0
    for before, after in zip(points, points[1:]):
        if after.ts > before.ts:  # two mids in the same millisecond say nothing about a rate
            squares += math.log(float(after.mid / before.mid)) ** 2
            seconds += (after.ts - before.ts) / 1000
    return math.sqrt(squares / seconds) if seconds > 0 else None


def suggested_prices(book: Book, side: Side, tick: Decimal, volatility_per_s: Decimal | None = None,
                     horizon_s: int = AGGRESSIVE_HORIZON_S) -> Suggestions | None:
    """Passive, mid and aggressive limit prices for a side; None when a side of the book is empty.

    Aggressive crosses the touch by a buffer: at least one spread, or two standard deviations of the
    mid's move over `horizon_s` (the time from a glance to a submit), so it still takes liquidity
    after the market moves a little. The venue fills it at the resting prices, not at this limit.
    """
    if not book.bids or not book.asks:
        return None
    bid, ask = book.bids[0].price, book.asks[0].price
    mid = (bid + ask) / 2
    # The mid rounds toward the passive side, so it never crosses further than the book's own mid.
    rounding = ROUND_FLOOR if side is Side.BUY else ROUND_CEILING
    mid_on_grid = (mid / tick).to_integral_value(rounding=rounding) * tick
    buffer = ask - bid
    if volatility_per_s:
        move = mid * volatility_per_s * Decimal(2) * Decimal(horizon_s).sqrt()
        buffer = max(buffer, move)
    if side is Side.BUY:
        aggressive = ((ask + buffer) / tick).to_integral_value(rounding=ROUND_CEILING) * tick
        return Suggestions(side=side, passive=bid, mid=mid_on_grid, aggressive=aggressive)
    aggressive = max(tick, ((bid - buffer) / tick).to_integral_value(rounding=ROUND_FLOOR) * tick)
    return Suggestions(side=side, passive=ask, mid=mid_on_grid, aggressive=aggressive)


def fill_probability(side: Side, price: Decimal, quantity: Decimal, book: Book,
                     volatility_per_s: Decimal | None, horizon_s: int = 60) -> FillEstimate:
    """Estimate the chance an order at `price` fills within `horizon_s` seconds."""
    if price <= 0 or quantity <= 0 or horizon_s <= 0:
        raise ValueError("price, quantity and horizon must be positive")
    opposite = book.asks if side is Side.BUY else book.bids
    reachable = [level for level in opposite
                 if (level.price <= price if side is Side.BUY else level.price >= price)]
    if reachable:
        immediate = min(sum((level.quantity for level in reachable), ZERO), quantity)
        return FillEstimate(_probability(immediate / quantity), "marketable", horizon_s, immediate)
    if not opposite:
        return FillEstimate(ZERO.quantize(_RATIO_STEP), "no-book", horizon_s, ZERO)
    if not volatility_per_s:
        return FillEstimate(ZERO.quantize(_RATIO_STEP), "no-volatility", horizon_s, ZERO)
    ratio = float(price / opposite[0].price)
    if not 0 < ratio < math.inf:  # a price too far from the book to express as a float ratio: no chance
        return FillEstimate(ZERO.quantize(_RATIO_STEP), "touch", horizon_s, ZERO)
    distance = abs(math.log(ratio))
    z = distance / (float(volatility_per_s) * math.sqrt(horizon_s))
    # 2 * (1 - Phi(z)) == erfc(z / sqrt 2), which keeps its precision far out in the tail.
    touch = min(max(math.erfc(z / math.sqrt(2)), 0.0), 1.0)
    return FillEstimate(_probability(Decimal(touch)), "touch", horizon_s, ZERO)


def _probability(value: Decimal) -> Decimal:
    # Rounded down, so 1.000 only ever means certain on what is visible.
    return value.quantize(_RATIO_STEP, rounding=ROUND_DOWN)


def _ratio(numerator: Decimal, denominator: Decimal) -> Decimal | None:
    return (numerator / denominator).quantize(_RATIO_STEP) if denominator else None


def _significant(value: float, digits: int = _SIGNIFICANT_DIGITS) -> Decimal:
    exact = Decimal(repr(value))
    if not exact:
        return ZERO
    return exact.quantize(Decimal(1).scaleb(exact.adjusted() - digits + 1))
