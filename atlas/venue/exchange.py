"""One symbol's simulated exchange: the book, its market maker, and the reports the OMS gets back.

`SymbolVenue` turns the OMS's `VenueRequest`s (decimal prices and quantities) into matching
engine calls in ticks and lots, and the engine's events into `VenueReport`s for the accounts
involved; `tick` moves the mid and replaces the maker's ladder. It has no Faust, I/O or clock:
time comes in with each call. Report ids derive from what caused them (the request id, or the
symbol and tick number), so the same input always produces the same reports with the same ids.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import Iterable

from atlas.core.events import VenueReport, VenueReportKind, VenueRequest
from atlas.core.instruments import Instrument
from atlas.core.values import OrderType, Side, TimeInForce
from atlas.venue.market_maker import MarketParams, next_mid, quotes
from atlas.venue.matching import (
    Accepted, Book, Canceled, CancelRejected, Event, Expired, Rejected, Replaced, ReplaceRejected, Resting, Trade,
)

MAKER = "venue-maker"  # the account of the market maker's quotes: nobody gets reports for it
RECENT_TRADES = 100  # kept per symbol for `GET /api/v1/marketdata/{symbol}/trades`


@dataclass(frozen=True, slots=True)
class TradePrint:
    """A trade for market data: who took liquidity is public, who the parties were is not."""

    symbol: str
    price: Decimal
    quantity: Decimal
    aggressor: Side
    ts: int


@dataclass
class VenueOutput:
    """What one call produced: reports for the OMS and trades for market data."""

    reports: list[VenueReport] = field(default_factory=list)
    trades: list[TradePrint] = field(default_factory=list)


def default_params(symbol: str) -> MarketParams:
    """The synthetic market a symbol starts with, until the control center changes it."""
    return MarketParams(volatility=Decimal("0.0005"), spread_bps=Decimal(4), liquidity=500, levels=10,
                        tick_interval_ms=250)


class SymbolVenue:
    """The exchange for one instrument."""

    def __init__(self, instrument: Instrument, params: MarketParams, seed: int, mid: Decimal | None = None):
        self.instrument = instrument
        self.params = params
        self.seed = seed
        self.book = Book(instrument.symbol, min_lots=self.lots(instrument.min_quantity) or 1,
                         max_lots=self.lots(instrument.max_quantity) or 10**15)
        self.book.halted = params.halted
        self.mid = self.ticks(mid if mid is not None else instrument.reference_price) or 1
        self.tick_no = 0
        self.day: str | None = None
        self.maker_orders: list[str] = []
        # (price ticks, lots, aggressor side, ts), oldest first; `trade_count` trades ever, the last of them here
        self.recent_trades: deque[tuple[int, int, str, int]] = deque(maxlen=RECENT_TRADES)
        self.trade_count = 0
        # Client orders whose resting state changed since `take_changes` (what a save must write).
        self._changed: set[str] = set()

    # -- units -------------------------------------------------------------------------

    def ticks(self, price: Decimal) -> int | None:
        """The price in whole ticks, or None when it is off the grid."""
        ticks, rest = divmod(price, self.instrument.tick_size)
        return int(ticks) if rest == 0 else None

    def lots(self, quantity: Decimal) -> int | None:
        """The quantity in whole lots, or None when it is off the grid."""
        lots, rest = divmod(quantity, self.instrument.lot_size)
        return int(lots) if rest == 0 else None

    def price(self, ticks: int) -> Decimal:
        return ticks * self.instrument.tick_size

    def quantity(self, lots: int) -> Decimal:
        return lots * self.instrument.lot_size

    @property
    def mid_price(self) -> Decimal:
        return self.price(self.mid)

    # -- the OMS's requests --------------------------------------------------------------

    def handle(self, request: VenueRequest) -> VenueOutput:
        """Apply one request from the OMS."""
        out = VenueOutput()
        lots = self.lots(request.quantity)
        price = None if request.price is None else self.ticks(request.price)
        if request.request == "new":
            if lots is None or (request.price is not None and price is None):
                self._report(out, request, VenueReportKind.REJECTED, reason="INVALID_GRID: price or quantity off "
                                                                           "the instrument's tick or lot")
                return out
            if request.type is OrderType.MARKET:
                # The guard is a collar bound: round it the way that can only narrow what may trade.
                price = self._guard_ticks(request.side, request.limit_guard)
            events = self.book.submit(request.order_id, request.account_id, request.side, request.type,
                                      request.time_in_force, lots, price)
        elif request.request == "cancel":
            events = self.book.cancel(request.order_id)
        else:
            if lots is None or price is None:
                self._report(out, request, VenueReportKind.REPLACE_REJECTED,
                             reason="INVALID_GRID: price or quantity off the instrument's tick or lot")
                return out
            events = self.book.replace(request.order_id, lots, price)
        self._translate(out, events, request.request_id, request.ts, request)
        return out

    def _guard_ticks(self, side: Side, guard: Decimal | None) -> int | None:
        if guard is None:
            return None
        ticks, rest = divmod(guard, self.instrument.tick_size)
        ticks = int(ticks)
        return ticks + 1 if rest and side is Side.SELL else ticks

    # -- the synthetic market -------------------------------------------------------------

    def tick(self, ts: int) -> VenueOutput:
        """One market tick: DAY orders expire at a new UTC day, the mid moves, the maker re-quotes."""
        out = VenueOutput()
        self.tick_no += 1
        cause = f"tick/{self.instrument.symbol}/{self.tick_no}"
        day = datetime.fromtimestamp(ts / 1000, tz=timezone.utc).date().isoformat()
        if self.day is not None and day != self.day:
            self._translate(out, self.book.expire_day(), cause + "/expire", ts)
        self.day = day
        for order_id in self.maker_orders:
            if order_id in self.book.orders:
                self.book.cancel(order_id)
        self.maker_orders = []
        if not self.params.halted:
            self.mid = next_mid(self.mid, self.params, self.seed, self.instrument.symbol, self.tick_no)
        for n, quote in enumerate(quotes(self.mid, self.params)):
            order_id = f"mm/{self.instrument.symbol}/{self.tick_no}/{n}"
            events = self.book.submit(order_id, MAKER, quote.side, OrderType.LIMIT, TimeInForce.GTC, quote.quantity,
                                      quote.price)
            if order_id in self.book.orders:
                self.maker_orders.append(order_id)
            self._translate(out, events, f"{cause}/{n}", ts)
        return out

    # -- saving and restoring ---------------------------------------------------------------

    def record(self) -> dict:
        """Everything but the client orders and the trades, as JSON-ready values: small, whatever the book holds."""
        p = self.params
        return {
            "symbol": self.instrument.symbol, "seed": self.seed, "mid": self.mid, "tick": self.tick_no, "day": self.day,
            "params": {"volatility": str(p.volatility), "spread_bps": str(p.spread_bps), "liquidity": p.liquidity,
                       "levels": p.levels, "tick_interval_ms": p.tick_interval_ms, "halted": p.halted},
            # The maker's ladder is bounded by `levels`: it travels with the record, not as keys of its own.
            "maker": [_resting_doc(self.book.orders[oid]) for oid in self.maker_orders if oid in self.book.orders],
            "book_seq": self.book.seq, "trade_count": self.trade_count,
        }

    def take_changes(self) -> dict[str, list | None]:
        """The client orders changed since the last call: their resting state, or None once off the book."""
        changed = {oid: _resting_doc(order) if (order := self.book.orders.get(oid)) else None for oid in self._changed}
        self._changed.clear()
        return changed

    def touch(self, order_ids: Iterable[str]) -> None:
        """Count these client orders as changed: the next `take_changes` gives them."""
        self._changed.update(order_ids)

    def client_orders(self) -> list[list]:
        """Every resting client order, as `take_changes` gives them."""
        return [_resting_doc(o) for o in self.book.orders.values() if o.account_id != MAKER]

    @classmethod
    def from_parts(cls, instrument: Instrument, record: dict, orders: list[list],
                   trades: list[tuple[int, int, str, int]]) -> "SymbolVenue":
        """The venue from its `record`, its resting client orders and its latest trades (oldest first)."""
        raw = record["params"]
        params = MarketParams(volatility=Decimal(raw["volatility"]), spread_bps=Decimal(raw["spread_bps"]),
                              liquidity=raw["liquidity"], levels=raw["levels"],
                              tick_interval_ms=raw["tick_interval_ms"], halted=raw["halted"])
        venue = cls(instrument, params, record["seed"])
        venue.mid, venue.tick_no, venue.day = record["mid"], record["tick"], record["day"]
        venue.maker_orders = [doc[0] for doc in record["maker"]]
        venue.trade_count = record["trade_count"]
        venue.recent_trades.extend(tuple(t) for t in trades)
        # Time priority within a level is arrival order, which `seq` numbers.
        resting = sorted((*record["maker"], *orders), key=lambda doc: doc[7])
        venue.book.restore([Resting(oid, acct, Side(side), price, qty, filled, TimeInForce(tif), seq)
                            for oid, acct, side, price, qty, filled, tif, seq in resting], record["book_seq"])
        return venue

    def trades(self, limit: int) -> list[TradePrint]:
        """The latest `limit` trades, newest first."""
        latest = list(self.recent_trades)[-limit:][::-1]
        return [TradePrint(self.instrument.symbol, self.price(p), self.quantity(q), Side(side), ts)
                for p, q, side, ts in latest]

    def set_params(self, params: MarketParams) -> None:
        """New parameters, live from the control center; they show from the next tick."""
        self.params = params
        self.book.halted = params.halted

    # -- engine events to reports ---------------------------------------------------------

    def _translate(self, out: VenueOutput, events: list[Event], cause: str, ts: int,
                   request: VenueRequest | None = None) -> None:
        request_id = request.request_id if request is not None else None
        n = 0

        def report(order_id: str, account_id: str, kind: VenueReportKind, **fields) -> None:
            nonlocal n
            if account_id == MAKER:
                return
            n += 1
            # The request id only on reports about the order that made the request (not its makers').
            own = request_id if request is not None and order_id == request.order_id else None
            out.reports.append(VenueReport(report_id=f"{cause}/{n}", kind=kind, order_id=order_id,
                                           account_id=account_id, request_id=own, ts=ts, **fields))

        for event in events:
            self._note(event)
            if isinstance(event, Trade):
                price, qty = self.price(event.price), self.quantity(event.quantity)
                out.trades.append(TradePrint(self.instrument.symbol, price, qty, event.taker_side, ts))
                self.recent_trades.append((event.price, event.quantity, event.taker_side.value, ts))
                self.trade_count += 1
                report(event.maker_order_id, event.maker_account_id, VenueReportKind.FILL, last_qty=qty, last_px=price)
                report(event.taker_order_id, event.taker_account_id, VenueReportKind.FILL, last_qty=qty, last_px=price)
            elif isinstance(event, Accepted):
                report(event.order_id, event.account_id, VenueReportKind.ACCEPTED)
            elif isinstance(event, Canceled):
                report(event.order_id, event.account_id, VenueReportKind.CANCELED, reason=event.reason.value)
            elif isinstance(event, Rejected):
                report(event.order_id, event.account_id, VenueReportKind.REJECTED, reason=event.reason.value)
            elif isinstance(event, Replaced):
                report(event.order_id, event.account_id, VenueReportKind.REPLACED,
                       quantity=self.quantity(event.quantity), price=self.price(event.price))
            elif isinstance(event, Expired):
                report(event.order_id, event.account_id, VenueReportKind.EXPIRED)
            elif isinstance(event, (CancelRejected, ReplaceRejected)) and request is not None:
                kind = VenueReportKind.CANCEL_REJECTED if isinstance(event, CancelRejected) else \
                    VenueReportKind.REPLACE_REJECTED
                report(event.order_id, request.account_id, kind, reason=f"TOO_LATE: {event.reason.value}")

    def _note(self, event: Event) -> None:
        """Remember the client orders an engine event touched (the maker's ladder is saved whole)."""
        if isinstance(event, Trade):
            for order_id, account_id in ((event.maker_order_id, event.maker_account_id),
                                         (event.taker_order_id, event.taker_account_id)):
                if account_id != MAKER:
                    self._changed.add(order_id)
        elif isinstance(event, (Accepted, Canceled, Replaced, Expired)) and event.account_id != MAKER:
            self._changed.add(event.order_id)

    def _report(self, out: VenueOutput, request: VenueRequest, kind: VenueReportKind, reason: str) -> None:
        out.reports.append(VenueReport(report_id=f"{request.request_id}/1", kind=kind, order_id=request.order_id,
                                       account_id=request.account_id, request_id=request.request_id, reason=reason,
                                       ts=request.ts))


def _resting_doc(order: Resting) -> list:
    return [order.order_id, order.account_id, order.side.value, order.price, order.quantity, order.filled,
            order.time_in_force.value, order.seq]
