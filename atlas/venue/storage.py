"""How a symbol's venue is stored: a small record, one key per resting client order, and trade buckets.

Keys, all on the symbol's partition of the venue's input topic (its messages write them):
- `s/<symbol>`: the record: the last applied input offset, mid, tick, parameters, the maker's
  ladder, counters, and the `delta` of the message at that offset: the client orders and trade
  buckets it changed, in full.
- `o/<symbol>/<order_id>`: one resting client order; deleted when it leaves the book.
- `t/<symbol>/<slot>`: up to ten consecutive trades; eleven slots always hold the latest hundred.
- `x/<symbol>/<offset, 20 digits>`: the outputs of the message at that offset (its outbox).
- `q/<symbol>/<request_id>`: the offset of the message that applied the OMS request; a copy of
  the request sent again (as the OMS does after a restart) gets that message's outbox again
  instead of being applied twice. Dropped with its outbox.

A message writes its outbox, then the record, then the request id and the orders and buckets it
changed. So any prefix of the changelog that survives a crash, read back with the record's delta
laid over the keys, is the state after one whole message: the keys a crash left stale are exactly
those the delta names. A message costs what it changed, whatever the depth of the book or its history.

Pure: this module computes what to write and rebuilds a venue from what was read; the table
module moves the bytes.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Iterable

from atlas.core.instruments import Instrument
from atlas.venue.exchange import RECENT_TRADES, SymbolVenue

TRADES_PER_BUCKET = 10
BUCKETS = RECENT_TRADES // TRADES_PER_BUCKET + 1  # a partly filled newest bucket plus ten full ones

Write = tuple[str, bytes | None]  # (key, value); None deletes the key


def record_key(symbol: str) -> str:
    return f"s/{symbol}"


def order_key(symbol: str, order_id: str) -> str:
    return f"o/{symbol}/{order_id}"


def order_prefix(symbol: str) -> str:
    return f"o/{symbol}/"


def bucket_key(symbol: str, slot: int) -> str:
    return f"t/{symbol}/{slot:02d}"


def bucket_prefix(symbol: str) -> str:
    return f"t/{symbol}/"


def outbox_key(symbol: str, offset: int) -> str:
    return f"x/{symbol}/{offset:020d}"


def outbox_prefix(symbol: str) -> str:
    return f"x/{symbol}/"


def request_key(symbol: str, request_id: str) -> str:
    return f"q/{symbol}/{request_id}"


def request_prefix(symbol: str) -> str:
    return f"q/{symbol}/"


@dataclass
class Stored:
    """What the table holds for one symbol, as of its last save."""

    offset: int = -1  # the last applied input offset
    orders: set[str] = field(default_factory=set)  # client orders that have a key
    trades: int = 0  # trades ever saved


def save_writes(venue: SymbolVenue, stored: Stored, offset: int, outputs: list[list],
                request_id: str | None = None) -> list[Write]:
    """The writes that record one applied message, in the order they must reach the changelog.

    `request_id`: the OMS request the message carried, if any. `stored` is brought up to date in
    place (copying its set of order ids would cost a pass over the book on every message).
    """
    outbox = (outbox_key(venue.instrument.symbol, offset), json.dumps(outputs).encode())
    return [outbox, *_state_writes(venue, stored, offset, request_id)]


def rebuild(instrument: Instrument, record_raw: bytes, orders: Iterable[tuple[str, bytes]],
            buckets: Iterable[tuple[str, bytes]]) -> tuple[SymbolVenue, Stored, list[Write]]:
    """The venue as of the record's offset, from what the table holds; plus the writes that repair the keys.

    The repairs are the record's delta written again: a crash may have stopped the save before
    some of those keys, and without them a later restart would read an order back to life.
    """
    symbol = instrument.symbol
    record = json.loads(record_raw)
    if "venue" in record:
        return _from_whole_book(instrument, record)
    delta = record["delta"]
    held = {doc[0]: doc for doc in (json.loads(raw) for _, raw in orders)}  # each value parsed once
    kept = set(held)
    repairs = _request_writes(symbol, delta.get("request"), record["offset"])
    repairs += _order_writes(symbol, delta["orders"], kept)
    for order_id, doc in delta["orders"].items():
        if doc is None:
            held.pop(order_id, None)
        else:
            held[order_id] = doc
    slots = {int(key.rsplit("/", 1)[1]): json.loads(raw) for key, raw in buckets}
    for slot, bucket in delta["buckets"].items():
        slots[int(slot)] = bucket
        repairs.append((bucket_key(symbol, int(slot)), json.dumps(bucket).encode()))
    trades = _latest_trades(slots.values(), record["trade_count"])
    venue = SymbolVenue.from_parts(instrument, record, list(held.values()), trades)
    return venue, Stored(record["offset"], kept, record["trade_count"]), repairs


def _from_whole_book(instrument: Instrument, record: dict) -> tuple[SymbolVenue, Stored, list[Write]]:
    """A symbol saved by the layout before this one (`{"offset", "venue"}`, the whole book in one value).

    The repairs write it in this layout, as one message whose delta names every resting order.
    """
    old = record["venue"]
    maker_ids = set(old["maker_orders"])
    parts = {key: old[key] for key in ("symbol", "seed", "mid", "tick", "day", "params", "book_seq")}
    parts |= {"maker": [doc for doc in old["book"] if doc[0] in maker_ids], "trade_count": len(old.get("trades", ()))}
    clients = [doc for doc in old["book"] if doc[0] not in maker_ids]
    venue = SymbolVenue.from_parts(instrument, parts, clients, [tuple(t) for t in old.get("trades", ())])
    venue.touch(doc[0] for doc in clients)
    stored = Stored()
    repairs = _state_writes(venue, stored, record["offset"])
    return venue, stored, repairs


def _state_writes(venue: SymbolVenue, stored: Stored, offset: int, request_id: str | None = None) -> list[Write]:
    """The record (with the delta of what changed since the last save), then the changed keys."""
    symbol = venue.instrument.symbol
    changed = venue.take_changes()
    buckets = _changed_buckets(venue, stored.trades)
    record = venue.record()
    record["offset"] = offset
    record["delta"] = {"orders": changed, "buckets": {str(slot): bucket for slot, bucket in buckets.items()}}
    if request_id is not None:
        record["delta"]["request"] = request_id
    writes: list[Write] = [(record_key(symbol), json.dumps(record).encode())]
    writes += _request_writes(symbol, request_id, offset)
    writes += _order_writes(symbol, changed, stored.orders)
    writes += [(bucket_key(symbol, slot), json.dumps(bucket).encode()) for slot, bucket in buckets.items()]
    stored.offset, stored.trades = offset, venue.trade_count
    return writes


def _request_writes(symbol: str, request_id: str | None, offset: int) -> list[Write]:
    return [] if request_id is None else [(request_key(symbol, request_id), str(offset).encode())]


def _order_writes(symbol: str, changed: dict[str, list | None], orders: set[str]) -> list[Write]:
    """Set or delete the changed orders' keys, keeping `orders` (the ids with a key) in step."""
    writes: list[Write] = []
    for order_id, doc in changed.items():
        if doc is not None:
            writes.append((order_key(symbol, order_id), json.dumps(doc).encode()))
            orders.add(order_id)
        elif order_id in orders:
            writes.append((order_key(symbol, order_id), None))
            orders.discard(order_id)
    return writes


def _changed_buckets(venue: SymbolVenue, saved: int) -> dict[int, dict]:
    """The trade buckets that hold trades made since `saved` trades, within the latest hundred: slot -> bucket."""
    count = venue.trade_count
    if count == saved:
        return {}
    held = list(venue.recent_trades)
    first = count - len(held)  # the trade number of held[0]
    buckets: dict[int, dict] = {}
    for number in range(max(saved, first) // TRADES_PER_BUCKET, (count - 1) // TRADES_PER_BUCKET + 1):
        start = max(number * TRADES_PER_BUCKET, first)
        end = min((number + 1) * TRADES_PER_BUCKET, count)
        buckets[number % BUCKETS] = {"k": start, "t": [list(t) for t in held[start - first:end - first]]}
    return buckets


def _latest_trades(buckets: Iterable[dict], count: int) -> list[tuple[int, int, str, int]]:
    """The latest trades (oldest first) among buckets of which some may be stale leftovers of earlier rounds."""
    by_number = {}
    for bucket in buckets:
        for n, trade in enumerate(bucket["t"]):
            by_number[bucket["k"] + n] = tuple(trade)
    return [by_number[n] for n in range(max(0, count - RECENT_TRADES), count) if n in by_number]
