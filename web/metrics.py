"""The control center's and the analytics page's market figures, from what this worker has seen of the market.

`GET /api/v1/marketdata/{symbol}/metrics[?side=&price=&quantity=]`: volatility, spread, liquidity, trend,
suggested prices, and the fill probability of an order at `price`. `GET .../history`: per-second mid and
spread, and traded volume per minute by side. Every worker reads every symbol's market data, so whichever
worker gets the request answers it.
"""
from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

from atlas.analytics.market_history import HISTORY_S, flow_per_minute
from atlas.analytics.metrics import fill_probability, market_metrics, suggested_prices
from atlas.app import app
from atlas.core.values import Side, decimal_text, parse_decimal
from atlas.oms.risk import check_quantity_price
from atlas.web.common import principal
from atlas.web.problems import ApiView, Problem
from atlas.web.stream import MarketFeed
from atlas.web.venue import instrument_or_404

WINDOW_MS = 60_000
HORIZON_S = 60


def _history(symbol: str):
    feed = MarketFeed.current
    if feed is None:
        raise Problem(503, "NOT_READY", "the market feed is starting", headers={"Retry-After": "1"})
    return feed.history.get(symbol)


def _positive(request: Any, name: str) -> Decimal | None:
    """A positive decimal query parameter, or None when absent (its grid is the instrument's to check)."""
    raw = request.query.get(name)
    if not raw:
        return None
    try:
        value = parse_decimal(raw)
    except ValueError as exc:
        raise Problem(400, "INVALID_QUERY", f"{name}: {exc}") from None
    if value <= 0:
        raise Problem(400, "INVALID_QUERY", f"{name} must be positive")
    return value


@app.page("/api/v1/marketdata/{symbol}/metrics")
class MetricsView(ApiView):
    """Live market metrics of a symbol, suggested prices for each side, and a fill estimate."""

    async def get(self, request: Any, symbol: str) -> Any:
        principal(request)
        instrument = instrument_or_404(symbol)
        side_text = request.query.get("side", "BUY")
        if side_text not in ("BUY", "SELL"):
            raise Problem(400, "INVALID_QUERY", "side must be BUY or SELL")
        price, quantity = _positive(request, "price"), _positive(request, "quantity")
        if price is not None and quantity is not None:
            reject = check_quantity_price(quantity, price, instrument)
            if reject:
                raise Problem(400, "INVALID_QUERY", reject.message)
        history = _history(symbol)
        metrics = market_metrics(history.mids, history.trades, history.book, int(time.time() * 1000), WINDOW_MS)
        book = history.book
        suggestions = {}
        for side in Side:
            found = suggested_prices(book, side, instrument.tick_size, metrics.volatility_per_s) if book else None
            suggestions[side.value] = found.public() if found else None
        fill = None
        if book is not None and price is not None and quantity is not None:
            fill = fill_probability(Side(side_text), price, quantity, book, metrics.volatility_per_s, HORIZON_S).public()
        return self.ok({"symbol": symbol, "halted": history.halted, "metrics": metrics.public(),
                        "suggestions": suggestions, "fill": fill})


@app.page("/api/v1/marketdata/{symbol}/history")
class HistoryView(ApiView):
    """A symbol's recent mid and spread (a point per second) and traded volume per minute by aggressor side."""

    async def get(self, request: Any, symbol: str) -> Any:
        principal(request)
        instrument_or_404(symbol)
        history = _history(symbol)
        mids: dict[int, Decimal] = {}
        for point in history.mids:
            mids[point.ts // 1000] = point.mid  # the last mid of each second
        since = int(time.time() * 1000) - HISTORY_S * 1000
        return self.ok({
            "symbol": symbol, "seconds": HISTORY_S,
            "mid": [{"t": t, "mid": decimal_text(m)} for t, m in sorted(mids.items())],
            "spread_bps": [{"t": t, "bps": decimal_text(b)} for t, b in history.spreads],
            "flow": flow_per_minute(history.trades, since),
        })
