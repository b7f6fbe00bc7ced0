"""Builders shared by every test: instruments, markets, accounts, commands, venue reports, a Book.

Decimals are written as strings ("0.5"), never floats. Ids come from one counter, so every
command and venue report a test builds is unique unless the test passes its own id.
"""
from __future__ import annotations

import itertools
from collections.abc import Mapping
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

from atlas.audit.format import AuditRecord
from atlas.core.accounts import AccountConfig, Limits
from atlas.core.commands import CancelOrder, ReplaceOrder, SetAccountKillSwitch, SetLimits, SubmitOrder
from atlas.core.events import ExecutionReport, VenueReport, VenueReportKind, VenueRequest
from atlas.core.instruments import Instrument, load_instruments
from atlas.core.values import ZERO, OrderType, Side, TimeInForce, order_id_for
from atlas.oms.engine import (
    Command, Outcome, apply_command, apply_venue_report, needs_open_orders, new_account, orders_needed,
)
from atlas.oms.risk import Market
from atlas.oms.state import AccountState, Order
from atlas.venue.exchange import SymbolVenue
from atlas.venue.market_maker import MarketParams

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "config"
SCHEMAS = ROOT / "schemas"
ACCOUNTS_FILE = CONFIG / "accounts.demo.json"

T0 = 1_700_000_000_000  # a plausible epoch-millisecond start for every test clock
ALICE_BALANCES = {"USD": "1000000", "BTC": "10", "ETH": "100", "SOL": "1000"}

_ids = itertools.count(1)


def D(value: str | int | Decimal) -> Decimal:
    """A Decimal from a string or an int (a float here would be a bug in the test)."""
    if isinstance(value, float):
        raise TypeError("write decimals in tests as strings")
    return Decimal(value)


def next_id(prefix: str) -> str:
    return f"{prefix}-{next(_ids)}"


@cache
def _instruments() -> dict[str, Instrument]:
    return load_instruments(CONFIG / "instruments.json")


def instruments() -> dict[str, Instrument]:
    """The instruments of `config/instruments.json`, keyed by symbol (a fresh dict each call)."""
    return dict(_instruments())


def market(**overrides: Any) -> Market:
    """A Market over the configured instruments: no mid prices, nothing halted, no global kill."""
    fields: dict[str, Any] = {"instruments": instruments()}
    fields.update(overrides)
    return Market(**fields)


def limits(**overrides: Any) -> Limits:
    """The demo accounts' limits (`config/accounts.demo.json`), with overrides."""
    fields: dict[str, Any] = {
        "max_order_notional": "1000000",
        "max_order_quantity": {"BTC-USD": "10", "ETH-USD": "200", "SOL-USD": "5000"},
        "max_position": {"BTC": "50", "ETH": "1000", "SOL": "50000"},
        "price_collar_bps": 1000,
        "max_orders_per_second": 50,
        "max_open_orders": 500,
    }
    fields.update(overrides)
    return Limits.model_validate(fields)


def account(balances: Mapping[str, str | Decimal] | None = None, limits: Limits | None = None,
            account_id: str = "alice") -> AccountState:
    """A fresh account as `new_account` builds it: alice's deposits and limits unless told otherwise."""
    config = AccountConfig(account_id=account_id, api_key_sha256="0" * 64,
                           balances=dict(ALICE_BALANCES if balances is None else balances),
                           limits=limits if limits is not None else _default_limits())
    return new_account(config, _default_limits())


def _default_limits() -> Limits:
    return limits()  # `account` shadows `limits` with its parameter


def submit(**overrides: Any) -> SubmitOrder:
    """A SubmitOrder for alice: BTC-USD BUY LIMIT 0.5 @ 64000 GTC, with a unique command and client order id."""
    n = next(_ids)
    fields: dict[str, Any] = {
        "command_id": f"submit-{n}", "account_id": "alice", "client_order_id": f"cl-{n}",
        "symbol": "BTC-USD", "side": Side.BUY, "type": OrderType.LIMIT, "quantity": "0.5", "price": "64000",
    }
    if OrderType(overrides.get("type", OrderType.LIMIT)) is OrderType.MARKET and "price" not in overrides:
        fields["price"] = None
    fields.update(overrides)
    return SubmitOrder.model_validate(fields)


