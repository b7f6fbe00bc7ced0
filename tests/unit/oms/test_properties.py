"""Property: no sequence of commands and venue reports breaks the account's books.

Each example drives one `Book` (which runs `assert_invariants` after every step) through a
random mix of submits, cancels, replaces, retries, kill switches and venue reports, valid
or not; then the venue cancels whatever is open, and nothing may stay reserved.
"""
from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atlas.core.events import OrdStatus, VenueReportKind
from atlas.core.values import OrderType, Side
from atlas.oms.risk import collar_bounds
from atlas.oms.state import Order
from tests.helpers import Book, cancel, instruments, kill_switch, replace, submit, venue_report

INSTRUMENTS = instruments()
SYMBOLS = sorted(INSTRUMENTS)
COLLAR = {s: collar_bounds(i.reference_price, 1000, i.tick_size) for s, i in INSTRUMENTS.items()}
MAX_LOTS = {"BTC-USD": 20_000, "ETH-USD": 20_000, "SOL-USD": 50_000}  # 2 BTC, 20 ETH, 500 SOL

K, S = VenueReportKind, OrdStatus
# What a venue would plausibly say about an order in each status (closed: a late or stray report).
LIKELY = {
    S.PENDING_NEW: [K.ACCEPTED, K.ACCEPTED, K.FILL, K.REJECTED],
    S.NEW: [K.FILL, K.FILL, K.CANCELED, K.EXPIRED],
    S.PARTIALLY_FILLED: [K.FILL, K.FILL, K.CANCELED, K.EXPIRED],
    S.PENDING_CANCEL: [K.FILL, K.CANCELED, K.CANCEL_REJECTED, K.ACCEPTED],
    S.PENDING_REPLACE: [K.FILL, K.REPLACED, K.REPLACED, K.REPLACE_REJECTED],
    **{status: [K.FILL, K.CANCELED, K.ACCEPTED] for status in S if status.is_closed},
}


def _lots(data: st.DataObject, symbol: str) -> Decimal:
    return data.draw(st.integers(1, MAX_LOTS[symbol])) * INSTRUMENTS[symbol].lot_size


def _price(data: st.DataObject, symbol: str, low: Decimal | None = None, high: Decimal | None = None,
           slack: bool = False) -> Decimal:
    """A price on the tick grid in [low, high] (the collar by default; with `slack`, now and then a little beyond)."""
    tick = INSTRUMENTS[symbol].tick_size
    lo, hi = low or COLLAR[symbol][0], high or COLLAR[symbol][1]
    first, last = int(lo / tick), int(hi / tick)
    if slack and data.draw(st.integers(0, 9)) == 0:
        first, last = first * 95 // 100, last * 105 // 100
    return data.draw(st.integers(first, last)) * tick


def _id(log: dict, prefix: str) -> str:
    """An id from the example's own counter: ids from a shared one would make draws differ between runs."""
    log["n"] += 1
    return f"p-{prefix}-{log['n']}"


def _pick(data: st.DataObject, book: Book, *, open_only: bool = False, unknown: bool = False) -> Order | str | None:
    """Mostly an open order; now and then a closed one (unless `open_only`) or, with `unknown`, an unknown id."""
    roll = data.draw(st.integers(0, 9))
    if unknown and roll == 0:
        return "O-unknown"
    ids = sorted(oid for oid, o in book.orders.items() if o.is_open or (roll == 1 and not open_only))
    if not ids:
        return None
    return book.orders[data.draw(st.sampled_from(ids))]


def do_submit(book: Book, data: st.DataObject, log: dict) -> None:
    symbol = data.draw(st.sampled_from(SYMBOLS))
    side = data.draw(st.sampled_from([Side.BUY, Side.SELL]))
    kind = data.draw(st.sampled_from([OrderType.LIMIT, OrderType.LIMIT, OrderType.MARKET]))
    price = _price(data, symbol, slack=True) if kind is OrderType.LIMIT else None
    n = _id(log, "submit")
    cmd = submit(command_id=n, client_order_id=n, symbol=symbol, side=side, type=kind,
                 quantity=_lots(data, symbol), price=price)
    log["commands"].append(cmd)
    book.command(cmd)


def do_cancel(book: Book, data: st.DataObject, log: dict) -> None:
    target = _pick(data, book, unknown=True)
    if target is not None:
        cmd = cancel(target if isinstance(target, str) else target.order_id, command_id=_id(log, "cancel"))
        log["commands"].append(cmd)
        book.command(cmd)


