"""The OMS core: `(account, orders, event) -> Outcome`, pure and synchronous.

The agent loads the account and the orders an event names (`orders_needed`), calls
`apply_command` or `apply_venue_report`, stores what comes back and sends its reports
and venue requests. Time is the causing message's timestamp, so a replay of the same
message computes the same outcome.

An event is applied once. One read again after a crash (`reread`, which the agent knows
from the offsets the account records), a command retried under the same id (the order's
recent ids) and a venue report sent again (at or below the order's venue mark) only send
again what they caused, found among the order's latest reports (`history`).
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from atlas.core.accounts import AccountConfig, Limits
from atlas.core.commands import CancelOrder, ReplaceOrder, SetAccountKillSwitch, SetLimits, SubmitOrder
from atlas.core.events import ExecType, ExecutionReport, OrdStatus, VenueReport, VenueReportKind, VenueRequest
from atlas.core.values import ZERO, OrderType, Side, order_id_for
from atlas.oms.lifecycle import InvalidTransition, LifecycleEvent, allows, next_status
from atlas.oms.positions import Holding
from atlas.oms.risk import (
    Market, Reject, RejectCode, check_order, check_quantity_price, collar_bounds, reservation_for, take_throttle_token,
)
from atlas.oms.state import LAYOUT, AccountState, Balance, Order, PendingReplace

Command = SubmitOrder | CancelOrder | ReplaceOrder | SetLimits | SetAccountKillSwitch
# An order's reports, newest first (the agent reads them from the table): where a replay finds what an event caused.
History = Callable[[Order], Iterable[ExecutionReport]]
RECENT_ACCOUNT_COMMANDS = 32


def no_history(order: Order) -> Iterable[ExecutionReport]:
    """A history with nothing in it: an event recognised as applied is then sent nothing again."""
    return ()


class InvariantViolation(Exception):
    """State that must never exist: the worker stops rather than store it."""


@dataclass(frozen=True)
class Outcome:
    """What one event changed and what it emits."""

    account: AccountState
    orders: tuple[Order, ...] = ()
    reports: tuple[ExecutionReport, ...] = ()
    venue: tuple[VenueRequest, ...] = ()
    # Set when the event cannot be applied (e.g. a venue report for an unknown order).
    dead_letter: str | None = None
    # True when the event was applied before: its reports and venue requests are sent again,
    # as possible duplicates (FIX PossDupFlag), since the first sends may have been lost.
    replayed: bool = False


@dataclass
class _Step:
    """Mutable scratch for building an Outcome inside one call."""

    account: AccountState
    orders: dict[str, Order] = field(default_factory=dict)
    reports: list[ExecutionReport] = field(default_factory=list)
    venue: list[VenueRequest] = field(default_factory=list)

    def done(self, dead_letter: str | None = None, *, replayed: bool = False) -> Outcome:
        return Outcome(self.account, tuple(self.orders.values()), tuple(self.reports), tuple(self.venue), dead_letter,
                       replayed)


def new_account(config: AccountConfig, default_limits: Limits) -> AccountState:
    """An account's state before its first event: the deposits of the accounts file."""
    return AccountState(
        account_id=config.account_id, layout=LAYOUT,
        balances={asset: Balance(available=amount) for asset, amount in config.balances.items()},
        deposits=dict(config.balances),
        limits=config.limits or default_limits,
    )


def orders_needed(event: Command | VenueReport) -> tuple[str, ...]:
    """Ids of the orders an event reads, for the agent to load before calling the core."""
    if isinstance(event, SubmitOrder):
        return (order_id_for(event.account_id, event.client_order_id),)
    if isinstance(event, (CancelOrder, ReplaceOrder, VenueReport)):
        return (event.order_id,)
    return ()


def needs_open_orders(event: Command | VenueReport) -> bool:
    """True when the event reads every open order of the account (engaging its kill switch)."""
    return isinstance(event, SetAccountKillSwitch) and event.engaged


def terms_digest(cmd: SubmitOrder) -> str:
    """Fingerprint of an order's terms (not of its command id)."""
    terms = cmd.model_dump_json(include={"client_order_id", "symbol", "side", "type", "quantity", "price", "time_in_force"})
    return hashlib.sha256(terms.encode()).hexdigest()[:32]


