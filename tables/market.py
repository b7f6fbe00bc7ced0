"""The reference state every worker needs whatever it owns: prices, halts, the global kill switch.

A GlobalTable: each worker holds all of it, eventually consistent, fed by the `market` agent.
Keys: `ref/<symbol>` -> mid price string, `halt/<symbol>` -> bool, `kill` -> {engaged, reason}.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Iterator, Mapping

from atlas.app import app
from atlas.instruments import Instrument
from atlas.risk import Market
from atlas.settings import settings

market_state = app.GlobalTable(
    "market-state", default=None, key_type=bytes,
    partitions=settings.partitions, store="memory://",
)


class _Prices(Mapping[str, Decimal]):
    """Reference prices read straight from the table (no copy per event)."""

    def __getitem__(self, symbol: str) -> Decimal:
        value = market_state.get(f"ref/{symbol}")
        if value is None:
            raise KeyError(symbol)
        return Decimal(value)

    def get(self, symbol, default=None):
        try:
            return self[symbol]
        except KeyError:
            return default

    def __iter__(self) -> Iterator[str]:
        return (k.decode()[4:] for k in market_state.keys() if k.startswith(b"ref/"))

    def __len__(self) -> int:
        return sum(1 for _ in self)


class _Halts:
    def __contains__(self, symbol: object) -> bool:
        return bool(market_state.get(f"halt/{symbol}"))


def current_market(instruments: dict[str, Instrument]) -> Market:
    """A `Market` view over the table for the pure core."""
    kill = market_state.get("kill") or {}
    return Market(instruments=instruments, reference_prices=_Prices(), halted=_Halts(),
                  global_kill=bool(kill.get("engaged")))
