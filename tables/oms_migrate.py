"""Reading an OMS table written by the previous layout, where each order held every report it had.

`migrate(account)` runs once per account, the first time the `oms` agent touches it: it
stores each order's reports under their own keys, numbers the orders for the listing and
the closed ones for retention, builds the open-order index and the holdings, and marks the
account as migrated. It costs one pass over the account's orders, once. Every write is
derived from the stored state alone, so a crash part way through is repaired by running it
again.
"""
from __future__ import annotations

import json

from atlas.core.events import ExecType, ExecutionReport
from atlas.core.values import STORED
from atlas.oms.positions import Holding
from atlas.oms.state import LAYOUT, RECENT_IDS, AccountState, Order, StoredOrder
from atlas.tables.oms import (
    account_key, encode_model, execution_key, executions, flush_pending, forget_cached, index_order, oms_table,
    order_key, put,
)
from atlas.tables.scan import scan_prefix


def migrate(account: AccountState) -> AccountState:
    """The account in the current layout, after writing its orders and reports in it."""
    flush_pending()  # the scan below reads the table itself
    account_id = account.account_id
    prefix = order_key(account_id, "").encode()
    orders: list[Order] = []
    for _, raw in list(scan_prefix(oms_table, prefix)):
        doc = json.loads(raw)
        stored = StoredOrder.model_validate(doc, context=STORED)
        order = stored.version(account)
        if order is None:
            continue
        legacy = doc["cur" if account.includes(stored.seq, stored.epoch) else "prev"]
        reports = legacy.get("executions")
        if reports is not None:  # not migrated yet: its reports move to their own keys
            for report in reports:
                put(execution_key(account_id, order.order_id, report["seq"]),
                     ExecutionReport.model_validate(report, context=STORED), encode_model)
            order = order.model_copy(update={"exec_seq": len(reports),
                                             "recent_ids": tuple(legacy.get("applied_ids", ()))[-RECENT_IDS:]})
        orders.append(order)
    orders.sort(key=lambda o: (o.created_at, o.order_id))
    numbered = {o.order_id: o.model_copy(update={"number": n}) for n, o in enumerate(orders, start=1)}
    closed = sorted((o for o in numbered.values() if not o.is_open), key=lambda o: (o.updated_at, o.order_id))
    numbered.update({o.order_id: o.model_copy(update={"closed_no": n}) for n, o in enumerate(closed, start=1)})
    fills: list[tuple[tuple, ExecutionReport, Order]] = []
    for order in numbered.values():
        index_order(order, None)
        # The same version as `prev` too: whichever the account's history picks, the order is there.
        stored = StoredOrder(seq=account.seq, epoch=account.epoch, cur=order, prev=order)
        put(order_key(account_id, order.order_id), stored, encode_model)
        fills.extend(((r.ts, order.order_id, r.seq), r, order) for r in executions(order)
                     if r.exec_type is ExecType.TRADE and r.last_px is not None)
    positions: dict[str, Holding] = {}
    for _, report, order in sorted(fills, key=lambda f: f[0]):
        held = positions.get(order.symbol) or Holding()
        positions[order.symbol] = held.after(order.side, report.last_qty, report.last_px)
    account = account.model_copy(update={"layout": LAYOUT, "orders": len(numbered), "closed": len(closed),
                                         "archived": 0, "positions": positions})
    forget_cached()
    put(account_key(account_id), account, encode_model)  # last, as every event's account write
    return account