# -- reports -------------------------------------------------------------------------


def _report(step: _Step, order: Order, exec_type: ExecType, cause_id: str, ts: int, *,
            last_qty: Decimal = ZERO, last_px: Decimal | None = None, reason: str | None = None) -> Order:
    seq = order.exec_seq + 1
    report = _order_report(order, exec_type, cause_id, ts, seq=seq, exec_id=f"{order.order_id}-{seq}",
                           last_qty=last_qty, last_px=last_px, reason=reason)
    order = order.model_copy(update={"exec_seq": seq, "updated_at": ts})
    step.reports.append(report)
    step.orders[order.order_id] = order
    return order


def _order_report(order: Order, exec_type: ExecType, cause_id: str, ts: int, *, seq: int, exec_id: str,
                  last_qty: Decimal = ZERO, last_px: Decimal | None = None, reason: str | None = None) -> ExecutionReport:
    """A report of the order as it is now."""
    return ExecutionReport(
        exec_id=exec_id, seq=seq, cause_id=cause_id, order_id=order.order_id,
        client_order_id=order.client_order_id, account_id=order.account_id, symbol=order.symbol,
        side=order.side, type=order.type, time_in_force=order.time_in_force, exec_type=exec_type,
        status=order.status, quantity=order.quantity, price=order.price, last_qty=last_qty, last_px=last_px,
        cum_qty=order.filled_quantity, leaves_qty=order.leaves_quantity, avg_px=order.avg_price,
        reason=reason, ts=ts,
    )


def _venue(step: _Step, order: Order, request: str, ts: int, quantity: Decimal, price: Decimal | None) -> None:
    step.venue.append(_venue_request(order, request, f"{order.order_id}-{order.exec_seq}", quantity, price, ts))


def _venue_request(order: Order, request: str, request_id: str, quantity: Decimal, price: Decimal | None,
                   ts: int) -> VenueRequest:
    return VenueRequest(
        request=request, request_id=request_id, order_id=order.order_id, account_id=order.account_id,
        symbol=order.symbol, side=order.side, type=order.type, time_in_force=order.time_in_force,
        quantity=quantity, price=price, limit_guard=order.limit_guard, ts=ts,
    )


def unknown_order_report(account_id: str, order_id: str, client_order_id: str, exec_type: ExecType,
                         cause_id: str, reason: str, ts: int) -> ExecutionReport:
    """A reject about an order the OMS does not know (its terms are unknown too)."""
    return ExecutionReport(
        exec_id=f"{order_id}-x-{cause_id}", seq=0, cause_id=cause_id, order_id=order_id,
        client_order_id=client_order_id, account_id=account_id, symbol=None, side=None, type=None,
        time_in_force=None, exec_type=exec_type, status=OrdStatus.REJECTED, quantity=None, price=None,
        last_qty=ZERO, last_px=None, cum_qty=ZERO, leaves_qty=ZERO, avg_px=None, reason=reason, ts=ts,
    )


# -- balances --------------------------------------------------------------------------


def _move(account: AccountState, asset: str, *, available: Decimal = ZERO, reserved: Decimal = ZERO) -> AccountState:
    bal = account.balance(asset)
    new = Balance(available=bal.available + available, reserved=bal.reserved + reserved)
    if new.available < 0 or new.reserved < 0:
        raise InvariantViolation(f"{account.account_id} {asset} would go negative: {new}")
    return account.model_copy(update={"balances": {**account.balances, asset: new}})


def _required(order: Order) -> Decimal:
    """Funds the order must hold now: its leaves (and a pending replace's, if larger)."""
    if order.status.is_closed:
        return ZERO

    def need(quantity: Decimal, unit: Decimal | None) -> Decimal:
        leaves = max(quantity - order.filled_quantity, ZERO)
        return leaves if order.side is Side.SELL else leaves * unit

    required = need(order.quantity, order.reserve_price)
    if order.pending_replace is not None:
        unit = order.pending_replace.price if order.pending_replace.price is not None else order.reserve_price
        required = max(required, need(order.pending_replace.quantity, unit))
    return required


