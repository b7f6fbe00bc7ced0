"""The venue over HTTP: its live parameters, the control center's changes, and each symbol's market data.

Reads are answered by the worker that runs the symbol's venue (others forward there); the
admin's change travels as a `VenueControl` on `atlas.venue.control`, like every other control.
"""
from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from atlas.app import app
from atlas.core.control import VenueControl
from atlas.core.instruments import Instrument
from atlas.core.values import Dec
from atlas.runtime.reference import instruments
from atlas.settings import settings
from atlas.tables.venue import peek
from atlas.venue.exchange import SymbolVenue, default_params
from atlas.web.common import SYMBOLS, admin, body, on_owner, principal, produce
from atlas.web.problems import ApiView, Problem

MAX_TRADES = 100


class VenueSettings(BaseModel):
    """Body of `POST /api/v1/admin/venue/{symbol}`: the parameters to change (others keep their value)."""

    model_config = ConfigDict(extra="forbid")

    halted: bool | None = None
    volatility: Dec | None = Field(None, ge=0, le=Decimal("0.1"), description="relative stdev of the mid per second")
    spread_bps: Dec | None = Field(None, ge=0, le=1000, description="best ask minus best bid, bps of the mid")
    liquidity: Dec | None = Field(None, gt=0, description="quantity the maker quotes per level, in the base asset")
    levels: int | None = Field(None, ge=0, le=50, description="levels the maker quotes per side")
    tick_interval_ms: int | None = Field(None, ge=10, le=60_000)


def instrument_or_404(symbol: str) -> Instrument:
    instrument = instruments().get(symbol)
    if instrument is None:
        raise Problem(404, "UNKNOWN_SYMBOL", f"no instrument {symbol}")
    return instrument


def _venue(symbol: str) -> SymbolVenue:
    """The symbol's venue on this (owning) worker; a fresh one before its first tick."""
    instrument = instrument_or_404(symbol)
    return peek(symbol, instrument) or SymbolVenue(instrument, default_params(symbol), settings.venue_seed)


def _params(venue: SymbolVenue) -> dict:
    p = venue.params
    return {"symbol": venue.instrument.symbol, "halted": p.halted, "volatility": str(p.volatility),
            "spread_bps": str(p.spread_bps), "liquidity": str(venue.quantity(p.liquidity)), "levels": p.levels,
            "tick_interval_ms": p.tick_interval_ms, "mid": str(venue.mid_price)}


@app.page("/api/v1/venue/{symbol}")
class VenueView(ApiView):
    """A symbol's live market parameters."""

    async def get(self, request: Any, symbol: str) -> Any:
        principal(request)
        instrument_or_404(symbol)
        return await on_owner(self, request, symbol, lambda: self._local(symbol), route=SYMBOLS)

    async def _local(self, symbol: str) -> Any:
        return self.ok(_params(_venue(symbol)))


@app.page("/api/v1/admin/venue/{symbol}")
class VenueControlView(ApiView):
    """Change a symbol's market live (admin): the maker re-quotes with it from the next tick."""

    async def post(self, request: Any, symbol: str) -> Any:
        admin(request)
        instrument = instrument_or_404(symbol)
        change = await body(request, VenueSettings)
        if change.liquidity is not None and not instrument.quantity_on_lot(change.liquidity):
            raise Problem(422, "INVALID_QUANTITY", f"liquidity must be a multiple of the lot size {instrument.lot_size}")
        control = VenueControl(symbol=symbol, ts=int(time.time() * 1000), **change.model_dump(exclude_none=True))
        await produce(settings.topic("venue.control"), symbol, control)
        return self.ok({"symbol": symbol, "changes": change.model_dump(mode="json", exclude_none=True)}, status=202)


@app.page("/api/v1/marketdata/{symbol}")
class BookView(ApiView):
    """A symbol's current book (10 levels a side), mid and last trade."""

    async def get(self, request: Any, symbol: str) -> Any:
        principal(request)
        instrument_or_404(symbol)
        return await on_owner(self, request, symbol, lambda: self._local(symbol), route=SYMBOLS)

    async def _local(self, symbol: str) -> Any:
        venue = _venue(symbol)
        bids, asks = venue.book.depth(10)

        def levels(side: list[tuple[int, int]]) -> list[dict]:
            return [{"price": str(venue.price(p)), "quantity": str(venue.quantity(q))} for p, q in side]

        last = venue.trades(1)
        return self.ok({"symbol": symbol, "bids": levels(bids), "asks": levels(asks), "mid": str(venue.mid_price),
                        "halted": venue.params.halted, "last_trade": _trade(last[0]) if last else None})


@app.page("/api/v1/marketdata/{symbol}/trades")
class TradesView(ApiView):
    """A symbol's latest trades, newest first (`limit`, at most 100)."""

    async def get(self, request: Any, symbol: str) -> Any:
        principal(request)
        instrument_or_404(symbol)
        raw = request.query.get("limit", "50")
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_TRADES:
            raise Problem(400, "INVALID_QUERY", f"limit must be a whole number from 1 to {MAX_TRADES}")
        return await on_owner(self, request, symbol, lambda: self._local(symbol, int(raw)), route=SYMBOLS)

    async def _local(self, symbol: str, limit: int) -> Any:
        return self.ok({"symbol": symbol, "trades": [_trade(t) for t in _venue(symbol).trades(limit)]})


def _trade(trade) -> dict:
    return {"price": str(trade.price), "quantity": str(trade.quantity), "aggressor": trade.aggressor.value, "ts": trade.ts}
