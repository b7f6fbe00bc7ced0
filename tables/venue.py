"""The venue table: each symbol's exchange, stored as `atlas.venue.storage` lays it out.

Per symbol, a small record, one key per resting client order, trade buckets and the outbox of
recent input messages (see `atlas.venue.storage` for the keys and why any prefix of the
changelog is a consistent state). A message read again at or below the record's offset was
applied already: its outbox entry is sent again (the sends may have been lost), nothing is
applied twice. So is a request the OMS sent again, found by its id.
"""
from __future__ import annotations

import json
from typing import Callable

from atlas.app import app
from atlas.core.instruments import Instrument
from atlas.settings import settings
from atlas.tables.scan import scan_prefix
from atlas.venue.exchange import SymbolVenue
from atlas.venue.storage import (
    Stored, Write, bucket_prefix, order_prefix, outbox_key, outbox_prefix, rebuild, record_key, request_key,
    request_prefix, save_writes,
)

venue_table = app.Table("venue", default=None, key_type=bytes, value_type=bytes, partitions=settings.partitions)

# Outbox entries and request ids older than this many offsets are dropped: far more messages
# than arrive between two offset commits, or between a request and its copy sent after a restart.
OUTBOX_KEEP = 20_000

# The live venues of the symbols this worker owns and what the table holds of each, kept in
# step on every message and dropped whenever partitions move (recovery writes to the store
# behind their back).
_venues: dict[str, tuple[SymbolVenue, Stored]] = {}


def forget_cached() -> None:
    _venues.clear()


def cached_params(symbol: str):
    """The live parameters of a symbol this worker runs, or None."""
    cached = _venues.get(symbol)
    return cached[0].params if cached else None


def load(instrument: Instrument, new: Callable[[], SymbolVenue]) -> tuple[int, SymbolVenue]:
    """(last applied offset, venue) of a symbol; `new()` (offset -1) before its first message.

    Call from the agent only: the first load after an assignment repairs the keys a crash
    may have left behind (see `atlas.venue.storage.rebuild`), which needs the event's context.
    """
    cached = _venues.get(instrument.symbol)
    if cached is None:
        found = _read(instrument)
        if found is None:
            cached = (new(), Stored())
        else:
            venue, stored, repairs = found
            _apply(repairs)
            cached = (venue, stored)
        _venues[instrument.symbol] = cached
    return cached[1].offset, cached[0]


def peek(symbol: str, instrument: Instrument) -> SymbolVenue | None:
    """A symbol's venue as this worker holds it, for reads (None before its first message)."""
    cached = _venues.get(symbol)
    if cached is not None:
        return cached[0]
    found = _read(instrument)
    return None if found is None else found[0]


def save(venue: SymbolVenue, offset: int, outputs: list[list], *, request_id: str | None = None,
         prune: bool = False) -> None:
    """Record one applied message: its outputs, the symbol's record, then what it changed.

    `request_id`: the OMS request the message carried; `prune`: drop old outboxes and request ids.
    """
    symbol = venue.instrument.symbol
    _, stored = _venues.get(symbol) or (venue, Stored())
    _apply(save_writes(venue, stored, offset, outputs, request_id))
    _venues[symbol] = (venue, stored)
    if prune:
        _prune(symbol, offset - OUTBOX_KEEP)


def outbox(symbol: str, offset: int) -> list[list] | None:
    """The outputs recorded for the message at `offset`, if still kept."""
    raw = venue_table.get(outbox_key(symbol, offset))
    return None if raw is None else json.loads(raw)


def applied_request(symbol: str, request_id: str) -> int | None:
    """The offset of the message that applied this OMS request, if it was applied (and not pruned since)."""
    raw = venue_table.get(request_key(symbol, request_id))
    return None if raw is None else int(raw)


def _read(instrument: Instrument) -> tuple[SymbolVenue, Stored, list[Write]] | None:
    symbol = instrument.symbol
    raw = venue_table.get(record_key(symbol))
    if raw is None:
        return None
    orders = scan_prefix(venue_table, order_prefix(symbol).encode())
    buckets = ((key.decode(), value) for key, value in scan_prefix(venue_table, bucket_prefix(symbol).encode()))
    return rebuild(instrument, raw, orders, buckets)


def _apply(writes: list[Write]) -> None:
    for key, value in writes:
        if value is None:
            del venue_table[key]
        else:
            venue_table[key] = value


def _prune(symbol: str, below: int) -> None:
    if below <= 0:
        return
    limit = outbox_key(symbol, below).encode()
    stale = [key for key, _ in scan_prefix(venue_table, outbox_prefix(symbol).encode()) if key < limit]
    # Outboxes before request ids: a crash in between leaves request ids whose copies are answered
    # with nothing (and a warning), not applied again.
    stale += [key for key, raw in scan_prefix(venue_table, request_prefix(symbol).encode()) if int(raw) < below]
    for key in stale:
        del venue_table[key]