def _settle_reservation(account: AccountState, order: Order) -> tuple[AccountState, Order]:
    """Move funds between available and reserved so the order holds exactly what it needs."""
    delta = _required(order) - order.reserved
    if delta:
        account = _move(account, order.reserve_asset, available=-delta, reserved=delta)
        order = order.model_copy(update={"reserved": order.reserved + delta})
    return account, order


def _track_open(account: AccountState, before: Order | None, after: Order, base: str) -> AccountState:
    """Keep the open-order count and the open-buy quantity (of asset `base`) in step with an order's change."""
    updates: dict = {}
    if after.side is Side.BUY:
        old_leaves = before.leaves_quantity if before else ZERO
        change = after.leaves_quantity - old_leaves
        if change:
            left = account.open_buys.get(base, ZERO) + change
            updates["open_buys"] = {**account.open_buys, base: left}
    was_open = before is not None and before.is_open
    if after.is_open and not was_open:
        updates["open_count"] = account.open_count + 1
    elif was_open and not after.is_open:
        updates["open_count"] = account.open_count - 1
    return account.model_copy(update=updates) if updates else account


def _number_closed(step: _Step, order: Order) -> Order:
    """Give an order that has just closed its place among the account's closed orders (retention's queue)."""
    if order.is_open or order.closed_no:
        return order
    closed = step.account.closed + 1
    step.account = step.account.model_copy(update={"closed": closed})
    return order.model_copy(update={"closed_no": closed})


def _commit_order(step: _Step, before: Order | None, after: Order, market: Market) -> Order:
    """Settle the order's reservation and the account's open-order books after a change."""
    account, after = _settle_reservation(step.account, after)
    base = market.instruments[after.symbol].base
    step.account = _track_open(account, before, after, base)
    after = _number_closed(step, after)
    step.orders[after.order_id] = after
    return after


# -- identity and replays -------------------------------------------------------------


def event_id(event: Command | VenueReport) -> str:
    """The id under which an order remembers that an event was applied to it."""
    return f"r:{event.report_id}" if isinstance(event, VenueReport) else f"c:{event.command_id}"


def venue_position(report: VenueReport) -> tuple[int, int] | None:
    """Where the venue's log put the report, when the venue says (a report from elsewhere may not)."""
    if report.venue_offset is None or report.venue_index is None:
        return None
    return report.venue_offset, report.venue_index


def _applied(order: Order, event: Command | VenueReport) -> bool:
    """True when the order shows `event` as applied (a retried command, a venue report sent again)."""
    if isinstance(event, VenueReport):
        position = venue_position(event)
        if position is not None:
            return order.venue_mark is not None and position <= order.venue_mark
    return event_id(event) in order.recent_ids


def _mark(order: Order, event: Command | VenueReport) -> Order:
    """The order remembering that `event` was applied to it."""
    if isinstance(event, VenueReport) and (position := venue_position(event)) is not None:
        return order.model_copy(update={"venue_mark": position})
    return order.remember(event_id(event))


def _replay(step: _Step, orders: Mapping[str, Order], event: Command | VenueReport, history: History,
            reread: bool) -> Outcome | None:
    """For an event applied before: the reports and venue requests it caused, to send again; None otherwise.

    What the event emitted may not have reached Kafka before a crash; consumers drop the
    copies by `exec_id` / `request_id`. Its reports are looked for among the order's latest
    ones only: an event recognised as applied is never applied twice, even when its reports
    are too far back to send again. A message read again whose event left no mark (it was
    refused, or its order is unknown) is worked out again by the caller for what it sent
    without state: a dead letter, a reject about an unknown order.
    """
    if isinstance(event, (SetLimits, SetAccountKillSwitch)):
        # Not about one order: the account remembers its latest few such commands. An engaged
        # kill switch sent a cancel for each open order: those still waiting for the venue
        # (`orders` holds the open ones) get theirs again.
        if not (reread or event.command_id in step.account.recent_commands):
            return None
        if isinstance(event, SetAccountKillSwitch) and event.engaged:
            for order in sorted(orders.values(), key=lambda o: (o.created_at, o.order_id)):
                _resend(step, order, event.command_id, history)
        return step.done(replayed=True)
    order_id = order_id_for(event.account_id, event.client_order_id) if isinstance(event, SubmitOrder) else event.order_id
    order = orders.get(order_id)
    if order is None or not _applied(order, event):
        return None
    _resend(step, order, event.report_id if isinstance(event, VenueReport) else event.command_id, history)
    return step.done(replayed=True)


