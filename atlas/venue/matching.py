"""The matching engine: one limit order book per symbol, price-time priority, in whole ticks and lots.

Pure and synchronous: no Faust, no I/O, no clock. Prices are integer ticks and quantities
integer lots (the venue agent converts with the instrument's tick and lot size), so the book
never rounds. Every call returns the events it caused, in the order they happened:

- `submit`: `Accepted`, then any `Trade`s, then for what does not rest a `Canceled`
  (IOC or market remainder, fill-or-kill not fillable, self-trade prevented) or a
  `Rejected` instead of all of it.
- `cancel`: `Canceled`, or `CancelRejected` when the order is not (or no longer) on the book.
- `replace`: `Replaced` (time priority kept only when the price is unchanged and the
  quantity does not grow), then any `Trade`s if the new price crosses; or `ReplaceRejected`.
- `expire_day`: `Expired` for every resting DAY order.

Self-trade prevention cancels the newer order: an incoming order whose next match would be
an order of its own account stops there and its remainder is canceled.
"""
from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass
from typing import Iterator, Union

from sortedcontainers import SortedDict

from atlas.core.values import OrderType, Side, TimeInForce


class CancelReason(str, enum.Enum):
    REQUESTED = "REQUESTED"
    UNFILLED = "UNFILLED"  # the part of an IOC or market order that found nothing to match
    FOK_UNFILLABLE = "FOK_UNFILLABLE"
    SELF_TRADE = "SELF_TRADE"


class RejectReason(str, enum.Enum):
    DUPLICATE_ORDER = "DUPLICATE_ORDER"
    INVALID_QUANTITY = "INVALID_QUANTITY"
    INVALID_PRICE = "INVALID_PRICE"
    HALTED = "HALTED"
    UNKNOWN_ORDER = "UNKNOWN_ORDER"


@dataclass(frozen=True, slots=True)
class Accepted:
    order_id: str
    account_id: str


@dataclass(frozen=True, slots=True)
class Trade:
    """A match: `quantity` lots at the maker's `price`; `*_leaves` are what each side has left after it."""

    price: int
    quantity: int
    taker_side: Side
    maker_order_id: str
    maker_account_id: str
    maker_leaves: int
    taker_order_id: str
    taker_account_id: str
    taker_leaves: int


@dataclass(frozen=True, slots=True)
class Canceled:
    order_id: str
    account_id: str
    quantity: int  # the lots that will not trade
    reason: CancelReason


@dataclass(frozen=True, slots=True)
class Rejected:
    order_id: str
    account_id: str
    reason: RejectReason


@dataclass(frozen=True, slots=True)
class Replaced:
    order_id: str
    account_id: str
    price: int
    quantity: int
    leaves: int
    kept_priority: bool


@dataclass(frozen=True, slots=True)
class CancelRejected:
    order_id: str
    reason: RejectReason


@dataclass(frozen=True, slots=True)
class ReplaceRejected:
    order_id: str
    reason: RejectReason


@dataclass(frozen=True, slots=True)
class Expired:
    order_id: str
    account_id: str
    quantity: int


Event = Union[Accepted, Trade, Canceled, Rejected, Replaced, CancelRejected, ReplaceRejected, Expired]


@dataclass(slots=True)
class Resting:
    """An order on the book. `filled` counts every lot it traded, before and after replaces."""

    order_id: str
    account_id: str
    side: Side
    price: int
    quantity: int
    filled: int
    time_in_force: TimeInForce
    seq: int

    @property
    def leaves(self) -> int:
        return self.quantity - self.filled


class Level:
    """The orders at one price in arrival order, and their total leaves.

    A canceled order stays in the queue, marked dead (`leaves == 0`), until matching reaches
    it: that keeps cancel O(1). The level leaves the book when its total reaches zero.
    """

    __slots__ = ("queue", "total")

    def __init__(self) -> None:
        self.queue: deque[Resting] = deque()
        self.total = 0

    def live(self) -> Iterator[Resting]:
        return (o for o in self.queue if o.quantity > o.filled)