def cancel(order_id: str, **overrides: Any) -> CancelOrder:
    """A CancelOrder from alice with a unique command id."""
    fields: dict[str, Any] = {"command_id": next_id("cancel"), "account_id": "alice", "order_id": order_id}
    fields.update(overrides)
    return CancelOrder.model_validate(fields)


def replace(order_id: str, quantity: str | Decimal | None = None, price: str | Decimal | None = None,
            **overrides: Any) -> ReplaceOrder:
    """A ReplaceOrder from alice with a unique command id."""
    fields: dict[str, Any] = {"command_id": next_id("replace"), "account_id": "alice", "order_id": order_id,
                              "quantity": quantity, "price": price}
    fields.update(overrides)
    return ReplaceOrder.model_validate(fields)


def kill_switch(engaged: bool, reason: str = "", **overrides: Any) -> SetAccountKillSwitch:
    fields: dict[str, Any] = {"command_id": next_id("kill"), "account_id": "alice", "engaged": engaged,
                              "reason": reason}
    fields.update(overrides)
    return SetAccountKillSwitch.model_validate(fields)


def set_limits(new_limits: Limits, **overrides: Any) -> SetLimits:
    fields: dict[str, Any] = {"command_id": next_id("limits"), "account_id": "alice", "limits": new_limits}
    fields.update(overrides)
    return SetLimits.model_validate(fields)


def venue_report(order_id: str, kind: VenueReportKind | str, **kw: Any) -> VenueReport:
    """A VenueReport about one of alice's orders, with a unique report id."""
    fields: dict[str, Any] = {"report_id": next_id("venue"), "kind": VenueReportKind(kind), "order_id": order_id,
                              "account_id": "alice", "ts": T0}
    fields.update(kw)
    return VenueReport.model_validate(fields)


class Book:
    """One account and its orders, driven through the pure core the way the `oms` agent drives it.

    Each step loads the orders the event names (`orders_needed`, or every open one), applies the event, stores
    the returned account and merges `Outcome.orders`; then it checks `assert_invariants`.
    """

    def __init__(self, account_state: AccountState | None = None, market_state: Market | None = None,
                 check: bool = True):
        self.account = account_state if account_state is not None else account()
        self.market = market_state if market_state is not None else market()
        self.orders: dict[str, Order] = {}
        self.stored_reports: dict[str, list[ExecutionReport]] = {}  # each order's, as the OMS table stores them
        self.now = T0
        self.check = check

    def _load(self, event: Command | VenueReport) -> dict[str, Order | None]:
        if needs_open_orders(event):
            return {oid: o for oid, o in self.orders.items() if o.is_open}
        return {oid: self.orders.get(oid) for oid in orders_needed(event)}

    def _store(self, outcome: Outcome) -> Outcome:
        self.account = outcome.account
        self.orders.update({o.order_id: o for o in outcome.orders})
        if not outcome.replayed:
            for report in outcome.reports:
                if report.seq > 0:
                    stored = self.stored_reports.setdefault(report.order_id, [])
                    assert report.seq == len(stored) + 1, f"report {report.exec_id} out of sequence"
                    stored.append(report)
        if self.check:
            assert_invariants(self.account, self.orders)
        return outcome

    def command(self, cmd: Command, ts: int | None = None) -> Outcome:
        """Apply a client command; the clock moves 100 ms per command unless `ts` is given."""
        self.now = ts if ts is not None else self.now + 100
        return self._store(apply_command(self.account, self._load(cmd), cmd, self.market, self.now,
                                         history=self.history))

    def report(self, report: VenueReport) -> Outcome:
        """Apply a venue report."""
        return self._store(apply_venue_report(self.account, self._load(report), report, self.market,
                                              history=self.history))

    def venue(self, order_id: str, kind: VenueReportKind | str, **kw: Any) -> Outcome:
        """Build and apply a venue report."""
        return self.report(venue_report(order_id, kind, **kw))

    def submit(self, **overrides: Any) -> Order:
        """Submit an order and return it as stored."""
        cmd = submit(**overrides)
        self.command(cmd)
        return self.orders[order_id_for(cmd.account_id, cmd.client_order_id)]

    def place(self, **overrides: Any) -> Order:
        """Submit an order and have the venue accept it; returns the order (NEW)."""
        order = self.submit(**overrides)
        self.venue(order.order_id, "ACCEPTED")
        return self.orders[order.order_id]

    def fill(self, order_id: str, qty: str | Decimal, px: str | Decimal) -> Outcome:
        return self.venue(order_id, "FILL", last_qty=qty, last_px=px)

    def order(self, order_id: str) -> Order:
        return self.orders[order_id]

    def executions(self, order_id: str) -> list[ExecutionReport]:
        """The order's execution reports so far, oldest first."""
        return list(self.stored_reports.get(order_id, []))

    def history(self, order: Order) -> list[ExecutionReport]:
        """The order's reports newest first, as the agent hands them to a replay."""
        return self.executions(order.order_id)[::-1]

    def balance(self, asset: str) -> tuple[Decimal, Decimal]:
        """(available, reserved) of an asset."""
        bal = self.account.balance(asset)
        return bal.available, bal.reserved


