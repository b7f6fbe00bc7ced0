"""The `oms` agent's step over its table: state that stays small, exact re-reads, retention, listings."""
from __future__ import annotations

import asyncio
import json
from decimal import Decimal as D

import pytest

from atlas.agents import oms as agent
from atlas.core.events import ExecType, OrdStatus, VenueReportKind
from atlas.oms.state import LAYOUT, Retention, StoredOrder
from atlas.settings import settings
from atlas.tables import oms as tables
from atlas.topics import executions, venue_orders
from tests.helpers import T0, cancel, kill_switch, limits, set_limits, submit, venue_report
from tests.unit.agents.oms_harness import ADMIN, COMMANDS, Worker, duplicates, keep, reports, submit_id

RICH = {"USD": "1000000000", "BTC": "0"}


def _event_bytes(table, worker: Worker, step) -> int:
    """Bytes one event writes to the table plus the bytes of what it sends."""
    before = len(table.writes)
    sends = step()
    return sum(size for _, size in table.writes[before:]) + sum(len(s.value) for s in sends)


def _submit_small(worker: Worker, count: int) -> list[str]:
    """Submit `count` orders of 0.001 BTC (client order ids c0, c1, ...); returns their ids in order."""
    ids = []
    for n in range(count):
        cmd = submit(quantity="0.001", client_order_id=f"c{n}")
        worker.command(cmd)
        ids.append(submit_id(cmd))
    return ids


def _fill(order_id: str, qty: str, px: str = "64000", offset: int = 0, index: int = 1):
    return venue_report(order_id, VenueReportKind.FILL, last_qty=qty, last_px=px, venue_offset=offset,
                        venue_index=index)


def _accept_and_fill(worker: Worker, order_id: str, qty: str, px: str = "64000", offset: int = 0):
    """What the venue sends about a marketable order: its ack, then a fill, in one message."""
    ack = venue_report(order_id, VenueReportKind.ACCEPTED, venue_offset=offset, venue_index=1)
    return worker.reports([ack, _fill(order_id, qty, px, offset, index=2)])


# -- bounded cost per event ----------------------------------------------------------------


def test_order_with_1000_partial_fills_writes_the_same_bytes_per_fill_at_the_end_as_at_the_start(memory_table):
    worker = Worker(memory_table)
    cmd = submit(quantity="1", price="64000")
    worker.command(cmd)
    order_id = submit_id(cmd)
    worker.report(venue_report(order_id, "ACCEPTED", venue_offset=0, venue_index=1))

    sizes = [_event_bytes(memory_table, worker, lambda n=n: worker.report(_fill(order_id, "0.001", offset=n + 1)))
             for n in range(1000)]

    order = worker.order(order_id)
    assert order.status is OrdStatus.FILLED and order.exec_seq == 1002
    # Numbers in the values gain a few digits (seq, offsets, cum qty); nothing grows with the fills.
    # (The last fill, which closes the order, also writes its retention entry.)
    assert max(sizes[-11:-1]) <= 1.05 * min(sizes[1:11]), (sizes[1:11], sizes[-11:-1])
    assert max(sizes) < 6_000
    stored = memory_table.get(tables.order_key("alice", order_id))
    assert len(stored) < 3_000
    assert [r.seq for r in worker.executions(order_id)] == list(range(1, 1003))


def test_account_with_10000_closed_orders_writes_the_same_bytes_per_order_as_with_none(memory_table, monkeypatch):
    memory_table[tables.account_key("alice")] = _rich_account().model_dump_json().encode()
    worker = Worker(memory_table)

    def one_order(n: int) -> int:
        cmd = submit(quantity="0.001", price="64000", client_order_id=f"c{n}")
        order_id = submit_id(cmd)
        return (_event_bytes(memory_table, worker, lambda: worker.command(cmd, ts=T0 + n * 1000))
                + _event_bytes(memory_table, worker, lambda: _accept_and_fill(worker, order_id, "0.001", offset=n)))

    first = [one_order(n) for n in range(20)]
    for n in range(20, 10_000):
        one_order(n)
    last = [one_order(n) for n in range(10_000, 10_020)]

    account = worker.account()
    assert account.closed == 10_020 and account.open_count == 0
    # Ids and counters gain a few digits; nothing grows with the closed orders.
    assert max(last) <= 1.05 * min(first[1:]), (first, last)
    assert len(memory_table.get(tables.account_key("alice"))) < 3_000