def _resend(step: _Step, order: Order, cause: str, history: History) -> None:
    """The order's reports that `cause` made, oldest first, and the venue requests they stood for, to send again."""
    found = [report for report in history(order) if report.cause_id == cause]
    for report in reversed(found):
        step.reports.append(report)
        step.venue.extend(replay_requests(order, report))


# -- commands --------------------------------------------------------------------------


def apply_command(account: AccountState, orders: Mapping[str, Order], cmd: Command, market: Market, ts: int, *,
                  history: History = no_history, reread: bool = False) -> Outcome:
    """Apply a client command to an account (a command applied before only re-sends what it emitted)."""
    step = _Step(account)
    replayed = _replay(step, orders, cmd, history, reread)
    if replayed is not None:
        return replayed
    if reread:
        return _stateless(account, _command(_Step(account), orders, cmd, market, ts))
    return _command(step, orders, cmd, market, ts)


def _command(step: _Step, orders: Mapping[str, Order], cmd: Command, market: Market, ts: int) -> Outcome:
    account = step.account
    if isinstance(cmd, SubmitOrder):
        return _submit(step, orders, cmd, market, ts)
    if isinstance(cmd, CancelOrder):
        return _cancel(step, orders.get(cmd.order_id), cmd, market, ts)
    if isinstance(cmd, ReplaceOrder):
        return _replace(step, orders.get(cmd.order_id), cmd, market, ts)
    if isinstance(cmd, (SetLimits, SetAccountKillSwitch)):
        recent = (account.recent_commands + (cmd.command_id,))[-RECENT_ACCOUNT_COMMANDS:]
        step.account = account.model_copy(update={"recent_commands": recent})
        if isinstance(cmd, SetLimits):
            step.account = step.account.model_copy(update={"limits": cmd.limits})
            return step.done()
        return _kill_switch(step, orders, cmd, market, ts)
    raise TypeError(f"not a command: {cmd!r}")


def _submit(step: _Step, orders: Mapping[str, Order], cmd: SubmitOrder, market: Market, ts: int) -> Outcome:
    order_id = order_id_for(cmd.account_id, cmd.client_order_id)
    digest = terms_digest(cmd)
    existing = orders.get(order_id)
    if existing is not None:
        if existing.terms_digest == digest:
            return step.done()  # the same order again (a retry or a race): already handled
        return step.done(dead_letter=f"{RejectCode.DUPLICATE_ORDER.value}: client_order_id {cmd.client_order_id} "
                                     f"is already used by order {order_id} with other terms")
    instrument = market.instruments.get(cmd.symbol)
    reject = check_order(cmd, step.account, market)
    if reject is None:
        token = take_throttle_token(step.account, ts)
        if token is None:
            reject = Reject(RejectCode.RATE_LIMIT, f"more than {step.account.limits.max_orders_per_second} orders per second")
        else:
            step.account = step.account.model_copy(update={"throttle_tokens": token[0], "throttle_ts": token[1]})
    reservation = None
    if reject is None:
        reservation = reservation_for(cmd, instrument, market, step.account.limits.price_collar_bps)
    order = Order(
        order_id=order_id, client_order_id=cmd.client_order_id, account_id=cmd.account_id, symbol=cmd.symbol,
        side=cmd.side, type=cmd.type, time_in_force=cmd.time_in_force, quantity=cmd.quantity, price=cmd.price,
        status=OrdStatus.REJECTED if reject else OrdStatus.PENDING_NEW, reject_reason=str(reject) if reject else None,
        created_at=ts, updated_at=ts,
        reserve_asset=reservation.asset if reservation else (instrument.quote if instrument else ""),
        reserve_price=reservation.unit_price if reservation else None,
        limit_guard=reservation.limit_guard if reservation else None,
        terms_digest=digest, number=step.account.orders + 1, recent_ids=(event_id(cmd),), acknowledged=False,
    )
    step.account = step.account.model_copy(update={"orders": order.number})
    if reject:
        _report(step, _number_closed(step, order), ExecType.REJECTED, cmd.command_id, ts, reason=str(reject))
        return step.done()
    order = _commit_order(step, None, order, market)
    order = _report(step, order, ExecType.PENDING_NEW, cmd.command_id, ts)
    _venue(step, order, "new", ts, order.quantity, order.price)
    return step.done()