# -- the venue ----------------------------------------------------------------------------

QUIET = MarketParams(volatility=Decimal(0), spread_bps=Decimal(10), liquidity=100, levels=3)  # 0.01 BTC a level


def btc_venue(params: MarketParams = QUIET, seed: int = 7) -> SymbolVenue:
    """BTC-USD's venue, its mid at 65,000."""
    return SymbolVenue(instruments()["BTC-USD"], params, seed, mid=Decimal("65000.00"))


def venue_request(order_id: str, kind: str = "new", *, account_id: str = "alice", side: Side = Side.BUY,
                  order_type: OrderType = OrderType.LIMIT, tif: TimeInForce = TimeInForce.GTC, quantity: str = "0.01",
                  price: str | None = "64000.00", guard: str | None = None, request_id: str | None = None) -> VenueRequest:
    """A request from the OMS to BTC-USD's venue."""
    return VenueRequest(request=kind, request_id=request_id or f"{order_id}-{kind}", order_id=order_id,
                        account_id=account_id, symbol="BTC-USD", side=side, type=order_type, time_in_force=tif,
                        quantity=D(quantity), price=None if price is None else D(price),
                        limit_guard=None if guard is None else D(guard), ts=T0)


def required_reservation(order: Order) -> Decimal:
    """What an open order must hold: its leaves (at the reserve price for buys), or a pending replace's if more."""
    if not order.is_open:
        return ZERO

    def need(quantity: Decimal, unit: Decimal | None) -> Decimal:
        leaves = max(quantity - order.filled_quantity, ZERO)
        return leaves if order.side is Side.SELL else leaves * unit

    held = need(order.quantity, order.reserve_price)
    pending = order.pending_replace
    if pending is not None:
        unit = pending.price if pending.price is not None else order.reserve_price
        held = max(held, need(pending.quantity, unit))
    return held


