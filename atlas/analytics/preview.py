"""Pre-trade risk preview: what an order would hold and change, and whether the OMS would take it.

The console shows this before a trader submits. It runs the OMS's own `check_order` and
`reservation_for` on the account as stored, so a block here is the reject the OMS would send
(short of the order-rate throttle and of what changes between the preview and the submit).
Warnings are advice, never enforced: a notional close to the limit, little left of the asset
the order draws on, a price near the collar's edge, a position close to its limit.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from atlas.core.commands import SubmitOrder
from atlas.core.values import ZERO, Side, decimal_text
from atlas.oms.risk import Market, Reject, check_order, check_terms, collar_bounds, reservation_for
from atlas.oms.state import AccountState, Balance

# A warning fires when this share of a limit or balance is used (or this little is left).
HIGH_SHARE = Decimal("0.8")
LOW_BUFFER_SHARE = Decimal("0.1")
COLLAR_EDGE_SHARE = Decimal("0.8")


@dataclass(frozen=True)
class Caution:
    """Advice about an order the OMS would still take."""

    code: str
    message: str


@dataclass(frozen=True)
class Preview:
    """An order's effect on the account, and the OMS's verdict on it."""

    order: SubmitOrder
    reference_price: Decimal | None
    collar: tuple[Decimal, Decimal] | None
    notional: Decimal | None
    required_asset: str | None
    required: Decimal | None
    before: dict[str, Balance]
    after: dict[str, Balance]
    exposure_asset: str | None
    exposure_before: Decimal | None
    exposure_after: Decimal | None
    warnings: tuple[Caution, ...]
    block: Reject | None

    def public(self) -> dict:
        """JSON-ready, decimals as strings."""
        return {
            "symbol": self.order.symbol, "side": self.order.side.value, "type": self.order.type.value,
            "quantity": decimal_text(self.order.quantity), "price": decimal_text(self.order.price),
            "reference_price": decimal_text(self.reference_price),
            "collar": None if self.collar is None else {"low": decimal_text(self.collar[0]), "high": decimal_text(self.collar[1])},
            "notional": decimal_text(self.notional),
            "required": None if self.required is None else {"asset": self.required_asset, "amount": decimal_text(self.required)},
            "balances_before": {a: b.public() for a, b in sorted(self.before.items())},
            "balances_after": {a: b.public() for a, b in sorted(self.after.items())},
            "exposure": None if self.exposure_asset is None else {
                "asset": self.exposure_asset, "before": decimal_text(self.exposure_before), "after": decimal_text(self.exposure_after),
                "change": decimal_text(self.exposure_after - self.exposure_before)},
            "warnings": [{"code": w.code, "message": w.message} for w in self.warnings],
            "accepted": self.block is None,
            "block": None if self.block is None else {"code": self.block.code.value, "message": self.block.message},
        }


def preview_order(order: SubmitOrder, account: AccountState, market: Market) -> Preview:
    """What `order` would reserve and change on `account`, with warnings and the OMS's block if any."""
    instrument = market.instruments.get(order.symbol)
    block = check_order(order, account, market)
    if instrument is None or check_terms(order, instrument) is not None:
        # Unknown symbol, or terms off the instrument's grid or bounds: nothing sensible to compute.
        return Preview(order, None, None, None, None, None, {}, {}, None, None, None, (), block)
    limits = account.limits
    reference = market.reference(order.symbol)
    collar = collar_bounds(reference, limits.price_collar_bps, instrument.tick_size) if reference else None
    unit = order.price if order.price is not None else reference
    notional = order.quantity * unit if unit is not None else None
    need = reservation_for(order, instrument, market, limits.price_collar_bps) if reference or order.price else None
    assets = (instrument.base, instrument.quote)
    before = {a: account.balance(a) for a in assets}
    after = dict(before)
    if need is not None:
        held = before[need.asset]
        after[need.asset] = Balance(available=held.available - need.amount, reserved=held.reserved + need.amount)
    # Exposure: the base asset held plus what open buys (and this one) would bring.
    exposure_before = before[instrument.base].total + account.open_buys.get(instrument.base, ZERO)
    exposure_after = exposure_before + (order.quantity if order.side is Side.BUY else -order.quantity)
    warnings = _warnings(order, account, notional, need, before, collar, exposure_after, instrument.base)
    return Preview(order, reference, collar, notional, need.asset if need else None, need.amount if need else None,
                   before, after, instrument.base, exposure_before, exposure_after, warnings, block)


def _warnings(order: SubmitOrder, account: AccountState, notional, need, before, collar, exposure_after,
              base: str) -> tuple[Caution, ...]:
    found = []
    limit = account.limits.max_order_notional
    if notional is not None and limit > 0 and HIGH_SHARE * limit <= notional <= limit:
        found.append(Caution("HIGH_NOTIONAL", f"notional {decimal_text(notional)} is {_pct(notional, limit)} of the limit {decimal_text(limit)}"))
    if need is not None:
        available = before[need.asset].available
        left = available - need.amount
        if ZERO <= left < LOW_BUFFER_SHARE * before[need.asset].total:
            found.append(Caution("LOW_BUFFER", f"{decimal_text(left)} {need.asset} would stay available, "
                                                f"under {_pct(LOW_BUFFER_SHARE, Decimal(1))} of the holding"))
    if collar is not None and order.price is not None:
        low, high = collar
        middle, half = (low + high) / 2, (high - low) / 2
        if half > 0 and low <= order.price <= high and abs(order.price - middle) >= COLLAR_EDGE_SHARE * half:
            found.append(Caution("NEAR_COLLAR", f"price {decimal_text(order.price)} is near the collar [{decimal_text(low)}, {decimal_text(high)}]"))
    cap = account.limits.max_position.get(base)
    if cap is not None and order.side is Side.BUY and HIGH_SHARE * cap <= exposure_after <= cap:
        found.append(Caution("NEAR_POSITION_LIMIT", f"{base} position would reach {decimal_text(exposure_after)} of {decimal_text(cap)}"))
    return tuple(found)


def _pct(part: Decimal, whole: Decimal) -> str:
    return f"{(part / whole * 100).quantize(Decimal('1'))}%"
