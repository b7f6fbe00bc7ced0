"""Pre-trade risk (SEC 15c3-5 style): each check returns a reason or None; the OMS denies.

Reason codes are stable strings; where FIX OrdRejReason (tag 103) has a value, it is kept
beside the code.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from atlas.core.commands import SubmitOrder
from atlas.core.instruments import Instrument
from atlas.core.values import ZERO, OrderType, Side
from atlas.oms.state import AccountState


class RejectCode(str, enum.Enum):
    KILL_SWITCH_GLOBAL = "KILL_SWITCH_GLOBAL"
    KILL_SWITCH = "KILL_SWITCH"
    UNKNOWN_SYMBOL = "UNKNOWN_SYMBOL"
    SYMBOL_RESTRICTED = "SYMBOL_RESTRICTED"
    SYMBOL_HALTED = "SYMBOL_HALTED"
    INVALID_QUANTITY = "INVALID_QUANTITY"
    INVALID_PRICE = "INVALID_PRICE"
    MAX_ORDER_QUANTITY = "MAX_ORDER_QUANTITY"
    NO_REFERENCE_PRICE = "NO_REFERENCE_PRICE"
    PRICE_COLLAR = "PRICE_COLLAR"
    MAX_ORDER_NOTIONAL = "MAX_ORDER_NOTIONAL"
    RATE_LIMIT = "RATE_LIMIT"
    MAX_OPEN_ORDERS = "MAX_OPEN_ORDERS"
    POSITION_LIMIT = "POSITION_LIMIT"
    INSUFFICIENT_FUNDS = "INSUFFICIENT_FUNDS"
    DUPLICATE_ORDER = "DUPLICATE_ORDER"
    INVALID_COMMAND = "INVALID_COMMAND"
    VENUE_REJECTED = "VENUE_REJECTED"
    # Cancel / replace rejects (FIX CxlRejReason, tag 102).
    TOO_LATE = "TOO_LATE"
    UNKNOWN_ORDER = "UNKNOWN_ORDER"
    ALREADY_PENDING = "ALREADY_PENDING"


FIX_REASON = {
    RejectCode.UNKNOWN_SYMBOL: 1,
    RejectCode.SYMBOL_HALTED: 2,
    RejectCode.MAX_ORDER_QUANTITY: 3,
    RejectCode.MAX_ORDER_NOTIONAL: 3,
    RejectCode.POSITION_LIMIT: 3,
    RejectCode.UNKNOWN_ORDER: 5,
    RejectCode.DUPLICATE_ORDER: 6,
    RejectCode.INVALID_QUANTITY: 13,
    RejectCode.PRICE_COLLAR: 16,
    RejectCode.INVALID_PRICE: 18,
    RejectCode.TOO_LATE: 0,
    RejectCode.ALREADY_PENDING: 3,
}


@dataclass(frozen=True)
class Reject:
    """Why an order or request is refused."""

    code: RejectCode
    message: str

    def __str__(self) -> str:
        return f"{self.code.value}: {self.message}"


@dataclass(frozen=True)
class Market:
    """What the OMS knows of the market when it decides: the pure core's only view of it."""

    instruments: dict[str, Instrument]
    reference_prices: dict[str, Decimal] = field(default_factory=dict)
    halted: frozenset[str] = frozenset()
    global_kill: bool = False

    def reference(self, symbol: str) -> Decimal | None:
        price = self.reference_prices.get(symbol)
        if price is not None:
            return price
        instrument = self.instruments.get(symbol)
        return instrument.reference_price if instrument else None


@dataclass(frozen=True)
class Reservation:
    """Funds an order holds: `amount` of `asset`, at `unit_price` per unit for buys."""

    asset: str
    amount: Decimal
    unit_price: Decimal | None
    limit_guard: Decimal | None


def _bps(price: Decimal, bps: int) -> Decimal:
    return price * bps / Decimal(10_000)


def collar_bounds(reference: Decimal, collar_bps: int, tick: Decimal) -> tuple[Decimal, Decimal]:
    """Lowest and highest acceptable price, on the tick grid."""
    width = _bps(reference, collar_bps)
    low = ((reference - width) / tick).to_integral_value(ROUND_CEILING) * tick
    high = ((reference + width) / tick).to_integral_value(ROUND_FLOOR) * tick
    return max(low, tick), high


def reservation_for(order: SubmitOrder, instrument: Instrument, market: Market, collar_bps: int) -> Reservation:
    """What an order must hold: quote at the limit (or collar) price for a buy, base for a sell."""
    guard = None
    if order.type is OrderType.MARKET:
        low, high = collar_bounds(market.reference(order.symbol) or ZERO, collar_bps, instrument.tick_size)
        guard = high if order.side is Side.BUY else low
    if order.side is Side.SELL:
        return Reservation(instrument.base, order.quantity, None, guard)
    unit = order.price if order.price is not None else guard
    return Reservation(instrument.quote, order.quantity * unit, unit, guard)


