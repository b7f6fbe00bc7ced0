"""Instruments: what can be traded, on which price and quantity grid."""
from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from atlas.core.values import Dec


class Instrument(BaseModel):
    """A spot pair with its tick, lot and quantity bounds."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    symbol: str
    base: str
    quote: str
    tick_size: Dec
    lot_size: Dec
    min_quantity: Dec
    max_quantity: Dec
    # Used until the venue publishes a mid price for the symbol.
    reference_price: Dec

    def price_on_tick(self, price: Decimal) -> bool:
        """True when the price is a whole number of ticks."""
        return _multiple_of(price, self.tick_size)

    def quantity_on_lot(self, quantity: Decimal) -> bool:
        """True when the quantity is a whole number of lots."""
        return _multiple_of(quantity, self.lot_size)


def _multiple_of(value: Decimal, step: Decimal) -> bool:
    try:
        return value % step == 0
    except InvalidOperation:  # e.g. "1e30": too many digits for the context, and off any sane grid
        return False


def load_instruments(path: Path) -> dict[str, Instrument]:
    """Read the instruments file: a JSON list of instruments, keyed here by symbol."""
    raw = json.loads(Path(path).read_text())
    instruments = [Instrument.model_validate(item) for item in raw]
    return {i.symbol: i for i in instruments}
