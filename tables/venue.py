"""The venue table: each symbol's exchange state, and the outputs of its recent input messages.

Keys (all on the symbol's partition of `atlas.venue.orders`, whose messages write them):
- `s/<symbol>` -> `{"offset": <last input offset applied>, "venue": SymbolVenue.to_state()}`
- `x/<symbol>/<offset, 20 digits>` -> the outputs that input message caused (an outbox)

A symbol's input is one ordered log (requests, ticks and parameter changes all arrive on
`atlas.venue.orders`), so its state is defined by an offset. Each message writes its outbox
entry first and the state last, so whatever prefix of the changelog survives a crash is a
consistent state. A message read again at or below the recorded offset was applied already:
its outbox entry is sent again (the sends may have been lost), nothing is applied twice.
"""
from __future__ import annotations

import json
from typing import Callable

from atlas.app import app
from atlas.core.instruments import Instrument
from atlas.settings import settings
from atlas.tables.scan import scan_prefix
from atlas.venue.exchange import SymbolVenue

venue_table = app.Table("venue", default=None, key_type=bytes, value_type=bytes, partitions=settings.partitions)

# Outbox entries older than this many offsets are dropped: far more messages than arrive
# between two offset commits.
OUTBOX_KEEP = 20_000

# The live venues of the symbols this worker owns, written through on every message and
# dropped whenever partitions move (recovery writes to the store behind their back).
_venues: dict[str, tuple[int, SymbolVenue]] = {}


def forget_cached() -> None:
    _venues.clear()


def cached_params(symbol: str):
    """The live parameters of a symbol this worker runs, or None."""
    cached = _venues.get(symbol)
    return cached[1].params if cached else None


def state_key(symbol: str) -> str:
    return f"s/{symbol}"


def outbox_key(symbol: str, offset: int) -> str:
    return f"x/{symbol}/{offset:020d}"


def load(instrument: Instrument, new: Callable[[], SymbolVenue]) -> tuple[int, SymbolVenue]:
    """(last applied offset, venue) of a symbol; `new()` (offset -1) before its first message."""
    cached = _venues.get(instrument.symbol)
    if cached is not None:
        return cached
    raw = venue_table.get(state_key(instrument.symbol))
    if raw is None:
        loaded = (-1, new())
    else:
        doc = json.loads(raw)
        loaded = (doc["offset"], SymbolVenue.from_state(instrument, doc["venue"]))
    _venues[instrument.symbol] = loaded
    return loaded


def peek(symbol: str, instrument: Instrument) -> SymbolVenue | None:
    """A symbol's venue as this worker holds it, for reads (None before its first message)."""
    cached = _venues.get(symbol)
    if cached is not None:
        return cached[1]
    raw = venue_table.get(state_key(symbol))
    return None if raw is None else SymbolVenue.from_state(instrument, json.loads(raw)["venue"])


def save(venue: SymbolVenue, offset: int, outputs: list[list], *, prune: bool = False) -> None:
    """Record one applied message: its outputs, then the state as of its offset (`prune`: drop old outboxes)."""
    symbol = venue.instrument.symbol
    venue_table[outbox_key(symbol, offset)] = json.dumps(outputs).encode()
    venue_table[state_key(symbol)] = json.dumps({"offset": offset, "venue": venue.to_state()}).encode()
    _venues[symbol] = (offset, venue)
    if prune:
        _prune(symbol, offset - OUTBOX_KEEP)


def outbox(symbol: str, offset: int) -> list[list] | None:
    """The outputs recorded for the message at `offset`, if still kept."""
    raw = venue_table.get(outbox_key(symbol, offset))
    return None if raw is None else json.loads(raw)


def _prune(symbol: str, below: int) -> None:
    if below <= 0:
        return
    limit = outbox_key(symbol, below).encode()
    stale = [key for key, _ in scan_prefix(venue_table, f"x/{symbol}/".encode()) if key < limit]
    for key in stale:
        del venue_table[key]