class Book:
    """One symbol's book. `min_lots`/`max_lots` bound an order's quantity."""

    def __init__(self, symbol: str, *, min_lots: int = 1, max_lots: int = 10**15):
        self.symbol = symbol
        self.min_lots, self.max_lots = min_lots, max_lots
        self.halted = False
        # Keys sort best first: bids by negated price, asks by price.
        self.bids: SortedDict = SortedDict()
        self.asks: SortedDict = SortedDict()
        self.orders: dict[str, Resting] = {}
        self.seq = 0

    # -- queries ---------------------------------------------------------------------

    def best_bid(self) -> int | None:
        return -self.bids.peekitem(0)[0] if self.bids else None

    def best_ask(self) -> int | None:
        return self.asks.peekitem(0)[0] if self.asks else None

    def depth(self, levels: int = 10) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """The top `levels` price levels per side, best first: [(price, total lots)]."""
        bids = [(-key, level.total) for key, level in self.bids.items()[:levels]]
        asks = [(key, level.total) for key, level in self.asks.items()[:levels]]
        return bids, asks

    def resting(self) -> Iterator[Resting]:
        """Every order on the book, bids then asks, each side best price first and in time priority."""
        for side in (self.bids, self.asks):
            for level in side.values():
                yield from level.live()

    def restore(self, orders: list[Resting], seq: int) -> None:
        """Put back orders saved from `resting()` (in that order, which is their priority)."""
        for order in orders:
            self._rest(order)
        self.seq = seq

    # -- commands --------------------------------------------------------------------

    def submit(self, order_id: str, account_id: str, side: Side, order_type: OrderType,
               time_in_force: TimeInForce, quantity: int, price: int | None = None) -> list[Event]:
        """A new order. A MARKET order's `price`, when given, is the worst price it may trade at."""
        reject = self._check_new(order_id, order_type, quantity, price)
        if reject is not None:
            return [Rejected(order_id, account_id, reject)]
        self.seq += 1
        order = Resting(order_id, account_id, side, price or 0, quantity, 0, time_in_force, self.seq)
        events: list[Event] = [Accepted(order_id, account_id)]
        if time_in_force is TimeInForce.FOK and self._fillable(order, price) < quantity:
            events.append(Canceled(order_id, account_id, quantity, CancelReason.FOK_UNFILLABLE))
            return events
        stopped = self._match(order, price, events)
        leaves = order.leaves
        if not leaves:
            return events
        if stopped:
            events.append(Canceled(order_id, account_id, leaves, CancelReason.SELF_TRADE))
        elif order_type is OrderType.MARKET or time_in_force in (TimeInForce.IOC, TimeInForce.FOK):
            events.append(Canceled(order_id, account_id, leaves, CancelReason.UNFILLED))
        else:
            self._rest(order)
        return events

    def cancel(self, order_id: str) -> list[Event]:
        """Take a resting order off the book."""
        order = self.orders.get(order_id)
        if order is None:
            return [CancelRejected(order_id, RejectReason.UNKNOWN_ORDER)]
        leaves = self._remove(order)
        return [Canceled(order_id, order.account_id, leaves, CancelReason.REQUESTED)]

    def replace(self, order_id: str, quantity: int, price: int) -> list[Event]:
        """New total quantity and price for a resting order.

        It keeps its time priority only when the price is unchanged and the quantity does not
        grow; otherwise it goes to the back of its (new) level, and trades first if it crosses.
        """
        order = self.orders.get(order_id)
        if order is None:
            return [ReplaceRejected(order_id, RejectReason.UNKNOWN_ORDER)]
        if price <= 0:
            return [ReplaceRejected(order_id, RejectReason.INVALID_PRICE)]
        if quantity <= order.filled or quantity > self.max_lots:
            return [ReplaceRejected(order_id, RejectReason.INVALID_QUANTITY)]
        if price == order.price and quantity <= order.quantity:
            level = self._side(order.side)[self._key(order.side, price)]
            level.total -= order.quantity - quantity
            order.quantity = quantity
            return [Replaced(order_id, order.account_id, price, quantity, order.leaves, True)]
        self._remove(order)  # the old entry stays in its level's queue, dead
        self.seq += 1
        order = Resting(order_id, order.account_id, order.side, price, quantity, order.filled, order.time_in_force,
                        self.seq)
        events: list[Event] = [Replaced(order_id, order.account_id, price, quantity, order.leaves, False)]
        stopped = self._match(order, price, events)
        if order.leaves:
            if stopped:
                events.append(Canceled(order_id, order.account_id, order.leaves, CancelReason.SELF_TRADE))
            else:
                self._rest(order)
        return events

    def expire_day(self) -> list[Event]:
        """End of the trading day: every resting DAY order expires."""
        day = [o for o in self.resting() if o.time_in_force is TimeInForce.DAY]
        return [Expired(o.order_id, o.account_id, self._remove(o)) for o in day]

    # -- internals -------------------------------------------------------------------

    def _check_new(self, order_id: str, order_type: OrderType, quantity: int, price: int | None) -> RejectReason | None:
        if self.halted:
            return RejectReason.HALTED
        if order_id in self.orders:
            return RejectReason.DUPLICATE_ORDER
        if not self.min_lots <= quantity <= self.max_lots:
            return RejectReason.INVALID_QUANTITY
        if order_type is OrderType.LIMIT and (price is None or price <= 0):
            return RejectReason.INVALID_PRICE
        if price is not None and price <= 0:
            return RejectReason.INVALID_PRICE
        return None

    @staticmethod
    def _key(side: Side, price: int) -> int:
        return -price if side is Side.BUY else price

    def _side(self, side: Side) -> SortedDict:
        return self.bids if side is Side.BUY else self.asks

    def _opposite(self, side: Side) -> SortedDict:
        return self.asks if side is Side.BUY else self.bids

    def _rest(self, order: Resting) -> None:
        book_side = self._side(order.side)
        key = self._key(order.side, order.price)
        level = book_side.get(key)
        if level is None:
            level = book_side[key] = Level()
        level.queue.append(order)
        level.total += order.leaves
        self.orders[order.order_id] = order

    def _remove(self, order: Resting) -> int:
        """Take a resting order off the book (it stays in its level's queue, dead); returns its leaves."""
        del self.orders[order.order_id]
        book_side = self._side(order.side)
        key = self._key(order.side, order.price)
        level = book_side[key]
        leaves = order.leaves
        level.total -= leaves
        order.quantity = order.filled  # dead: matching skips it
        if level.total == 0:
            del book_side[key]
        return leaves

    @staticmethod
    def _crosses(side: Side, limit: int | None, key: int) -> bool:
        """True when an incoming order on `side` with `limit` may trade at the opposite level `key`."""
        if limit is None:
            return True
        return key <= limit if side is Side.BUY else -key >= limit

    def _fillable(self, order: Resting, limit: int | None) -> int:
        """Lots an incoming order could trade now, up to its quantity (stopping at its own orders)."""
        total = 0
        for key, level in self._opposite(order.side).items():
            if not self._crosses(order.side, limit, key):
                break
            for maker in level.live():
                if maker.account_id == order.account_id:
                    return total
                total += maker.leaves
                if total >= order.quantity:
                    return total
        return total

    def _match(self, taker: Resting, limit: int | None, events: list[Event]) -> bool:
        """Trade an incoming order against the opposite side; True when self-trade prevention stopped it."""
        opposite = self._opposite(taker.side)
        while taker.quantity > taker.filled and opposite:
            key, level = opposite.peekitem(0)
            if not self._crosses(taker.side, limit, key):
                return False
            queue = level.queue
            while queue and taker.quantity > taker.filled:
                maker = queue[0]
                maker_leaves = maker.quantity - maker.filled
                if not maker_leaves:
                    queue.popleft()  # canceled or replaced away earlier
                    continue
                if maker.account_id == taker.account_id:
                    return True
                lots = min(maker_leaves, taker.quantity - taker.filled)
                maker.filled += lots
                taker.filled += lots
                level.total -= lots
                events.append(Trade(maker.price, lots, taker.side, maker.order_id, maker.account_id,
                                    maker.quantity - maker.filled, taker.order_id, taker.account_id,
                                    taker.quantity - taker.filled))
                if maker.quantity == maker.filled:
                    queue.popleft()
                    del self.orders[maker.order_id]
            if level.total == 0:
                del opposite[key]
        return False
