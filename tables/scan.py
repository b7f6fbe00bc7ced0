"""Key-range reads over a Faust table's RocksDB partitions (Faust tables only offer whole iteration)."""
from __future__ import annotations

from typing import Any, Iterator


def scan_prefix(table: Any, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) of every key starting with `prefix` held by this worker, in key order per partition."""
    store = table.data
    dbs = getattr(store, "_dbs", None)
    if dbs is None:  # the memory store of unit tests
        for key, value in list(table.items()):
            if bytes(key).startswith(prefix):
                yield bytes(key), value
        return
    for db in list(dbs.values()):
        for key, value in db.items(from_key=prefix):
            if not key.startswith(prefix):
                break
            yield key, value