def do_replace(book: Book, data: st.DataObject, log: dict) -> None:
    working = sorted(oid for oid, o in book.orders.items() if o.status in (S.NEW, S.PARTIALLY_FILLED))
    if working and data.draw(st.integers(0, 4)) > 0:
        order = book.orders[data.draw(st.sampled_from(working))]
    else:
        order = _pick(data, book, open_only=True)  # pending ones: refused
    if order is None:
        return
    change = data.draw(st.sampled_from(["quantity", "price", "both"]))
    quantity = _lots(data, order.symbol) if change != "price" else None
    price = _price(data, order.symbol, slack=True) if change != "quantity" else None
    cmd = replace(order.order_id, quantity=quantity, price=price, command_id=_id(log, "replace"))
    log["commands"].append(cmd)
    book.command(cmd)


def do_retry(book: Book, data: st.DataObject, log: dict) -> None:
    """A client retry: the command was applied once already, so no state changes (its outputs may be sent again)."""
    if log["commands"]:
        before = book.account
        outcome = book.command(data.draw(st.sampled_from(log["commands"])))
        assert (outcome.account, outcome.orders) == (before, ())


def do_kill(book: Book, data: st.DataObject, log: dict) -> None:
    engaged = data.draw(st.sampled_from([True, False, False]))
    book.command(kill_switch(engaged, "property", command_id=_id(log, "kill")))


def _fill_terms(data: st.DataObject, order: Order) -> dict:
    lot = INSTRUMENTS[order.symbol].lot_size
    leaves_lots = int((order.quantity - order.filled_quantity) / lot)
    if order.is_open and leaves_lots > 0 and data.draw(st.integers(0, 9)) > 0:
        qty = data.draw(st.integers(1, leaves_lots)) * lot
    else:
        qty = (leaves_lots + 1) * lot  # beyond the leaves, or on a closed order: refused
    # At or better than the limit, within the collar. A risk-rejected order may have a limit
    # outside the collar, or (a market order) no guard at all; such fills are refused anyway.
    low, high = COLLAR[order.symbol]
    limit = order.price if order.price is not None else order.limit_guard
    if limit is None:
        limit = high if order.side is Side.BUY else low
    limit = min(max(limit, low), high)
    px = _price(data, order.symbol, high=limit) if order.side is Side.BUY else _price(data, order.symbol, low=limit)
    return {"last_qty": qty, "last_px": px}


def do_venue(book: Book, data: st.DataObject, log: dict) -> None:
    order = _pick(data, book, unknown=True)
    if order is None:
        return
    if isinstance(order, str):
        report = venue_report(order, K.ACCEPTED, report_id=_id(log, "venue"))
    else:
        anything = data.draw(st.integers(0, 4)) == 0  # now and then a report the status does not allow
        kind = data.draw(st.sampled_from(list(K) if anything else LIKELY[order.status]))
        kw: dict = {}
        if kind is K.FILL:
            kw = _fill_terms(data, order)
        report = venue_report(order.order_id, kind, report_id=_id(log, "venue"), **kw)
    if book.report(report).dead_letter is None:
        log["reports"].append(report)


def do_resend(book: Book, data: st.DataObject, log: dict) -> None:
    """The venue sends an applied report again: no state changes (its report may be sent again)."""
    if log["reports"]:
        before = book.account
        outcome = book.report(data.draw(st.sampled_from(log["reports"])))
        assert (outcome.account, outcome.orders, outcome.venue, outcome.dead_letter) == (before, (), (), None)


ACTIONS: list[Callable[[Book, st.DataObject, dict], None]] = [
    do_submit, do_submit, do_submit, do_submit,
    do_venue, do_venue, do_venue, do_venue, do_venue, do_venue,
    do_cancel, do_replace, do_replace, do_retry, do_resend, do_kill,
]


@settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_sequence_of_commands_and_reports_keeps_invariants_and_frees_everything_once_closed(data):
    book = Book()  # checks assert_invariants after every step
    log: dict = {"n": 0, "commands": [], "reports": []}
    for _ in range(data.draw(st.integers(1, 60), label="steps")):
        data.draw(st.sampled_from(ACTIONS), label="action")(book, data, log)

    for order in list(book.orders.values()):
        if order.is_open:
            outcome = book.venue(order.order_id, VenueReportKind.CANCELED)
            assert outcome.dead_letter is None, outcome.dead_letter

    assert book.account.open_count == 0
    assert {asset: bal.reserved for asset, bal in book.account.balances.items() if bal.reserved} == {}
    assert {asset: qty for asset, qty in book.account.open_buys.items() if qty} == {}
    for order in book.orders.values():
        assert [r.seq for r in book.executions(order.order_id)] == list(range(1, order.exec_seq + 1))