def _stateless(account: AccountState, outcome: Outcome) -> Outcome:
    """Of what an event read again computes once more, only what it sent without changing state, as a possible
    duplicate: its dead letter and its rejects about unknown orders (seq 0). Its state changes are dropped: a
    message read again is never applied twice."""
    reports = tuple(r for r in outcome.reports if r.seq == 0)
    return Outcome(account, reports=reports, dead_letter=outcome.dead_letter, replayed=True)


# Refused cancels and replaces an order's history keeps (too late, already pending); later ones are sent and
# stored nowhere (seq 0), so a client repeating a DELETE cannot grow the order's state (issue 14).
MAX_REFUSALS_KEPT = 8


def _command_reject(step: _Step, order: Order | None, cmd: CancelOrder | ReplaceOrder, exec_type: ExecType,
                    reject: Reject, ts: int) -> Outcome:
    if order is None:
        step.reports.append(unknown_order_report(cmd.account_id, cmd.order_id, "", exec_type, cmd.command_id, str(reject), ts))
        return step.done()
    if order.refusals >= MAX_REFUSALS_KEPT:
        step.reports.append(_unstored_report(order, exec_type, cmd.command_id, str(reject), ts))
        return step.done()
    order = order.model_copy(update={"refusals": order.refusals + 1})
    _report(step, _mark(order, cmd), exec_type, cmd.command_id, ts, reason=str(reject))
    return step.done()


def _unstored_report(order: Order, exec_type: ExecType, cause_id: str, reason: str, ts: int) -> ExecutionReport:
    """A refusal past MAX_REFUSALS_KEPT, which leaves the order as it is: seq 0, like a reject about an unknown order."""
    return _order_report(order, exec_type, cause_id, ts, seq=0, exec_id=f"{order.order_id}-x-{cause_id}", reason=reason)


def _cancel(step: _Step, order: Order | None, cmd: CancelOrder, market: Market, ts: int) -> Outcome:
    reject = _request_reject(order, LifecycleEvent.REQUEST_CANCEL, cmd.order_id)
    if reject:
        return _command_reject(step, order, cmd, ExecType.CANCEL_REJECTED, reject, ts)
    updated = _mark(order, cmd).model_copy(update={
        "status": next_status(order.status, LifecycleEvent.REQUEST_CANCEL, filled=order.filled_quantity, quantity=order.quantity),
    })
    updated = _report(step, updated, ExecType.PENDING_CANCEL, cmd.command_id, ts)
    _venue(step, updated, "cancel", ts, updated.quantity, updated.price)
    return step.done()


def _request_reject(order: Order | None, event: LifecycleEvent, order_id: str) -> Reject | None:
    if order is None:
        return Reject(RejectCode.UNKNOWN_ORDER, f"no order {order_id} on this account")
    if order.status.is_closed:
        return Reject(RejectCode.TOO_LATE, f"order is {order.status.value}")
    if order.status in (OrdStatus.PENDING_CANCEL, OrdStatus.PENDING_REPLACE):
        return Reject(RejectCode.ALREADY_PENDING, f"order is {order.status.value}")
    if order.status is OrdStatus.PENDING_NEW and not allows(order.status, event):
        return Reject(RejectCode.ALREADY_PENDING, "order is PENDING_NEW: the venue has not acknowledged it yet")
    if not allows(order.status, event):
        return Reject(RejectCode.TOO_LATE, f"order is {order.status.value}")
    return None


