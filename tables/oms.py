"""The OMS table: every account's state and orders, in one account-partitioned table.

Keys (all hashed with the account's partition, since the OMS writes them while
processing that account's events):
- `a/<account_id>` -> `AccountState`
- `o/<account_id>/<order_id>` -> `StoredOrder`

One table means one changelog partition per account partition, written in order. So
whatever prefix of it survives a crash is a consistent cut, provided each event writes
its orders first and the account (which advances `seq`) last. A stored order version
whose (seq, epoch) is not in the account's history belongs to an event the account never
recorded: readers take its `prev` then, and the event is applied again when it is read.

The agent reads through a cache of decoded values (most events touch an account read a
moment ago). It is written through on every save and emptied whenever partitions move,
since recovery writes to the store behind its back.
"""
from __future__ import annotations

from typing import Iterator

from cachetools import LRUCache

from atlas.app import app
from atlas.oms.state import AccountState, Order, StoredOrder
from atlas.settings import settings
from atlas.tables.scan import scan_prefix

oms_table = app.Table("oms", default=None, key_type=bytes, value_type=bytes,
                      partitions=settings.partitions)


# Small on purpose: every cached object is one more for the garbage collector's full passes,
# whose pauses show in the latency tail. Orders are read again mostly within seconds (acks, fills).
_accounts: LRUCache[str, AccountState] = LRUCache(maxsize=4_096)
_orders: LRUCache[str, Order] = LRUCache(maxsize=2_048)


def forget_cached() -> None:
    """Drop every cached value (call when partitions are revoked or assigned)."""
    _accounts.clear()
    _orders.clear()


def account_key(account_id: str) -> str:
    return f"a/{account_id}"


def order_key(account_id: str, order_id: str) -> str:
    return f"o/{account_id}/{order_id}"


def load_account(account_id: str, *, cached: bool = False) -> AccountState | None:
    """The account's stored state, or None before its first event (`cached`: for the agent only)."""
    key = account_key(account_id)
    if cached and (hit := _accounts.get(key)) is not None:
        return hit
    raw = oms_table.get(key)
    account = None if raw is None else AccountState.model_validate_json(raw)
    if cached and account is not None:
        _accounts[key] = account
    return account


def load_order(account: AccountState, order_id: str, *, cached: bool = False) -> Order | None:
    """The order as the account's history has it (`cached`: for the agent only)."""
    key = order_key(account.account_id, order_id)
    if cached and (hit := _orders.get(key)) is not None:
        return hit
    raw = oms_table.get(key)
    order = None if raw is None else StoredOrder.model_validate_json(raw).version(account)
    if cached and order is not None:
        _orders[key] = order
    return order


def save(account: AccountState, orders: tuple[Order, ...], previous: dict[str, Order | None]) -> None:
    """Write an event's orders, then its account (the account write is what marks the event applied)."""
    for order in orders:
        stored = StoredOrder(seq=account.seq, epoch=account.epoch, cur=order, prev=previous.get(order.order_id))
        key = order_key(account.account_id, order.order_id)
        oms_table[key] = stored.model_dump_json().encode()
        _orders[key] = order
    key = account_key(account.account_id)
    oms_table[key] = account.model_dump_json().encode()
    _accounts[key] = account


def iter_orders(account_id: str) -> Iterator[Order]:
    """Every order of an account held by this worker (call on the account's owner)."""
    account = load_account(account_id)
    if account is None:
        return
    prefix = order_key(account_id, "").encode()
    for _, raw in scan_prefix(oms_table, prefix):
        order = StoredOrder.model_validate_json(raw).version(account)
        if order is not None:
            yield order