def test_kill_switch_cancels_the_open_orders_without_reading_the_closed_ones(memory_table):
    memory_table[tables.account_key("alice")] = _rich_account().model_dump_json().encode()
    worker = Worker(memory_table)
    for n in range(300):
        cmd = submit(quantity="0.001", client_order_id=f"c{n}")
        worker.command(cmd)
        _accept_and_fill(worker, submit_id(cmd), "0.001", offset=n)
    open_ids = []
    for n in range(3):
        cmd = submit(quantity="0.001", client_order_id=f"open{n}")
        worker.command(cmd)
        open_ids.append(submit_id(cmd))
    worker.restart()
    reads = _counting_reads(memory_table)

    sends = worker.command(kill_switch(True))

    assert sorted(r.order_id for r in reports(sends)) == sorted(open_ids)
    assert {r.exec_type for r in reports(sends)} == {ExecType.PENDING_CANCEL}
    assert len(reads) < 40, f"{len(reads)} reads for 3 open orders among 303"


def _counting_reads(table) -> list:
    reads: list = []
    plain_get = table.get

    def get(key, default=None):
        reads.append(key)
        return plain_get(key, default)

    table.get = get
    return reads


def _rich_account():
    from tests.helpers import account, limits
    return account(balances=RICH, limits=limits(max_orders_per_second=1_000_000, max_position={"BTC": "1000000"}))


# -- exactly once ------------------------------------------------------------------------------


def test_each_report_is_stored_as_the_very_bytes_sent_to_executions(memory_table):
    worker = Worker(memory_table)
    cmd = submit(quantity="0.5", price="64000")
    order_id = submit_id(cmd)
    sent = worker.command(cmd)
    sent += worker.report(venue_report(order_id, "ACCEPTED", venue_offset=0, venue_index=1))
    sent += worker.report(_fill(order_id, "0.5", offset=1))

    values = [s.value for s in sent if s.topic is executions]
    stored = [memory_table.get(tables.execution_key("alice", order_id, seq)) for seq in range(1, 4)]
    assert len(values) == 3 and stored == values
    # Encoded once: the table holds the very object the send carries.
    assert all(a is b for a, b in zip(stored, values))


def test_message_read_again_changes_nothing_and_resends_its_reports_as_possible_duplicates(memory_table):
    worker = Worker(memory_table)
    cmd = submit()
    first = worker.command(cmd)
    order_id = submit_id(cmd)
    worker.report(venue_report(order_id, "ACCEPTED", venue_offset=0, venue_index=1))
    table_before = dict(memory_table)

    again = worker.reread(0)

    assert dict(memory_table) == table_before
    # Its report again; its venue request not, since the venue has answered it (a copy could trade twice).
    assert [s.topic for s in first] == [executions, venue_orders]
    assert [s.value for s in again] == [first[0].value]
    assert duplicates(again) == again and duplicates(first) == []


def test_message_read_again_after_a_restart_changes_nothing_but_the_epoch(memory_table):
    worker = Worker(memory_table)
    cmd = submit()
    worker.command(cmd)
    order_id = submit_id(cmd)
    _accept_and_fill(worker, order_id, "0.2")
    order_before = worker.order(order_id)
    balances_before = worker.account().balances
    worker.restart()

    again = worker.reread(1)

    assert worker.order(order_id) == order_before and worker.account().balances == balances_before
    assert [r.exec_type for r in reports(again)] == [ExecType.NEW, ExecType.TRADE] and duplicates(again) == again
    assert len(worker.account().epochs) == 3


def test_venue_report_sent_again_at_a_new_offset_is_recognised_by_its_place_in_the_venue_log(memory_table):
    worker = Worker(memory_table)
    cmd = submit()
    worker.command(cmd)
    order_id = submit_id(cmd)
    worker.report(venue_report(order_id, "ACCEPTED", venue_offset=6, venue_index=1))
    fill = _fill(order_id, "0.2", offset=7)
    worker.report(fill)
    worker.report(_fill(order_id, "0.1", offset=8))

    again = worker.report(fill)  # the venue's outbox sends it again after its own restart

    assert worker.order(order_id).filled_quantity == D("0.3")
    assert [r.last_qty for r in reports(again)] == [D("0.2")] and duplicates(again) == again


def test_command_retried_under_the_same_id_is_applied_once(memory_table):
    worker = Worker(memory_table)
    cmd = submit()
    worker.command(cmd)
    order_id = submit_id(cmd)
    worker.report(venue_report(order_id, "ACCEPTED", venue_offset=0, venue_index=1))
    stop = cancel(order_id)
    worker.command(stop)

    again = worker.command(stop)

    assert [r.exec_type for r in reports(again)] == [ExecType.PENDING_CANCEL] and duplicates(again) == again
    assert worker.order(order_id).exec_seq == 3