def _replace(step: _Step, order: Order | None, cmd: ReplaceOrder, market: Market, ts: int) -> Outcome:
    reject = _request_reject(order, LifecycleEvent.REQUEST_REPLACE, cmd.order_id)
    if reject is None:
        reject = _replace_terms_reject(step.account, order, cmd, market)
    if reject:
        return _command_reject(step, order, cmd, ExecType.REPLACE_REJECTED, reject, ts)
    pending = PendingReplace(quantity=cmd.quantity or order.quantity,
                             price=cmd.price if cmd.price is not None else order.price, command_id=cmd.command_id)
    updated = _mark(order, cmd).model_copy(update={"status": OrdStatus.PENDING_REPLACE, "pending_replace": pending})
    updated = _commit_order(step, order, updated, market)
    updated = _report(step, updated, ExecType.PENDING_REPLACE, cmd.command_id, ts)
    _venue(step, updated, "replace", ts, pending.quantity, pending.price)
    return step.done()


def _replace_terms_reject(account: AccountState, order: Order, cmd: ReplaceOrder, market: Market) -> Reject | None:
    if order.type is OrderType.MARKET:
        return Reject(RejectCode.INVALID_COMMAND, "a market order cannot be replaced")
    instrument = market.instruments[order.symbol]
    quantity = cmd.quantity if cmd.quantity is not None else order.quantity
    price = cmd.price if cmd.price is not None else order.price
    reject = check_quantity_price(quantity, price, instrument)
    if reject:
        return reject
    if quantity <= order.filled_quantity:
        return Reject(RejectCode.INVALID_QUANTITY, f"new quantity must exceed the filled {order.filled_quantity}")
    limits = account.limits
    max_qty = limits.max_order_quantity.get(order.symbol)
    if max_qty is not None and quantity > max_qty:
        return Reject(RejectCode.MAX_ORDER_QUANTITY, f"quantity {quantity} exceeds the limit {max_qty}")
    if quantity * price > limits.max_order_notional:
        return Reject(RejectCode.MAX_ORDER_NOTIONAL, f"notional {quantity * price} exceeds the limit {limits.max_order_notional}")
    reference = market.reference(order.symbol)
    if reference is not None and cmd.price is not None:
        low, high = collar_bounds(reference, limits.price_collar_bps, instrument.tick_size)
        if not low <= price <= high:
            return Reject(RejectCode.PRICE_COLLAR, f"price {price} is outside the collar [{low}, {high}]")
    base = instrument.base
    cap = limits.max_position.get(base)
    if order.side is Side.BUY and cap is not None and quantity > order.quantity:
        held = account.balance(base).total + account.open_buys.get(base, ZERO)
        if held + quantity - order.quantity > cap:
            return Reject(RejectCode.POSITION_LIMIT, f"{base} position would reach {held + quantity - order.quantity}, limit {cap}")
    extra = _required(order.model_copy(update={"pending_replace": PendingReplace(
        quantity=quantity, price=price, command_id="")})) - order.reserved
    available = account.balance(order.reserve_asset).available
    if extra > available:
        return Reject(RejectCode.INSUFFICIENT_FUNDS, f"needs {extra} more {order.reserve_asset}, {available} available")
    return None


def _kill_switch(step: _Step, orders: Mapping[str, Order], cmd: SetAccountKillSwitch, market: Market, ts: int) -> Outcome:
    step.account = step.account.model_copy(update={"killed": cmd.engaged, "kill_reason": cmd.reason})
    if not cmd.engaged:
        return step.done()
    # In submission order, so the venue sees the cancels in a stable order.
    for order in sorted(orders.values(), key=lambda o: (o.created_at, o.order_id)):
        # Unlike a client's cancel, this one also covers an order whose replace is pending.
        if not allows(order.status, LifecycleEvent.REQUEST_CANCEL):
            continue
        status = next_status(order.status, LifecycleEvent.REQUEST_CANCEL, filled=order.filled_quantity,
                             quantity=order.quantity)
        updated = order.model_copy(update={"status": status})
        updated = _report(step, updated, ExecType.PENDING_CANCEL, cmd.command_id, ts, reason=RejectCode.KILL_SWITCH.value)
        _venue(step, updated, "cancel", ts, updated.quantity, updated.price)
    return step.done()


# -- venue reports ---------------------------------------------------------------------

