"""Key-range reads over a Faust table's RocksDB partitions (Faust tables only offer whole iteration)."""
from __future__ import annotations

from typing import Any, Iterator


def scan_prefix(table: Any, prefix: bytes, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) of every key starting with `prefix` (from `start` on) held by this worker, in key order per partition."""
    begin = max(prefix, start) if start is not None else prefix
    store = table.data
    dbs = getattr(store, "_dbs", None)
    if dbs is None:  # the memory store of unit tests
        for key, value in sorted((bytes(k), v) for k, v in list(table.items())):
            if key.startswith(prefix) and key >= begin:
                yield key, value
        return
    for db in list(dbs.values()):
        for key, value in db.items(from_key=begin):
            if not key.startswith(prefix):
                break
            yield key, value
