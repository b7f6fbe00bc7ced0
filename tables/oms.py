"""The OMS table: every account's state, orders and execution reports, in one account-partitioned table.

Keys (all hashed with the account's partition, since the OMS writes them while
processing that account's events):
- `a/<account_id>` -> `AccountState`
- `o/<account_id>/<order_id>` -> `StoredOrder` (the order now, and its version before)
- `e/<account_id>/<order_id>/<seq>` -> one `ExecutionReport` of the order
- `l/<account_id>/<10^12 - number>` -> order id, so a key-order scan lists the newest first
- `n/<account_id>/<10^12 - number>` -> order id, the same while the order is open (the open-order index)
- `c/<account_id>/<closed_no>` -> [order id, closed at]: closed orders in closing order, for retention

Every value has a size bounded by one order or one report, whatever the account's history:
an event writes its reports, its index keys and its orders, and the account last. One table
means one changelog partition per account partition, written in order, so whatever prefix
of it survives a crash is a consistent cut. A stored order version whose (seq, epoch) is not
in the account's history belongs to an event the account never recorded: readers take its
`prev` then, readers of reports stop at the order's `exec_seq`, index keys are hints that
readers check against the order, and the event is applied again when it is read.

A closed order leaves the table after the retention (`Retention`): its keys are deleted,
which the compacted changelog turns into tombstones. Its history stays in the audit trail.

The agent processes a poll's events as a batch inside `batch()`: its writes are held back
(`WriteBehind`) and flushed once per key before the batch's outputs, the account keys last,
so the order above holds for the batch as a whole. Reads see the pending writes. It also
reads through a cache of decoded values (most events touch an account read a moment ago),
written through on every save and emptied whenever partitions move, since recovery writes to
the store behind its back.
"""
from __future__ import annotations

import json
from contextlib import contextmanager
from typing import Any, Iterator

from cachetools import LRUCache

from atlas.app import app
from atlas.core.events import ExecutionReport
from atlas.core.values import STORED
from atlas.oms.state import LAYOUT, AccountState, Order, Retention, StoredOrder
from atlas.settings import settings
from atlas.tables.scan import scan_prefix
from atlas.tables.write_behind import WriteBehind

oms_table = app.Table("oms", default=None, key_type=bytes, value_type=bytes,
                      partitions=settings.partitions)

_LISTING = 10 ** 12  # listing keys count down from here, so the newest order sorts first
ARCHIVE_PER_EVENT = 4  # closed orders archived per event at most: a backlog drains without a long stall
REPLAY_LOOKBACK = 256  # reports searched, newest first, for what an event applied before caused


# Small on purpose: every cached object is one more for the garbage collector's full passes,
# whose pauses show in the latency tail. Orders are read again mostly within seconds (acks, fills).
_accounts: LRUCache[str, AccountState] = LRUCache(maxsize=4_096)
_orders: LRUCache[str, Order] = LRUCache(maxsize=2_048)


_pending: WriteBehind | None = None  # the open batch's writes, while the agent processes one


@contextmanager
def batch() -> Iterator[WriteBehind]:
    """Hold back the writes of the events processed inside; flush them (accounts last) on leaving without error."""
    global _pending
    _pending = WriteBehind(oms_table, lambda key: key.startswith("a/"))
    try:
        yield _pending
        _pending.flush()
    except BaseException:
        forget_cached()  # the caches hold what the batch computed and never wrote
        raise
    finally:
        _pending = None


def flush_pending() -> None:
    """Write the open batch's pending writes now (before a key-range scan, which reads the table only)."""
    if _pending is not None:
        _pending.flush()


def _read(key: str, parse: Any) -> Any:
    """The value of `key`: pending in the open batch (an object), or parsed from the table; None if absent."""
    if _pending is not None and key in _pending:
        return _pending.get(key)
    raw = oms_table.get(key)
    return None if raw is None else parse(raw)


def _stored(model: Any) -> Any:
    """The parser of a stored value of `model`: read as it was written (`STORED`)."""
    return lambda raw: model.model_validate_json(raw, context=STORED)