_REPORT_EVENT = {
    VenueReportKind.ACCEPTED: LifecycleEvent.ACKNOWLEDGE,
    VenueReportKind.FILL: LifecycleEvent.FILL,
    VenueReportKind.CANCELED: LifecycleEvent.CANCEL,
    VenueReportKind.REPLACED: LifecycleEvent.REPLACE,
    VenueReportKind.REJECTED: LifecycleEvent.REJECT,
    VenueReportKind.EXPIRED: LifecycleEvent.EXPIRE,
    VenueReportKind.CANCEL_REJECTED: LifecycleEvent.REJECT_CANCEL,
    VenueReportKind.REPLACE_REJECTED: LifecycleEvent.REJECT_REPLACE,
}
_REPORT_EXEC_TYPE = {
    VenueReportKind.ACCEPTED: ExecType.NEW,
    VenueReportKind.FILL: ExecType.TRADE,
    VenueReportKind.CANCELED: ExecType.CANCELED,
    VenueReportKind.REPLACED: ExecType.REPLACED,
    VenueReportKind.REJECTED: ExecType.REJECTED,
    VenueReportKind.EXPIRED: ExecType.EXPIRED,
    VenueReportKind.CANCEL_REJECTED: ExecType.CANCEL_REJECTED,
    VenueReportKind.REPLACE_REJECTED: ExecType.REPLACE_REJECTED,
}


def apply_venue_report(account: AccountState, orders: Mapping[str, Order], report: VenueReport,
                       market: Market, *, history: History = no_history, reread: bool = False) -> Outcome:
    """Apply what the venue says about one of the account's orders (one applied before only re-sends)."""
    step = _Step(account)
    replayed = _replay(step, orders, report, history, reread)
    if replayed is not None:
        return replayed
    if reread:
        return _stateless(account, _venue_report(_Step(account), orders, report, market))
    return _venue_report(step, orders, report, market)


def _venue_report(step: _Step, orders: Mapping[str, Order], report: VenueReport, market: Market) -> Outcome:
    order = orders.get(report.order_id)
    if order is None:
        return step.done(dead_letter=f"{RejectCode.UNKNOWN_ORDER.value}: venue report for unknown order {report.order_id}")
    event = _REPORT_EVENT[report.kind]
    if report.kind is VenueReportKind.FILL and not order.acknowledged:
        # The venue acknowledges an order before it fills it, so such a fill cannot be true. The
        # lifecycle refuses it on PENDING_NEW; this also covers an order whose cancel was requested
        # before the ack (PENDING_CANCEL, where fills that race the cancel do count).
        return step.done(dead_letter=f"UNACKNOWLEDGED_FILL: order {order.order_id}: a fill before the venue "
                                     "acknowledged the order")
    if event is LifecycleEvent.ACKNOWLEDGE and order.status is not OrdStatus.PENDING_NEW and allows(order.status, event):
        # A late ack changes nothing the client can see; remember it so a resend stays a no-op.
        step.orders[order.order_id] = _mark(order, report).model_copy(update={"acknowledged": True})
        return step.done()
    try:
        updated = _evolve(order, report, event)
    except InvalidTransition as exc:
        return step.done(dead_letter=f"INVALID_TRANSITION: order {order.order_id}: {exc}")
    except ValueError as exc:
        return step.done(dead_letter=f"INVALID_REPORT: order {order.order_id}: {exc}")
    if report.kind is VenueReportKind.FILL:
        step.account, spent = _apply_fill(step.account, order, report, market)
        updated = updated.model_copy(update={"reserved": updated.reserved - spent})
    updated = _commit_order(step, order, updated, market)
    reason = report.reason
    if report.kind is VenueReportKind.REJECTED:
        reason = f"{RejectCode.VENUE_REJECTED.value}: {report.reason or 'rejected by the venue'}"
    _report(step, updated, _REPORT_EXEC_TYPE[report.kind], report.report_id, report.ts,
            last_qty=report.last_qty or ZERO, last_px=report.last_px, reason=reason)
    return step.done()


