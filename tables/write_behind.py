"""Write-behind for a Faust table: a batch's writes held back and flushed once per key, in a crash-safe order.

An agent that processes what a poll delivered as one batch opens `WriteBehind(table)`, writes
through it while it processes the events (reads see its pending values), and flushes before it
sends the batch's outputs. A key written by several events of the batch is written to the table
(RocksDB and its changelog) once, with its last value; values are kept as objects and encoded
only then.

Order. `last(key)` picks the keys flushed after all others: the OMS's account keys, whose write
marks an account's events applied. Every other key goes first, in the order it was first
written. So whatever prefix of the flush reaches the changelog, an account either shows the
batch's events applied, and everything they wrote is in before it, or shows none of them.

Partition. Faust sends a table write to the changelog partition (and the RocksDB partition) of
the event being processed. Each pending write remembers the event that made it, and the flush
makes that event current again while writing its keys.
"""
from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from faust.streams import _current_event, current_event

DELETED = object()  # a pending delete


class WriteBehind:
    """The pending writes of one batch over `table`."""

    def __init__(self, table: Any, last: Callable[[str], bool]) -> None:
        self.table = table
        self.last = last
        # key -> (value object or DELETED, encoder of the value, the event that wrote it)
        self.pending: dict[str, tuple[Any, Callable[[Any], bytes] | None, Any]] = {}

    def put(self, key: str, value: Any, encode: Callable[[Any], bytes] | None = None) -> None:
        """Write `value` (bytes, or an object `encode` turns into bytes at the flush)."""
        self.pending[key] = (value, encode, current_event())

    def delete(self, key: str) -> None:
        """Delete `key` (nothing is written if the table does not hold it)."""
        self.pending[key] = (DELETED, None, current_event())

    def get(self, key: str, default: Any = None) -> Any:
        """The pending value of `key` (an object as put; None if deleted), or `default` if none is pending."""
        entry = self.pending.get(key)
        if entry is None:
            return default
        return None if entry[0] is DELETED else entry[0]

    def __contains__(self, key: str) -> bool:
        return key in self.pending

    def flush(self) -> int:
        """Write every pending key to the table, the `last` ones after the rest; returns the number of writes."""
        keys = [k for k in self.pending if not self.last(k)] + [k for k in self.pending if self.last(k)]
        for key in keys:
            value, encode, event = self.pending[key]
            token = _current_event.set(weakref.ref(event)) if event is not None else None
            try:
                if value is DELETED:
                    if self.table.get(key) is not None:
                        del self.table[key]
                else:
                    self.table[key] = encode(value) if encode is not None else value
            finally:
                if token is not None:
                    _current_event.reset(token)
        self.pending.clear()
        return len(keys)


@contextmanager
def processing(event: Any) -> Iterator[None]:
    """Make `event` Faust's current event (whose partition table writes go to) while inside."""
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)