def check_terms(order: SubmitOrder, instrument: Instrument | None) -> Reject | None:
    """Static checks of quantity and price against the instrument."""
    if instrument is None:
        return Reject(RejectCode.UNKNOWN_SYMBOL, f"unknown symbol {order.symbol}")
    return check_quantity_price(order.quantity, order.price, instrument)


def check_quantity_price(quantity: Decimal, price: Decimal | None, instrument: Instrument) -> Reject | None:
    """Quantity on the lot grid within bounds; price positive and on the tick grid."""
    if quantity <= 0:
        return Reject(RejectCode.INVALID_QUANTITY, "quantity must be positive")
    if not instrument.quantity_on_lot(quantity):
        return Reject(RejectCode.INVALID_QUANTITY, f"quantity {quantity} is not a multiple of the lot size {instrument.lot_size}")
    if quantity < instrument.min_quantity or quantity > instrument.max_quantity:
        return Reject(RejectCode.INVALID_QUANTITY,
                      f"quantity must be between {instrument.min_quantity} and {instrument.max_quantity}")
    if price is not None:
        if price <= 0:
            return Reject(RejectCode.INVALID_PRICE, "price must be positive")
        if not instrument.price_on_tick(price):
            return Reject(RejectCode.INVALID_PRICE, f"price {price} is not a multiple of the tick size {instrument.tick_size}")
    return None


def check_order(order: SubmitOrder, account: AccountState, market: Market) -> Reject | None:
    """Every pre-trade check but the throttle, in a fixed order; the first failure wins."""
    if market.global_kill:
        return Reject(RejectCode.KILL_SWITCH_GLOBAL, "trading is stopped for all accounts")
    if account.killed:
        return Reject(RejectCode.KILL_SWITCH, f"trading is stopped for this account {account.kill_reason}".strip())
    instrument = market.instruments.get(order.symbol)
    reject = check_terms(order, instrument)
    if reject:
        return reject
    limits = account.limits
    if order.symbol in limits.restricted_symbols:
        return Reject(RejectCode.SYMBOL_RESTRICTED, f"{order.symbol} is restricted for this account")
    if order.symbol in market.halted:
        return Reject(RejectCode.SYMBOL_HALTED, f"{order.symbol} is halted")
    max_qty = limits.max_order_quantity.get(order.symbol)
    if max_qty is not None and order.quantity > max_qty:
        return Reject(RejectCode.MAX_ORDER_QUANTITY, f"quantity {order.quantity} exceeds the limit {max_qty}")
    reference = market.reference(order.symbol)
    if reference is None:
        return Reject(RejectCode.NO_REFERENCE_PRICE, f"no reference price for {order.symbol}")
    if order.price is not None:
        low, high = collar_bounds(reference, limits.price_collar_bps, instrument.tick_size)
        if not low <= order.price <= high:
            return Reject(RejectCode.PRICE_COLLAR, f"price {order.price} is outside the collar [{low}, {high}]")
    notional = order.quantity * (order.price if order.price is not None else reference)
    if notional > limits.max_order_notional:
        return Reject(RejectCode.MAX_ORDER_NOTIONAL, f"notional {notional} exceeds the limit {limits.max_order_notional}")
    if account.open_count >= limits.max_open_orders:
        return Reject(RejectCode.MAX_OPEN_ORDERS, f"{limits.max_open_orders} orders are open already")
    if order.side is Side.BUY:
        cap = limits.max_position.get(instrument.base)
        held = account.balance(instrument.base).total + account.open_buys.get(instrument.base, ZERO)
        if cap is not None and held + order.quantity > cap:
            return Reject(RejectCode.POSITION_LIMIT, f"{instrument.base} position would reach {held + order.quantity}, limit {cap}")
    need = reservation_for(order, instrument, market, limits.price_collar_bps)
    available = account.balance(need.asset).available
    if need.amount > available:
        return Reject(RejectCode.INSUFFICIENT_FUNDS, f"needs {need.amount} {need.asset}, {available} available")
    return None


def take_throttle_token(account: AccountState, now_ms: int) -> tuple[int, int] | None:
    """Refill the account's token bucket to `now_ms` and take one order; None when empty."""
    rate = account.limits.max_orders_per_second
    capacity = rate * 1000
    elapsed = max(0, now_ms - account.throttle_ts)
    tokens = capacity if account.throttle_ts == 0 else min(capacity, account.throttle_tokens + elapsed * rate)
    if tokens < 1000:
        return None
    return tokens - 1000, max(now_ms, account.throttle_ts)