def _evolve(order: Order, report: VenueReport, event: LifecycleEvent) -> Order:
    """The order after the venue's report: terms, fills and status."""
    updates: dict = {}
    quantity, price, filled, notional = order.quantity, order.price, order.filled_quantity, order.filled_notional
    if event is LifecycleEvent.FILL:
        if filled + report.last_qty > quantity:
            raise ValueError(f"fill of {report.last_qty} exceeds the leaves {quantity - filled}")
        if price is not None and (report.last_px > price if order.side is Side.BUY else report.last_px < price):
            # A venue fills a limit order at its limit or better: anything else is not a fill it made.
            raise ValueError(f"fill of a {order.side.value} at {report.last_px} is worse than its limit {price}")
        filled += report.last_qty
        notional += report.last_qty * report.last_px
        updates.update(filled_quantity=filled, filled_notional=notional)
    elif event is LifecycleEvent.REPLACE:
        pending = order.pending_replace
        if pending is None:
            raise ValueError("REPLACED without a pending replace")
        quantity = report.quantity if report.quantity is not None else pending.quantity
        price = report.price if report.price is not None else pending.price
        if quantity < filled:
            raise ValueError(f"REPLACED quantity {quantity} is below the filled {filled}")
        updates.update(quantity=quantity, price=price, pending_replace=None,
                       reserve_price=price if order.side is Side.BUY else None)
    elif event is LifecycleEvent.REJECT_REPLACE:
        updates["pending_replace"] = None
    elif event is LifecycleEvent.REJECT:
        updates["reject_reason"] = f"{RejectCode.VENUE_REJECTED.value}: {report.reason or 'rejected by the venue'}"
    status = next_status(order.status, event, filled=filled, quantity=quantity)
    if status.is_closed:
        updates["pending_replace"] = None
    updates["status"] = status
    if event is LifecycleEvent.ACKNOWLEDGE:
        updates["acknowledged"] = True
    return _mark(order, report).model_copy(update=updates)


def _apply_fill(account: AccountState, order: Order, report: VenueReport, market: Market) -> tuple[AccountState, Decimal]:
    """Pay for a fill from the order's reservation and credit the other asset; also returns the reserved funds spent."""
    instrument = market.instruments[order.symbol]
    qty, cost = report.last_qty, report.last_qty * report.last_px
    if order.side is Side.BUY:
        paid, credited, credit = instrument.quote, instrument.base, qty
        spend = cost
    else:
        paid, credited, credit = instrument.base, instrument.quote, cost
        spend = qty
    # Spend reserved funds first; a market buy filled beyond its guard takes the rest from available.
    from_reserved = min(spend, order.reserved)
    account = _move(account, paid, reserved=-from_reserved, available=-(spend - from_reserved))
    account = _move(account, credited, available=credit)
    net = dict(account.net_fills)
    net[paid] = net.get(paid, ZERO) - spend
    net[credited] = net.get(credited, ZERO) + credit
    held = account.positions.get(order.symbol) or Holding()
    positions = {**account.positions, order.symbol: held.after(order.side, qty, report.last_px)}
    return account.model_copy(update={"net_fills": net, "positions": positions}), from_reserved


def replay_requests(order: Order, report: ExecutionReport) -> tuple[VenueRequest, ...]:
    """The venue request an OMS report stood for, to send again when its event is replayed.

    Only while the venue may not have it: a copy of a request the venue has answered must not
    reach it, since an order that has left the book would trade again (the venue's own index of
    request ids is bounded), and a client may retry a submit long after its order filled.
    """
    request = {ExecType.PENDING_NEW: "new", ExecType.PENDING_CANCEL: "cancel", ExecType.PENDING_REPLACE: "replace"}
    kind = request.get(report.exec_type)
    if kind is None or order.status.is_closed:
        return ()
    if kind == "new" and order.acknowledged and order.status is not OrdStatus.PENDING_NEW:
        return ()  # the venue has accepted it
    if kind == "cancel" and order.status is not OrdStatus.PENDING_CANCEL:
        return ()  # the venue has answered that cancel
    quantity, price = order.quantity, order.price
    if kind == "replace":
        pending = order.pending_replace
        if pending is None or pending.command_id != report.cause_id:
            return ()  # the venue has answered that replace already
        quantity, price = pending.quantity, pending.price
    return (_venue_request(order, kind, report.exec_id, quantity, price, report.ts),)