# -- retention -----------------------------------------------------------------------------------


def test_closed_orders_past_the_count_are_archived_oldest_first_with_every_key(memory_table, monkeypatch):
    keep(monkeypatch, Retention(keep=2))
    worker = Worker(memory_table)
    ids = _submit_small(worker, 5)
    for n, order_id in enumerate(ids[:4]):
        _accept_and_fill(worker, order_id, "0.001", offset=n)
    worker.command(cancel("nothing"))  # one more event: archiving trails the closes by one

    account = worker.account()
    assert (account.closed, account.archived) == (4, 2)
    assert [worker.order(i) is None for i in ids] == [True, True, False, False, False]
    archived = [k for k in memory_table if ids[0].encode() in k or ids[1].encode() in k]
    assert archived == []
    assert memory_table.get(tables.closed_key("alice", 1)) is None
    assert memory_table.get(tables.closed_key("alice", 3)) is not None


def test_closed_orders_older_than_the_age_are_archived_and_open_ones_never(memory_table, monkeypatch):
    keep(monkeypatch, Retention(keep=100, max_age_ms=60_000))
    worker = Worker(memory_table)
    done, working = submit(quantity="0.001"), submit(quantity="0.001")
    worker.command(done, ts=T0)
    worker.command(working, ts=T0 + 1)
    _accept_and_fill(worker, submit_id(done), "0.001")
    worker.command(cancel("nothing"), ts=T0 + 30_000)
    assert worker.order(submit_id(done)) is not None

    worker.command(cancel("nothing"), ts=T0 + 200_000)

    assert worker.order(submit_id(done)) is None and worker.order(submit_id(working)) is not None
    assert worker.account().archived == 1


# -- listings -------------------------------------------------------------------------------------


def test_orders_are_listed_newest_first_and_open_ones_from_their_index(memory_table):
    worker = Worker(memory_table)
    ids = _submit_small(worker, 6)
    _accept_and_fill(worker, ids[4], "0.001")
    account = worker.account()

    assert [o.order_id for o in tables.list_orders(account)] == ids[::-1]
    assert [o.order_id for o in tables.list_orders(account, before=4)] == [ids[2], ids[1], ids[0]]
    assert [o.order_id for o in tables.list_orders(account, before=1)] == []
    assert [o.order_id for o in tables.open_orders(account)] == [ids[5], ids[3], ids[2], ids[1], ids[0]]


# -- the previous layout ----------------------------------------------------------------------------


def test_account_of_the_previous_layout_is_migrated_on_its_first_event(memory_table):
    worker = Worker(memory_table)
    buy, sell = submit(quantity="0.5"), submit(quantity="0.2", side="SELL", price="65000")
    worker.command(buy)
    worker.command(sell)
    _accept_and_fill(worker, submit_id(buy), "0.5", offset=1)
    _accept_and_fill(worker, submit_id(sell), "0.1", offset=2, px="65000")
    current = {oid: (worker.order(oid), worker.executions(oid)) for oid in (submit_id(buy), submit_id(sell))}
    positions = worker.account().positions
    _rewrite_in_previous_layout(memory_table, current)
    worker.restart()

    worker.command(cancel("nothing"))

    account = worker.account()
    assert account.layout == LAYOUT and (account.orders, account.closed) == (2, 1)
    assert account.positions == positions
    for order_id, (order, executions) in current.items():
        assert worker.executions(order_id) == executions
        # The previous layout had no venue positions: its applied ids are what a resend is told by.
        unchanged = {"recent_ids", "venue_mark"}
        assert worker.order(order_id).model_dump(exclude=unchanged) == order.model_dump(exclude=unchanged)
    assert [o.order_id for o in tables.open_orders(account)] == [submit_id(sell)]


