"""Positions and profit-and-loss of one account, from its fills, marked to mid prices.

Average cost, exactly as the OMS keeps each account's holdings fill by fill
(`atlas.oms.positions`): `positions(fills)` recomputes the same from a list of fills, which
the tests use as the reference for the OMS's running holdings.

Marking. A symbol is marked at the mid price the caller passes (the venue's, or anything
else); unrealised = quantity * mark - cost, 0 on a flat position, None without a mark.
Holdings (`exposures`) are marked at the mid of the instrument whose base they are, a quote
asset at 1 in itself. Nothing is rounded until `public()` presents it.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal

from atlas.core.events import ExecType, ExecutionReport
from atlas.core.instruments import Instrument
from atlas.core.values import ZERO, Side, decimal_text
from atlas.oms.positions import DIVIDE, EXACT, Holding

_EXACT = EXACT
_DIVIDE = DIVIDE
_PLACES = Decimal("1e-10")  # presented P&L and prices carry at most this many decimals
_ONE = Decimal(1)


@dataclass(frozen=True)
class Fill:
    """One trade of the account: `quantity` base bought or sold at `price` quote per unit."""

    ts: int
    exec_id: str
    symbol: str
    side: Side
    quantity: Decimal
    price: Decimal

    def __post_init__(self) -> None:
        if self.quantity <= 0 or self.price <= 0:
            raise ValueError(f"fill {self.exec_id} needs a positive quantity and price")


def fills_of(reports: Iterable[ExecutionReport]) -> list[Fill]:
    """Every trade among the execution reports, by time (then order and the report's place in it)."""
    keyed = [
        ((report.ts, report.order_id, report.seq),
         Fill(ts=report.ts, exec_id=report.exec_id, symbol=report.symbol, side=report.side,
              quantity=report.last_qty, price=report.last_px))
        for report in reports
        if report.exec_type is ExecType.TRADE and report.last_qty > 0 and report.last_px is not None
    ]
    return [fill for _, fill in sorted(keyed, key=lambda pair: pair[0])]


@dataclass(frozen=True)
class Position:
    """One symbol's open position, its cost and realised P&L, and the mark it is valued at."""

    symbol: str
    base: str
    quote: str
    quantity: Decimal = ZERO  # base; buys add, sells subtract
    cost: Decimal = ZERO  # quote paid for the open quantity; quantity * avg_price, negative when short
    realised: Decimal = ZERO  # quote
    mark: Decimal | None = None
    bought: Decimal = ZERO  # base bought in all
    sold: Decimal = ZERO  # base sold in all
    fills: int = 0

    @property
    def avg_price(self) -> Decimal | None:
        """Average cost of the open quantity; None when flat."""
        return None if self.quantity == 0 else _DIVIDE.divide(self.cost, self.quantity)

    @property
    def unrealised(self) -> Decimal | None:
        """What closing at the mark would realise: 0 when flat, None without a mark."""
        if self.mark is None:
            return None
        return _EXACT.subtract(_EXACT.multiply(self.quantity, self.mark), self.cost)

    @classmethod
    def of(cls, symbol: str, instrument: Instrument, holding: Holding, mark: Decimal | None = None) -> Position:
        """The position an account's stored holding in `symbol` stands for, marked at `mark`."""
        return cls(symbol=symbol, base=instrument.base, quote=instrument.quote, quantity=holding.quantity,
                   cost=holding.cost, realised=holding.realised, mark=mark, bought=holding.bought, sold=holding.sold,
                   fills=holding.fills)

    def after(self, fill: Fill) -> Position:
        """The position once `fill` is applied (average cost, see `atlas.oms.positions`)."""
        held = Holding(quantity=self.quantity, cost=self.cost, realised=self.realised, bought=self.bought,
                       sold=self.sold, fills=self.fills).after(fill.side, fill.quantity, fill.price)
        return replace(self, quantity=held.quantity, cost=held.cost, realised=held.realised, bought=held.bought,
                       sold=held.sold, fills=held.fills)

    def public(self) -> dict:
        """The position as JSON: decimals as strings, P&L and average price to at most 10 places."""
        return {
            "symbol": self.symbol, "base": self.base, "quote": self.quote,
            "quantity": decimal_text(self.quantity), "avg_price": _money(self.avg_price),
            "realised": _money(self.realised), "unrealised": _money(self.unrealised), "mark": decimal_text(self.mark),
            "bought": decimal_text(self.bought), "sold": decimal_text(self.sold), "fills": self.fills,
        }


def positions(fills: Iterable[Fill], instruments: Mapping[str, Instrument],
              marks: Mapping[str, Decimal]) -> dict[str, Position]:
    """Each traded symbol's position from the fills (applied in the order given), marked at `marks`."""
    book: dict[str, Position] = {}
    for fill in fills:
        position = book.get(fill.symbol)
        if position is None:
            instrument = instruments.get(fill.symbol)
            if instrument is None:
                raise ValueError(f"fill {fill.exec_id} is on {fill.symbol!r}, which is not an instrument")
            position = Position(symbol=fill.symbol, base=instrument.base, quote=instrument.quote)
        book[fill.symbol] = position.after(fill)
    return {symbol: replace(p, mark=marks.get(symbol)) for symbol, p in book.items()}


@dataclass(frozen=True)
class Exposure:
    """Holdings of one asset valued in a quote asset; quote, mark and value are None when unknown."""

    asset: str
    total: Decimal
    quote: str | None
    mark: Decimal | None
    value: Decimal | None

    def public(self) -> dict:
        """The exposure as JSON: decimals as strings, the value to at most 10 places."""
        return {"asset": self.asset, "total": decimal_text(self.total), "quote": self.quote,
                "mark": decimal_text(self.mark), "value": _money(self.value)}


def exposures(balances: Mapping[str, Decimal], instruments: Mapping[str, Instrument],
              marks: Mapping[str, Decimal]) -> dict[str, Exposure]:
    """Each asset's total holdings, marked at the mid of an instrument it is the base of (a quote asset at 1)."""
    quotes = {i.quote for i in instruments.values()}
    result: dict[str, Exposure] = {}
    for asset, total in balances.items():
        pairs = [i for i in instruments.values() if i.base == asset]
        if pairs:
            # With several pairs on one base, the first one with a mid prices it.
            pair = next((i for i in pairs if marks.get(i.symbol) is not None), pairs[0])
            quote, mark = pair.quote, marks.get(pair.symbol)
        elif asset in quotes:
            quote, mark = asset, _ONE
        else:
            quote, mark = None, None
        value = None if mark is None else _EXACT.multiply(total, mark)
        result[asset] = Exposure(asset=asset, total=total, quote=quote, mark=mark, value=value)
    return result


@dataclass(frozen=True)
class Totals:
    """P&L and net exposure in one quote asset; None where a needed mark is missing."""

    quote: str
    realised: Decimal
    unrealised: Decimal | None
    net_exposure: Decimal | None

    @property
    def total(self) -> Decimal | None:
        """Realised plus unrealised."""
        return None if self.unrealised is None else _EXACT.add(self.realised, self.unrealised)

    def public(self) -> dict:
        """The totals as JSON: decimals as strings to at most 10 places."""
        return {"quote": self.quote, "realised": _money(self.realised), "unrealised": _money(self.unrealised),
                "total": _money(self.total), "net_exposure": _money(self.net_exposure)}


def summary(positions: Mapping[str, Position], exposures: Mapping[str, Exposure]) -> dict[str, Totals]:
    """P&L over the positions and net exposure over the non-quote assets, per quote asset.

    Flat positions and empty holdings count as 0 with or without a mark; any other missing
    mark makes that quote's unrealised (and total) or net exposure None. Assets no instrument
    names are left out.
    """
    realised: dict[str, Decimal] = {}
    unrealised: dict[str, Decimal | None] = {}
    net: dict[str, Decimal | None] = {}
    for p in positions.values():
        realised[p.quote] = _EXACT.add(realised.get(p.quote, ZERO), p.realised)
        open_value = ZERO if p.quantity == 0 else p.unrealised
        unrealised[p.quote] = _add(unrealised.get(p.quote, ZERO), open_value)
    for e in exposures.values():
        if e.quote is None:
            continue
        net.setdefault(e.quote, ZERO)
        if e.asset != e.quote:
            net[e.quote] = _add(net[e.quote], ZERO if e.total == 0 else e.value)
    quotes = list(dict.fromkeys([*realised, *net]))
    return {q: Totals(quote=q, realised=realised.get(q, ZERO), unrealised=unrealised.get(q, ZERO),
                      net_exposure=net.get(q, ZERO))
            for q in quotes}


def _add(a: Decimal | None, b: Decimal | None) -> Decimal | None:
    return None if a is None or b is None else _EXACT.add(a, b)




def _money(value: Decimal | None) -> str | None:
    """At most 10 decimal places, trailing fractional zeros dropped, never exponent form, never "-0"."""
    if value is None:
        return None
    if value.as_tuple().exponent < -10:  # type: ignore[operator]  # finite decimals only here
        value = value.quantize(_PLACES, context=_EXACT)
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "0") else text
