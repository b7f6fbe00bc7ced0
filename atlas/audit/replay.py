"""Rebuild the OMS's orders and balances from the audit trail alone, and compare them with the live tables.

Pure. The trail's execution reports are the OMS's record of every decision, so:
- an order is its latest report (reports carry status, terms, cum/leaves and average price);
- an asset's total is the account's opening balance plus its net fills (the TRADE reports);
- an asset's reserved part is what the open orders hold: a sell its leaves, a buy its leaves
  at its limit price, or at the guard price the OMS sent the venue for a market buy; while a
  replace is pending, the larger of the old terms and the new (from the venue request).
Reports about orders the OMS never stored (seq 0: a cancel of an unknown order, a malformed
Kafka submission) change nothing. Duplicates (an at_least_once replay) are dropped by seq.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Iterable, Mapping

from atlas.core.events import ExecType, ExecutionReport, OrdStatus, VenueRequest
from atlas.core.instruments import Instrument
from atlas.core.values import ZERO, OrderType, Side
from atlas.oms.state import AccountState, Order


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
            openings: Mapping[str, Mapping[str, Decimal]], instruments: Mapping[str, Instrument],
            accounts: Iterable[str] = ()) -> dict[str, Book]:
    """Every account's orders and balances as the trail tells them (plus `accounts`, even with no order)."""
    requests = list(requests)
    guards = {r.order_id: r.limit_guard for r in requests if r.limit_guard is not None}
    replaces = {r.request_id: r for r in requests if r.request == "replace"}
    history: dict[str, dict[int, ExecutionReport]] = {}
    for r in reports:
        if r.seq:  # seq 0: about an order the OMS never stored
            history.setdefault(r.order_id, {}).setdefault(r.seq, r)  # a redelivered report counts once
    totals: dict[str, dict[str, Decimal]] = {}
    reserved: dict[str, dict[str, Decimal]] = {}
    books: dict[str, Book] = {}
    for order_id, steps in history.items():
        pending: VenueRequest | None = None  # the replace the venue has not answered yet
        for r in (steps[seq] for seq in sorted(steps)):
            if r.exec_type is ExecType.PENDING_REPLACE:
                pending = replaces.get(r.exec_id)
            elif r.exec_type in (ExecType.REPLACED, ExecType.REPLACE_REJECTED) or r.status.is_closed:
                pending = None
            if r.exec_type is ExecType.TRADE:
                inst = instruments[r.symbol]
                sign = 1 if r.side is Side.BUY else -1
                total = totals.setdefault(r.account_id, {})
                total[inst.base] = total.get(inst.base, ZERO) + sign * r.last_qty
                total[inst.quote] = total.get(inst.quote, ZERO) - sign * r.last_qty * r.last_px
        last = steps[max(steps)]
        books.setdefault(last.account_id, Book()).orders[order_id] = OrderView.of_report(last)
        if not last.status.is_closed:
            asset, amount = _held(last, instruments[last.symbol], guards.get(order_id), pending)
            held = reserved.setdefault(last.account_id, {})
            held[asset] = held.get(asset, ZERO) + amount
    for account_id in set(books) | set(totals) | set(accounts):
        opening = openings.get(account_id, {})
        book = books.setdefault(account_id, Book())
        fills, held = totals.get(account_id, {}), reserved.get(account_id, {})
        for asset in set(opening) | set(fills) | set(held):
            total = opening.get(asset, ZERO) + fills.get(asset, ZERO)
            book.balances[asset] = (total - held.get(asset, ZERO), held.get(asset, ZERO))
    return books


def _held(order: ExecutionReport, inst: Instrument, guard: Decimal | None,
          pending: VenueRequest | None) -> tuple[str, Decimal]:
    """What an open order holds, as the OMS reserves it: the larger of its terms and a pending replace's."""
    unit = order.price if order.type is OrderType.LIMIT else (guard or ZERO)

    def need(quantity: Decimal, price: Decimal | None) -> Decimal:
        leaves = max(quantity - order.cum_qty, ZERO)
        return leaves if order.side is Side.SELL else leaves * price

    required = need(order.quantity, unit)
    if pending is not None:
        required = max(required, need(pending.quantity, pending.price if pending.price is not None else unit))
    return (inst.base if order.side is Side.SELL else inst.quote), required


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
                # A closed order leaves the live table after its retention; an open one never does.
                if not OrdStatus(a.status).is_closed:
                    problems.append(f"{account_id} order {order_id}: open in the trail, not in the live table")
            elif a != b:
                problems.append(f"{account_id} order {order_id}: trail gives {a}, the live table {b}")
    return problems

