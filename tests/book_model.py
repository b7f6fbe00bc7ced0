"""For the matching engine's tests: its invariants, and a naive reference engine to compare it with.

The reference keeps every resting order in one list and finds the next match by sorting:
slow and obviously right. Its events must equal the engine's for any sequence of calls.
"""
from __future__ import annotations

from dataclasses import dataclass

from atlas.core.values import OrderType, Side, TimeInForce
from atlas.venue.matching import (
    Accepted, Book, CancelReason, Canceled, CancelRejected, Event, Expired, RejectReason, Rejected, Replaced,
    ReplaceRejected, Trade,
)


def assert_book_invariants(book: Book) -> None:
    """The book is uncrossed and its levels, queues and index agree; call after every operation."""
    bid, ask = book.best_bid(), book.best_ask()
    assert bid is None or ask is None or bid < ask, f"crossed book: bid {bid} >= ask {ask}"
    indexed = set()
    for side, levels in ((Side.BUY, book.bids), (Side.SELL, book.asks)):
        for key, level in levels.items():
            price = -key if side is Side.BUY else key
            live = list(level.live())
            assert live, f"empty {side.value} level {price} left on the book"
            assert level.total == sum(o.leaves for o in live), f"level {price} total {level.total} != its leaves"
            assert [o.seq for o in live] == sorted(o.seq for o in live), f"level {price} out of time order"
            for order in live:
                assert order.side is side and order.price == price, f"{order.order_id} on the wrong level"
                assert 0 < order.leaves and order.filled >= 0, f"{order.order_id} has leaves {order.leaves}"
                assert book.orders.get(order.order_id) is order, f"{order.order_id} missing from the index"
                indexed.add(order.order_id)
    assert indexed == set(book.orders), f"index holds orders not on the book: {set(book.orders) - indexed}"


@dataclass
class _Order:
    order_id: str
    account_id: str
    side: Side
    price: int
    quantity: int
    filled: int
    tif: TimeInForce
    seq: int

    @property
    def leaves(self) -> int:
        return self.quantity - self.filled


class ReferenceBook:
    """The engine's rules, written for clarity rather than speed."""

    def __init__(self, min_lots: int = 1, max_lots: int = 10**15):
        self.min_lots, self.max_lots = min_lots, max_lots
        self.halted = False
        self.book: list[_Order] = []
        self.seq = 0

    def _find(self, order_id: str) -> _Order | None:
        return next((o for o in self.book if o.order_id == order_id), None)

    def _makers(self, taker: _Order, limit: int | None) -> list[_Order]:
        """Opposite orders the taker may trade with, in priority order."""
        opposite = [o for o in self.book if o.side is not taker.side]
        if limit is not None:
            opposite = [o for o in opposite if (o.price <= limit if taker.side is Side.BUY else o.price >= limit)]
        sign = 1 if taker.side is Side.BUY else -1
        return sorted(opposite, key=lambda o: (sign * o.price, o.seq))

    def _match(self, taker: _Order, limit: int | None, events: list[Event]) -> bool:
        for maker in self._makers(taker, limit):
            if taker.leaves == 0:
                break
            if maker.account_id == taker.account_id:
                return True
            lots = min(maker.leaves, taker.leaves)
            maker.filled += lots
            taker.filled += lots
            events.append(Trade(maker.price, lots, taker.side, maker.order_id, maker.account_id, maker.leaves,
                                taker.order_id, taker.account_id, taker.leaves))
            if maker.leaves == 0:
                self.book.remove(maker)
        return False

    def submit(self, order_id, account_id, side, order_type, tif, quantity, price=None) -> list[Event]:
        if self.halted:
            return [Rejected(order_id, account_id, RejectReason.HALTED)]
        if self._find(order_id):
            return [Rejected(order_id, account_id, RejectReason.DUPLICATE_ORDER)]
        if not self.min_lots <= quantity <= self.max_lots:
            return [Rejected(order_id, account_id, RejectReason.INVALID_QUANTITY)]
        if (order_type is OrderType.LIMIT and price is None) or (price is not None and price <= 0):
            return [Rejected(order_id, account_id, RejectReason.INVALID_PRICE)]
        self.seq += 1
        order = _Order(order_id, account_id, side, price or 0, quantity, 0, tif, self.seq)
        events: list[Event] = [Accepted(order_id, account_id)]
        if tif is TimeInForce.FOK:
            fillable = 0
            for maker in self._makers(order, price):
                if maker.account_id == account_id:
                    break
                fillable += maker.leaves
            if fillable < quantity:
                return events + [Canceled(order_id, account_id, quantity, CancelReason.FOK_UNFILLABLE)]
        stopped = self._match(order, price, events)
        if order.leaves:
            if stopped:
                events.append(Canceled(order_id, account_id, order.leaves, CancelReason.SELF_TRADE))
            elif order_type is OrderType.MARKET or tif in (TimeInForce.IOC, TimeInForce.FOK):
                events.append(Canceled(order_id, account_id, order.leaves, CancelReason.UNFILLED))
            else:
                self.book.append(order)
        return events

    def cancel(self, order_id) -> list[Event]:
        order = self._find(order_id)
        if order is None:
            return [CancelRejected(order_id, RejectReason.UNKNOWN_ORDER)]
        self.book.remove(order)
        return [Canceled(order_id, order.account_id, order.leaves, CancelReason.REQUESTED)]

    def replace(self, order_id, quantity, price) -> list[Event]:
        order = self._find(order_id)
        if order is None:
            return [ReplaceRejected(order_id, RejectReason.UNKNOWN_ORDER)]
        if price <= 0:
            return [ReplaceRejected(order_id, RejectReason.INVALID_PRICE)]
        if quantity <= order.filled or quantity > self.max_lots:
            return [ReplaceRejected(order_id, RejectReason.INVALID_QUANTITY)]
        if price == order.price and quantity <= order.quantity:
            order.quantity = quantity
            return [Replaced(order_id, order.account_id, price, quantity, order.leaves, True)]
        self.book.remove(order)
        self.seq += 1
        order.price, order.quantity, order.seq = price, quantity, self.seq
        events: list[Event] = [Replaced(order_id, order.account_id, price, quantity, order.leaves, False)]
        stopped = self._match(order, price, events)
        if order.leaves:
            if stopped:
                events.append(Canceled(order_id, order.account_id, order.leaves, CancelReason.SELF_TRADE))
            else:
                self.book.append(order)
        return events

    def expire_day(self) -> list[Event]:
        """Resting DAY orders in the engine's order: bids best first, then asks best first, time priority."""
        bids = sorted((o for o in self.book if o.side is Side.BUY), key=lambda o: (-o.price, o.seq))
        asks = sorted((o for o in self.book if o.side is Side.SELL), key=lambda o: (o.price, o.seq))
        events: list[Event] = []
        for order in bids + asks:
            if order.tif is TimeInForce.DAY:
                self.book.remove(order)
                events.append(Expired(order.order_id, order.account_id, order.leaves))
        return events