def assert_invariants(account_state: AccountState, orders: Mapping[str, Order]) -> None:
    """The account's books agree with its orders; call after every step."""
    symbols = instruments()
    mine = [o for o in orders.values() if o.account_id == account_state.account_id]
    open_orders = [o for o in mine if o.is_open]
    assets = set(account_state.balances) | set(account_state.deposits) | set(account_state.net_fills)

    for asset in assets:
        bal = account_state.balance(asset)
        assert bal.available >= 0, f"{asset} available is negative: {bal}"
        assert bal.reserved >= 0, f"{asset} reserved is negative: {bal}"
        held = sum((o.reserved for o in open_orders if o.reserve_asset == asset), ZERO)
        assert bal.reserved == held, f"{asset} reserved {bal.reserved} != {held} held by open orders"
        expected = account_state.deposits.get(asset, ZERO) + account_state.net_fills.get(asset, ZERO)
        assert bal.total == expected, f"{asset} total {bal.total} != deposits + net fills {expected}"

    for o in mine:
        assert o.filled_quantity <= o.quantity, f"{o.order_id} filled {o.filled_quantity} > quantity {o.quantity}"
        assert o.filled_quantity >= 0 and o.reserved >= 0, f"{o.order_id} has negative fills or reservation"
        if o.is_open:
            assert o.filled_quantity + o.leaves_quantity == o.quantity, f"{o.order_id} cum + leaves != quantity"
            assert o.reserved == required_reservation(o), (
                f"{o.order_id} ({o.status.value}) holds {o.reserved}, needs {required_reservation(o)}")
        else:
            assert o.reserved == 0, f"closed order {o.order_id} ({o.status.value}) still holds {o.reserved}"
            assert o.pending_replace is None, f"closed order {o.order_id} has a pending replace"

    # The account's net fills are what its orders' fills add up to.
    fills: dict[str, Decimal] = {}
    for o in mine:
        if o.filled_quantity:
            instrument = symbols[o.symbol]
            sign = 1 if o.side is Side.BUY else -1
            fills[instrument.base] = fills.get(instrument.base, ZERO) + sign * o.filled_quantity
            fills[instrument.quote] = fills.get(instrument.quote, ZERO) - sign * o.filled_notional
    net = {asset: qty for asset, qty in account_state.net_fills.items() if qty != 0}
    assert net == {asset: qty for asset, qty in fills.items() if qty != 0}, f"net_fills {net} != order fills {fills}"

    assert account_state.open_count == len(open_orders), (
        f"open_count {account_state.open_count} != {len(open_orders)} open orders")

    buys: dict[str, Decimal] = {}
    for o in open_orders:
        if o.side is Side.BUY:
            base = symbols[o.symbol].base
            buys[base] = buys.get(base, ZERO) + o.leaves_quantity
    recorded = {asset: qty for asset, qty in account_state.open_buys.items() if qty != 0}
    assert recorded == {asset: qty for asset, qty in buys.items() if qty != 0}, (
        f"open_buys {recorded} != leaves of open buys {buys}")


AUDIT_T0 = 1_795_600_000_000  # 2026-11-25 09:06:40 UTC


def audit_records(first: int, count: int, topic: str = "atlas.executions", partition: int = 3, step: int = 1) -> list:
    """`count` audit records of one partition from offset `first`, `step` apart, one ms apart in time."""
    return [AuditRecord.of(topic, partition, first + i * step, AUDIT_T0 + i, b"alice",
                           f'{{"n": {first + i}}}'.encode(), [("trace", b"\x01\x02")]) for i in range(count)]


def execution_report(exec_type: str, status: str, *, order_id: str = "O1", last_qty: str = "0",
                     last_px: str | None = None, cum_qty: str = "0", reason: str | None = None,
                     order_type: str | None = "LIMIT") -> ExecutionReport:
    """An execution report of alice's BUY 2 BTC-USD @ 100 (what the metrics and traces read of one)."""
    return ExecutionReport(exec_id=f"{order_id}/{exec_type}", seq=1, cause_id="c", order_id=order_id,
                           client_order_id="c1", account_id="alice", symbol="BTC-USD", side="BUY", type=order_type,
                           time_in_force="GTC", exec_type=exec_type, status=status, quantity=Decimal("2"),
                           price=Decimal("100"), last_qty=Decimal(last_qty),
                           last_px=Decimal(last_px) if last_px else None, cum_qty=Decimal(cum_qty),
                           leaves_qty=Decimal("2") - Decimal(cum_qty), avg_px=None, reason=reason, ts=1)


def traced(agent: str, topic: str, partition: int, offset: int, headers: Any, *, sends: list | None = None,
           order_id: str | None = None, body: Any = None, starts: bool = True) -> tuple[Any, list]:
    """`tracing.traced` over one record: the span current while its step ran (which calls `body`), and its sends."""
    from types import SimpleNamespace

    from opentelemetry import trace

    from atlas.runtime import tracing

    seen = []

    def step(message: Any) -> list:
        seen.append(trace.get_current_span())
        if body is not None:
            body()
        return list(sends or ())
    record = SimpleNamespace(topic=topic, partition=partition, offset=offset, headers=headers)
    stamped = tracing.traced(agent, record, step, (lambda _: order_id) if order_id else None, starts)
    return (seen[0] if seen else None), stamped
