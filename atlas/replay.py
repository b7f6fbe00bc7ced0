"""Rebuild the OMS's orders and balances from the audit trail alone, and compare them with the live tables.

Pure. The trail's execution reports are the OMS's record of every decision, so:
- an order is its latest report (reports carry status, terms, cum/leaves and average price);
- an asset's total is the account's opening balance plus its net fills (the TRADE reports);
- an asset's reserved part is what the open orders hold: a sell its leaves, a buy its leaves
  at its limit price, or at the guard price the OMS sent the venue for a market buy.
Reports about orders the OMS never stored (seq 0: a cancel of an unknown order, a malformed
Kafka submission) change nothing. Duplicates (an at_least_once replay) are dropped by seq.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Iterable, Mapping

from atlas.events import ExecType, ExecutionReport, VenueRequest
from atlas.instruments import Instrument
from atlas.state import AccountState, Order
from atlas.values import ZERO, OrderType, Side


@dataclass(frozen=True)
class OrderView:
    """What the comparison looks at in an order."""

    status: str
    quantity: Decimal | None
    price: Decimal | None
    filled: Decimal
    leaves: Decimal
    avg_price: Decimal | None

    @classmethod
    def of_report(cls, r: ExecutionReport) -> "OrderView":
        return cls(r.status.value, r.quantity, r.price, r.cum_qty, r.leaves_qty, r.avg_px)

    @classmethod
    def of_order(cls, o: Order) -> "OrderView":
        return cls(o.status.value, o.quantity, o.price, o.filled_quantity, o.leaves_quantity, o.avg_price)


@dataclass
class Book:
    """One account's orders and balances ((available, reserved) per asset)."""

    orders: dict[str, OrderView] = field(default_factory=dict)
    balances: dict[str, tuple[Decimal, Decimal]] = field(default_factory=dict)


def rebuild(reports: Iterable[ExecutionReport], requests: Iterable[VenueRequest],
            openings: Mapping[str, Mapping[str, Decimal]], instruments: Mapping[str, Instrument]) -> dict[str, Book]:
    """Every account's orders and balances as the trail tells them."""
    guards = {r.order_id: r.limit_guard for r in requests if r.limit_guard is not None}
    latest: dict[str, ExecutionReport] = {}
    seen: set[tuple[str, int]] = set()
    totals: dict[str, dict[str, Decimal]] = {}
    for r in reports:
        if r.seq == 0 or (r.order_id, r.seq) in seen:
            continue
        seen.add((r.order_id, r.seq))
        if r.order_id not in latest or r.seq > latest[r.order_id].seq:
            latest[r.order_id] = r
        if r.exec_type is ExecType.TRADE:
            inst = instruments[r.symbol]
            sign = 1 if r.side is Side.BUY else -1
            total = totals.setdefault(r.account_id, {})
            total[inst.base] = total.get(inst.base, ZERO) + sign * r.last_qty
            total[inst.quote] = total.get(inst.quote, ZERO) - sign * r.last_qty * r.last_px
    reserved: dict[str, dict[str, Decimal]] = {}
    books: dict[str, Book] = {}
    for r in latest.values():
        books.setdefault(r.account_id, Book()).orders[r.order_id] = OrderView.of_report(r)
        if r.status.is_closed:
            continue
        inst = instruments[r.symbol]
        held = reserved.setdefault(r.account_id, {})
        if r.side is Side.SELL:
            held[inst.base] = held.get(inst.base, ZERO) + r.leaves_qty
        else:
            unit = r.price if r.type is OrderType.LIMIT else guards.get(r.order_id, ZERO)
            held[inst.quote] = held.get(inst.quote, ZERO) + r.leaves_qty * unit
    for account_id in set(books) | set(totals):
        opening = openings.get(account_id, {})
        book = books.setdefault(account_id, Book())
        fills, held = totals.get(account_id, {}), reserved.get(account_id, {})
        for asset in set(opening) | set(fills) | set(held):
            total = opening.get(asset, ZERO) + fills.get(asset, ZERO)
            book.balances[asset] = (total - held.get(asset, ZERO), held.get(asset, ZERO))
    return books


def live_book(account: AccountState, orders: Iterable[Order]) -> Book:
    """The same view of an account as the live table holds it."""
    return Book({o.order_id: OrderView.of_order(o) for o in orders},
                {asset: (b.available, b.reserved) for asset, b in account.balances.items()})


def compare(rebuilt: Mapping[str, Book], live: Mapping[str, Book]) -> list[str]:
    """Every difference between the rebuilt and the live state (empty: they are equal)."""
    problems = []
    for account_id in sorted(set(rebuilt) | set(live)):
        mine, theirs = rebuilt.get(account_id, Book()), live.get(account_id, Book())
        for asset in sorted(set(mine.balances) | set(theirs.balances)):
            a = mine.balances.get(asset, (ZERO, ZERO))
            b = theirs.balances.get(asset, (ZERO, ZERO))
            if a != b:
                problems.append(f"{account_id} {asset}: trail gives available {a[0]} reserved {a[1]}, "
                                f"the live table {b[0]} and {b[1]}")
        for order_id in sorted(set(mine.orders) | set(theirs.orders)):
            a, b = mine.orders.get(order_id), theirs.orders.get(order_id)
            if a is None:
                problems.append(f"{account_id} order {order_id}: in the live table, not in the trail")
            elif b is None:
                problems.append(f"{account_id} order {order_id}: in the trail, not in the live table")
            elif a != b:
                problems.append(f"{account_id} order {order_id}: trail gives {a}, the live table {b}")
    return problems

