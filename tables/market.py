"""The reference state every worker needs whatever it owns: prices, halts, the global kill switch.

A GlobalTable: each worker holds all of it, eventually consistent, fed by the `market` agent.
Keys: `ref/<symbol>` -> mid price string, `halt/<symbol>` -> bool, `kill` -> {engaged, reason}.
"""
from __future__ import annotations

from decimal import Decimal

from cachetools import TTLCache

from atlas.app import app
from atlas.core.instruments import Instrument
from atlas.oms.risk import Market
from atlas.settings import settings

# In RocksDB like the other tables. (It used to say store="memory://", which Faust silently
# ignored: yarl's URL("memory://") is falsy, so the app's rocksdb:// store was used anyway.)
market_state = app.GlobalTable("market-state", default=None, key_type=bytes, partitions=settings.partitions)


# The OMS reads the market on every event; a snapshot a few milliseconds old is as good as the
# table itself, which every worker holds eventually consistent anyway.
SNAPSHOT_TTL_S = 0.01
_snapshots: TTLCache[str, Market] = TTLCache(maxsize=1, ttl=SNAPSHOT_TTL_S)


def current_market(instruments: dict[str, Instrument]) -> Market:
    """The market as the pure core sees it: reference prices, halts and the global kill switch."""
    market = _snapshots.get("market")
    if market is None or market.instruments is not instruments:
        market = _snapshots["market"] = _read_market(instruments)
    return market


def _read_market(instruments: dict[str, Instrument]) -> Market:
    # Key by key: iterating the table would count and scan its store.
    prices: dict[str, Decimal] = {}
    for symbol in instruments:
        value = market_state.get(f"ref/{symbol}")
        if value is not None:
            prices[symbol] = Decimal(value)
    halted = frozenset(symbol for symbol in instruments if market_state.get(f"halt/{symbol}"))
    kill = market_state.get("kill") or {}
    return Market(instruments=instruments, reference_prices=prices, halted=halted, global_kill=bool(kill.get("engaged")))