def put(key: str, value: Any, encode: Any = None) -> None:
    """Write `key` (bytes, or an object `encode` makes bytes of), through the open batch if there is one."""
    if _pending is not None:
        _pending.put(key, value, encode)
    else:
        oms_table[key] = encode(value) if encode is not None else value


def encode_model(model: Any) -> bytes:
    """A model as the table stores it: its JSON."""
    return model.model_dump_json().encode()


class _Encoded:
    """The encoder of a value whose bytes are made already."""

    __slots__ = ("raw",)

    def __init__(self, raw: bytes) -> None:
        self.raw = raw

    def __call__(self, value: Any) -> bytes:
        return self.raw


def forget_cached() -> None:
    """Drop every cached value (call when partitions are revoked or assigned)."""
    _accounts.clear()
    _orders.clear()


def account_key(account_id: str) -> str:
    """Key of the account's state."""
    return f"a/{account_id}"


def order_key(account_id: str, order_id: str) -> str:
    """Key of an order."""
    return f"o/{account_id}/{order_id}"


def execution_key(account_id: str, order_id: str, seq: int) -> str:
    """Key of an order's report `seq`."""
    return f"e/{account_id}/{order_id}/{seq:010d}"


def listing_key(account_id: str, number: int, kind: str = "l") -> str:
    """Key of the account's order `number` in the listing (`kind` "l") or the open-order index ("n")."""
    return f"{kind}/{account_id}/{_LISTING - number:012d}"


def open_key(account_id: str, number: int) -> str:
    """Key of an open order in the open-order index."""
    return listing_key(account_id, number, "n")


def closed_key(account_id: str, closed_no: int) -> str:
    """Key of the account's closed order `closed_no` in the retention queue."""
    return f"c/{account_id}/{closed_no:012d}"


def retention() -> Retention:
    """The retention of closed orders the settings ask for."""
    days = settings.retain_closed_days
    return Retention(keep=settings.retain_closed_orders, max_age_ms=None if days is None else int(days * 86_400_000))


# -- reads -------------------------------------------------------------------------------


def load_account(account_id: str, *, cached: bool = False) -> AccountState | None:
    """The account's stored state, or None before its first event (`cached`: for the agent only)."""
    key = account_key(account_id)
    if cached and (hit := _accounts.get(key)) is not None:
        return hit
    account = _read(key, _stored(AccountState))
    if cached and account is not None:
        _accounts[key] = account
    return account


def load_order(account: AccountState, order_id: str, *, cached: bool = False) -> Order | None:
    """The order as the account's history has it (`cached`: for the agent only)."""
    key = order_key(account.account_id, order_id)
    if cached and (hit := _orders.get(key)) is not None:
        return hit
    stored = _read(key, _stored(StoredOrder))
    order = None if stored is None else stored.version(account)
    if cached and order is not None:
        _orders[key] = order
    return order


def executions(order: Order, after: int = 0, limit: int | None = None) -> list[ExecutionReport]:
    """The order's execution reports with seq above `after`, oldest first, at most `limit` of them."""
    last = order.exec_seq if limit is None else min(order.exec_seq, after + limit)
    found = (_read(execution_key(order.account_id, order.order_id, seq), _stored(ExecutionReport))
             for seq in range(after + 1, last + 1))
    return [report for report in found if report is not None]


def history(order: Order) -> Iterator[ExecutionReport]:
    """The order's latest reports, newest first (at most REPLAY_LOOKBACK): where a replay looks."""
    for seq in range(order.exec_seq, max(order.exec_seq - REPLAY_LOOKBACK, 0), -1):
        report = _read(execution_key(order.account_id, order.order_id, seq), _stored(ExecutionReport))
        if report is not None:
            yield report


def open_orders(account: AccountState, before: int | None = None) -> Iterator[Order]:
    """The account's open orders, newest first, from the open-order index (call on the account's owner)."""
    return (o for o in _listed(account, "n", before) if o.is_open)


def list_orders(account: AccountState, before: int | None = None) -> Iterator[Order]:
    """The account's orders held in the table, newest first; `before`: only those numbered below it."""
    return _listed(account, "l", before)


