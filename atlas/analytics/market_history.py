"""What one worker has seen of the market lately: mids, trades and books per symbol, from the market-data topic.

The control center's figures and the analytics page's market series are computed from it
(`atlas.analytics.metrics`). Every worker reads every symbol's market data, so any worker can answer.
It holds the last `HISTORY_S` seconds, from when the worker started.
"""
from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from atlas.analytics.metrics import Book, MidPoint, TradePoint, book_from_message, spread_in_bps
from atlas.core.values import Side, decimal_text, parse_decimal

HISTORY_S = 900
# Bounds on memory whatever the tick rate or the trade rate.
MAX_MIDS = 20_000
MAX_TRADES = 20_000


# The fields of each kind of market-data message, as the venue writes them (agents/venue.py).
_FIELDS = {"mid": {"type", "symbol", "mid", "ts"},
           "trade": {"type", "symbol", "price", "quantity", "aggressor", "ts"},
           "book": {"type", "symbol", "bids", "asks", "mid", "halted", "ts"}}
MAX_LEVELS = 100  # a side of a book message


def market_message(symbol: str, raw: str) -> dict | None:
    """The message as the venue writes it, or None: exactly its fields, decimals as plain-digit strings, a known side.

    The worker forwards market data to browsers; only messages that pass this do, so a string
    written to the topic by anything but the venue never reaches a page.
    """
    try:
        doc = json.loads(raw)
        if not isinstance(doc, dict) or set(doc) != _FIELDS.get(doc.get("type"), ()) or doc["symbol"] != symbol:
            return None
        if not isinstance(doc["ts"], int) or isinstance(doc["ts"], bool) or not 0 <= doc["ts"] < 2 ** 53:
            return None
        kind = doc["type"]
        if kind == "trade":
            _decimals(doc["price"], doc["quantity"])
            Side(doc["aggressor"])
        else:
            _decimals(doc["mid"])
        if kind == "book":
            if not isinstance(doc["halted"], bool):
                return None
            for side in (doc["bids"], doc["asks"]):
                if not isinstance(side, list) or len(side) > MAX_LEVELS:
                    return None
                for level in side:
                    if not isinstance(level, list) or len(level) != 2:
                        return None
                    _decimals(*level)
    except (ValueError, TypeError, RecursionError):
        return None
    return doc


def _decimals(*values: object) -> None:
    for value in values:
        if not isinstance(value, str):
            raise ValueError("a decimal is a string")
        parse_decimal(value)


@dataclass
class SymbolHistory:
    """One symbol: recent mids and trades, the latest book, and one spread sample per second."""

    mids: deque = field(default_factory=lambda: deque(maxlen=MAX_MIDS))
    trades: deque = field(default_factory=lambda: deque(maxlen=MAX_TRADES))
    book: Book | None = None
    halted: bool = False
    spreads: deque = field(default_factory=lambda: deque(maxlen=HISTORY_S))  # (second, spread bps)

    def forget_before(self, ts: int) -> None:
        """Drop the mids and trades older than `ts`."""
        for points in (self.mids, self.trades):
            while points and points[0].ts < ts:
                points.popleft()


class MarketHistory:
    """Every known symbol's history, fed one market-data message at a time."""

    def __init__(self, symbols: Iterable[str]) -> None:
        self.symbols: dict[str, SymbolHistory] = {symbol: SymbolHistory() for symbol in symbols}

    def record(self, symbol: str, raw: str) -> bool:
        """Take one market-data message (JSON text); False for one of another symbol, or not one the venue writes."""
        history = self.symbols.get(symbol)
        doc = market_message(symbol, raw)
        if history is None or doc is None:
            return False
        try:
            kind = doc["type"]
            if kind == "mid":
                history.mids.append(MidPoint(int(doc["ts"]), Decimal(doc["mid"])))
                history.forget_before(int(doc["ts"]) - HISTORY_S * 1000)
            elif kind == "trade":
                history.trades.append(TradePoint(int(doc["ts"]), Decimal(doc["price"]), Decimal(doc["quantity"]),
                                                 Side(doc["aggressor"])))
            elif kind == "book":
                history.book = book_from_message(doc)
                history.halted = bool(doc.get("halted"))
                self._sample_spread(history, int(doc["ts"]))
        except (ValueError, KeyError, TypeError, ArithmeticError, AttributeError):
            return False  # market data is best effort: a bad message is skipped, the next tick follows
        return True

    @staticmethod
    def _sample_spread(history: SymbolHistory, ts: int) -> None:
        book = history.book
        if not book.bids or not book.asks:
            return
        bps = spread_in_bps(book.bids[0].price, book.asks[0].price)
        second = ts // 1000
        if history.spreads and history.spreads[-1][0] == second:
            history.spreads[-1] = (second, bps)
        else:
            history.spreads.append((second, bps))

    def get(self, symbol: str) -> SymbolHistory:
        """The symbol's history (empty for a symbol never seen)."""
        return self.symbols.get(symbol) or SymbolHistory()


def flow_per_minute(trades, since_ms: int) -> list[dict]:
    """Traded volume per minute by aggressor side (buy / sell), oldest first, from `since_ms`."""
    minutes: dict[int, list[Decimal]] = {}
    for trade in trades:
        if trade.ts < since_ms:
            continue
        slot = minutes.setdefault(trade.ts // 60_000 * 60, [Decimal(0), Decimal(0)])
        slot[0 if trade.aggressor is Side.BUY else 1] += trade.quantity
    return [{"t": t, "buy": decimal_text(b), "sell": decimal_text(s)} for t, (b, s) in sorted(minutes.items())]