def _rewrite_in_previous_layout(table, current) -> None:
    """The same state as layout 1 stored it: every report and applied id inside the order, no index keys."""
    for key in [k for k in table if not k.startswith((b"a/", b"o/"))]:
        del table[key]
    raw = json.loads(table[tables.account_key("alice").encode()])
    for field in ("layout", "orders", "closed", "archived", "positions", "offsets"):
        raw.pop(field)
    table[tables.account_key("alice")] = json.dumps(raw).encode()
    for order_id, (order, executions) in current.items():
        key = tables.order_key("alice", order_id)
        stored = json.loads(table[key.encode()])
        for field in ("number", "closed_no", "exec_seq", "recent_ids", "venue_mark"):
            stored["cur"].pop(field)
        stored["cur"]["executions"] = [json.loads(r.model_dump_json()) for r in executions]
        stored["cur"]["applied_ids"] = [f"r:{r.cause_id}" for r in executions]
        stored["prev"] = None
        table[key] = json.dumps(stored).encode()
        assert StoredOrder.model_validate(stored).cur.exec_seq == 0


def test_archiving_finishes_after_a_crash_kept_its_deletes_but_not_its_account_write(memory_table, monkeypatch):
    keep(monkeypatch, Retention(keep=100, max_age_ms=60_000))
    worker = Worker(memory_table)
    done = submit(quantity="0.001")
    worker.command(done, ts=T0)
    _accept_and_fill(worker, submit_id(done), "0.001")
    account_before = memory_table[tables.account_key("alice").encode()]
    worker.command(cancel("nothing"), ts=T0 + 200_000)  # archives the order
    memory_table[tables.account_key("alice")] = account_before  # ...but its account write was lost
    worker.restart()

    worker.command(cancel("nothing"), ts=T0 + 300_000)

    assert worker.account().archived == 1 and worker.order(submit_id(done)) is None


def test_a_batch_that_fails_leaves_nothing_behind_in_the_caches(memory_table):
    worker = Worker(memory_table)
    cmd = submit()
    before = worker.account()
    with pytest.raises(RuntimeError):
        with tables.batch():
            worker.command(cmd)
            raise RuntimeError("the worker fails mid-batch")

    assert tables.load_account("alice", cached=True) == before
    assert tables.load_order(before, submit_id(cmd), cached=True) is None


class Event:
    """What the agent reads of a Faust event (weakly referenced while it is processed, as Faust's are)."""

    def __init__(self, offset: int, value: bytes) -> None:
        self.message = type("Message", (), dict(topic="atlas.commands", partition=0, offset=offset, timestamp=1.0,
                                                 key=b"alice", value=value))()


def test_a_batch_that_fails_stops_the_worker_at_once_and_sends_nothing(memory_table, monkeypatch, caplog):
    sent, exits = [], []
    monkeypatch.setattr(agent, "emit", lambda *args: sent.append(args))

    def fail(*args):
        raise RuntimeError("an invariant broke")

    def exit_now(code: int) -> None:
        exits.append(code)
        raise SystemExit(code)  # os._exit would end pytest too

    monkeypatch.setattr(agent, "process", fail)
    monkeypatch.setattr(agent, "_exit", exit_now)
    with pytest.raises(SystemExit):
        asyncio.run(agent.handle([Event(41, b"{}"), Event(42, b"{}")]))

    assert exits == [agent.EXIT_BATCH_FAILED] and sent == []
    assert "a batch of 2 events (atlas.commands/0@41 to atlas.commands/0@42) failed" in caplog.text
    assert "RuntimeError: an invariant broke" in caplog.text


def test_an_admin_command_on_the_commands_topic_is_dead_lettered_and_changes_nothing(memory_table):
    worker = Worker(memory_table)
    worker.command(submit(quantity="0.001", client_order_id="before"))
    strict = set_limits(limits(max_order_notional="1"))

    sends = worker.send(COMMANDS, strict.model_dump_json().encode())

    letters = [json.loads(s.value) for s in sends if s.topic.get_topic_name().endswith("deadletter")]
    assert len(sends) == 1 and len(letters) == 1
    assert "SetLimits" in letters[0]["error"] and letters[0]["topic"] == COMMANDS
    assert worker.account().limits.max_order_notional == limits().max_order_notional


def test_an_admin_command_on_the_admin_topic_applies_and_an_order_there_is_rejected(memory_table):
    worker = Worker(memory_table)
    worker.command(set_limits(limits(max_order_notional="1")))  # the harness sends it on `admin`
    assert worker.account().limits.max_order_notional == D("1")

    sends = worker.send(ADMIN, submit(quantity="0.001", client_order_id="stray").model_dump_json().encode())

    # Refused, and its sender told so: no order goes to the venue.
    assert [s.topic.get_topic_name() for s in sends] == [settings.topic("deadletter"), settings.topic("executions")]
    assert [(r.exec_type, r.client_order_id) for r in reports(sends)] == [(ExecType.REJECTED, "stray")]