def _listed(account: AccountState, kind: str, before: int | None) -> Iterator[Order]:
    if before is not None and before <= 1:
        return
    flush_pending()
    prefix = f"{kind}/{account.account_id}/".encode()
    start = None if before is None else listing_key(account.account_id, before - 1, kind).encode()
    for _, raw in scan_prefix(oms_table, prefix, start):
        order = load_order(account, raw.decode())
        if order is not None and order.number:
            yield order


# -- writes ------------------------------------------------------------------------------


def save(account: AccountState, orders: tuple[Order, ...], previous: dict[str, Order | None],
         reports: tuple[tuple[ExecutionReport, bytes], ...] = (), archived: tuple[str, ...] = ()) -> None:
    """Write an event: its reports, index keys and orders, the keys of orders it archives, and its account last.

    Each report comes with its JSON, which the caller also sends: it is encoded once. The
    account write is what marks the event applied.
    """
    account_id = account.account_id
    for report, raw in reports:
        if report.seq > 0:  # 0: a reject about an order the OMS does not know, stored nowhere
            put(execution_key(account_id, report.order_id, report.seq), report, _Encoded(raw))
    for order in orders:
        before = previous.get(order.order_id)
        index_order(order, before)
        key = order_key(account_id, order.order_id)
        if _pending is not None and key in _pending:
            # Written earlier in this batch: its `prev` stays the version the stored account knows.
            before = _pending.get(key).prev
        put(key, StoredOrder(seq=account.seq, epoch=account.epoch, cur=order, prev=before), encode_model)
        _orders[key] = order
    for key in archived:
        _delete(key)
    key = account_key(account_id)
    put(key, account, encode_model)
    _accounts[key] = account


def index_order(order: Order, before: Order | None) -> None:
    """Keep the listing, open-order and closed-order keys in step with an order's change."""
    account_id = order.account_id
    if before is None and order.number:
        put(listing_key(account_id, order.number), order.order_id.encode())
    was_open = before is not None and before.is_open
    if order.is_open and not was_open:
        put(open_key(account_id, order.number), order.order_id.encode())
    elif was_open and not order.is_open:
        _delete(open_key(account_id, order.number))
    if order.closed_no and (before is None or not before.closed_no):
        put(closed_key(account_id, order.closed_no), json.dumps([order.order_id, order.updated_at]).encode())


def _delete(key: str) -> None:
    if _pending is not None:
        _pending.delete(key)
    elif oms_table.get(key) is not None:
        del oms_table[key]
    _orders.pop(key, None)


def archive(account: AccountState, now: int, keep: Retention, busy: set[str],
            stored_closed: int) -> tuple[AccountState, tuple[str, ...]]:
    """The account after archiving the closed orders past retention at `now`, and the keys that leaves behind.

    The oldest closed orders go first, a few per event, among the first `stored_closed` (those
    closed by earlier events, whose queue entries are stored); an order the event itself writes
    (`busy`) waits for the next one. The caller deletes the keys with the event's save.
    """
    keys: list[str] = []
    for _ in range(ARCHIVE_PER_EVENT):
        if account.archived >= min(account.closed, stored_closed):
            break
        entry_key = closed_key(account.account_id, account.archived + 1)
        entry = _read(entry_key, bytes)
        # No entry: a crash kept this archiving's deletes and lost its account write; finish it.
        order_id, closed_at = json.loads(entry) if entry is not None else (None, 0)
        if not keep.due(account, closed_at, now) or order_id in busy:
            break
        if order_id is not None:
            order = load_order(account, order_id)
            if order is not None and order.closed_no == account.archived + 1:
                keys.extend(execution_key(account.account_id, order_id, seq) for seq in range(1, order.exec_seq + 1))
                keys.append(listing_key(account.account_id, order.number))
                keys.append(order_key(account.account_id, order_id))
        keys.append(entry_key)
        account = account.model_copy(update={"archived": account.archived + 1})
    return account, tuple(keys)


def needs_migration(account: AccountState) -> bool:
    """True for an account stored by the previous layout (every report inside its order)."""
    return account.layout < LAYOUT
