"""Property: the compact OMS state gives the same orders, balances and reports as a plain reference model.

The reference is `helpers.Book`: the pure core with every order and every report in memory,
fed each distinct event once. The compact side is the `oms` agent's step over its table
(one key per report, orders holding their current state, bounded ids, offsets, indexes,
retention, batches written once per key), fed the same events plus what a real worker also
meets: messages read again after a crash, restarts, a crash that loses a batch's writes
before they were flushed (its inputs are then read again and must send the same as the first
time), commands retried and venue reports sent again. After every event
the two must agree on what was sent; at the end, on every order still held, its reports,
the balances and the positions (which the reference recomputes from all its fills).
"""
from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atlas.analytics.pnl import fills_of, positions
from atlas.core.commands import SubmitOrder
from atlas.core.events import OrdStatus, VenueReportKind
from atlas.oms.engine import Outcome
from atlas.core.values import OrderType, Side
from atlas.oms.state import Retention
from tests.helpers import Book, account, cancel, instruments, kill_switch, replace, submit, venue_report
from tests.unit.agents.oms_harness import MemoryTable, Worker, duplicates, reports, submit_id
from tests.unit.oms.test_properties import LIKELY, SYMBOLS, _fill_terms, _lots, _price

K = VenueReportKind


class Twin:
    """The reference and the compact OMS, driven together."""

    def __init__(self, worker: Worker):
        self.worker = worker
        self.book = Book(account_state=worker.account())
        self.n = 0
        self.venue_offset = 0
        self.commands: list = []
        self.sent: dict[int, list] = {}  # what each input (by its index in the worker's log) sent the first time
        self.reports: list = []
        self.fills: list = []  # in the order the OMS applied them, as its running holdings take them

    def next_id(self, prefix: str) -> str:
        self.n += 1
        return f"p-{prefix}-{self.n}"

    def held(self, order_id: str) -> bool:
        """True when the compact side still holds the order (retention may have archived it)."""
        return order_id not in self.book.orders or self.worker.order(order_id) is not None

    def command(self, cmd) -> None:
        ts = self.worker.now + 100
        expected = self.book.command(cmd, ts=ts)
        sends = self.worker.command(cmd, ts=ts)
        self._same(expected, sends)
        self.sent[len(self.worker.log) - 1] = sends
        self.commands.append(cmd)

    def report(self, report) -> None:
        expected = self.book.report(report)
        sends = self.worker.report(report)
        self._same(expected, sends)
        self.sent[len(self.worker.log) - 1] = sends
        if expected.dead_letter is None:
            self.reports.append(report)

    def reports_of_one_input(self, reports: list) -> None:
        """Several venue reports in one message (one venue input's, about one account)."""
        expected = [self.book.report(r) for r in reports]
        sends = self.worker.reports(reports)
        merged = Outcome(self.book.account, reports=tuple(r for e in expected for r in e.reports),
                         dead_letter="; ".join(e.dead_letter for e in expected if e.dead_letter) or None)
        self._same(merged, sends)
        self.sent[len(self.worker.log) - 1] = sends
        self.reports.extend(r for r, e in zip(reports, expected) if e.dead_letter is None)

    def _same(self, expected, sends) -> None:
        self.fills.extend(fills_of(expected.reports))
        assert duplicates(sends) == [] or expected.replayed
        assert reports(sends) == list(expected.reports)
        assert any(s.topic.get_topic_name().endswith("deadletter") for s in sends) == (expected.dead_letter is not None)

    def again(self, sends) -> None:
        """What a repeat sent: copies of reports sent before, or a reject about an order nobody holds."""
        for report in reports(sends):
            assert report.seq == 0 or (report in self.book.executions(report.order_id) and sends == duplicates(sends))


def _pick(data, twin: Twin, *, unknown: bool = True):
    roll = data.draw(st.integers(0, 9))
    if unknown and roll == 0:
        return None
    ids = sorted(oid for oid, o in twin.book.orders.items() if (o.is_open or roll == 1) and twin.held(oid))
    return twin.book.orders[data.draw(st.sampled_from(ids))] if ids else None


def do_submit(twin: Twin, data) -> None:
    symbol = data.draw(st.sampled_from(SYMBOLS))
    kind = data.draw(st.sampled_from([OrderType.LIMIT, OrderType.LIMIT, OrderType.MARKET]))
    n = twin.next_id("submit")
    twin.command(submit(command_id=n, client_order_id=n, symbol=symbol, side=data.draw(st.sampled_from(list(Side))),
                        type=kind, quantity=_lots(data, symbol),
                        price=_price(data, symbol, slack=True) if kind is OrderType.LIMIT else None))


def do_cancel(twin: Twin, data) -> None:
    order = _pick(data, twin)
    twin.command(cancel("O-unknown" if order is None else order.order_id, command_id=twin.next_id("cancel")))


def do_replace(twin: Twin, data) -> None:
    order = _pick(data, twin, unknown=False)
    if order is not None:
        twin.command(replace(order.order_id, quantity=_lots(data, order.symbol),
                             price=_price(data, order.symbol, slack=True), command_id=twin.next_id("replace")))


def do_kill(twin: Twin, data) -> None:
    twin.command(kill_switch(data.draw(st.sampled_from([True, False, False])), "property",
                             command_id=twin.next_id("kill")))


def do_venue(twin: Twin, data) -> None:
    order = _pick(data, twin, unknown=False)
    if order is None:
        return
    kind = data.draw(st.sampled_from(list(K) if data.draw(st.integers(0, 4)) == 0 else LIKELY[order.status]))
    twin.venue_offset += 1
    twin.report(venue_report(order.order_id, kind, report_id=twin.next_id("venue"), venue_offset=twin.venue_offset,
                             venue_index=1, **(_fill_terms(data, order) if kind is K.FILL else {})))


def do_ack_and_fill(twin: Twin, data) -> None:
    """The venue acknowledges a new order and fills some of it in one input: one message of two reports."""
    pending = sorted(oid for oid, o in twin.book.orders.items() if o.status is OrdStatus.PENDING_NEW)
    if not pending:
        return
    order = twin.book.orders[data.draw(st.sampled_from(pending))]
    twin.venue_offset += 1
    ack = venue_report(order.order_id, K.ACCEPTED, report_id=twin.next_id("venue"), venue_offset=twin.venue_offset,
                       venue_index=1)
    fill = venue_report(order.order_id, K.FILL, report_id=twin.next_id("venue"), venue_offset=twin.venue_offset,
                        venue_index=2, **_fill_terms(data, order))
    twin.reports_of_one_input([ack, fill])


def _unchanged(twin: Twin, repeat, *, read_again: bool = False) -> None:
    """A repeat (retry, resend, re-read) changes no order and no balance of the compact side.

    A retry or a resend is a new message, whose offset the account records; one read again is not.
    """
    before = twin.worker.account()
    held = {oid: twin.worker.order(oid) for oid in twin.book.orders}
    twin.again(repeat())
    after = twin.worker.account()
    assert (after.balances, after.positions, after.open_count) == (before.balances, before.positions, before.open_count)
    if read_again:
        assert after.offsets == before.offsets
    assert {oid: twin.worker.order(oid) for oid in twin.book.orders} == held


def _new_input(twin: Twin, send):
    """Send a repeat as a new input, remembering what it sent."""
    def run():
        sends = send()
        twin.sent[len(twin.worker.log) - 1] = sends
        return sends
    return run


def do_retry(twin: Twin, data) -> None:
    """A client sends one of its latest commands again (under the same command id).

    Not for an archived order's submission: a client order id is unique within the retention
    only, and once its order is archived the same submission makes a new order (see the README).
    """
    recent = [c for c in twin.commands[-3:] if not (isinstance(c, SubmitOrder) and not twin.held(submit_id(c)))]
    if recent:
        cmd = data.draw(st.sampled_from(recent))
        _unchanged(twin, _new_input(twin, lambda: twin.worker.command(cmd)))


def do_resend(twin: Twin, data) -> None:
    """The venue sends an applied report again (its outbox after a restart)."""
    if twin.reports:
        report = data.draw(st.sampled_from(twin.reports))
        _unchanged(twin, _new_input(twin, lambda: twin.worker.report(report)))


def do_reread(twin: Twin, data) -> None:
    """A message read again at its own offset, as after a crash; now and then after a restart."""
    if twin.worker.log:
        if data.draw(st.booleans()):
            twin.worker.restart()
        index = data.draw(st.integers(0, len(twin.worker.log) - 1))
        _unchanged(twin, lambda: twin.worker.reread(index), read_again=True)


def do_batch(twin: Twin, data) -> None:
    """The open batch ends (its state written) and the next inputs form a new one."""
    twin.worker.open_batch()


def do_crash(twin: Twin, data) -> None:
    """The worker dies before it writes the open batch; the batch's inputs are read again.

    An input whose writes were lost is applied as the first time and sends the same. One whose
    writes reached the table before the crash (a kill switch's scan flushes the batch early) is
    not applied again: it sends its reports again, as repeats, and the venue requests still
    unanswered (a dead letter of it may not come again: a refused venue report leaves no trace;
    nor the reports of an order archived since, when the retention is as short as here).
    """
    for index in twin.worker.crash():
        topic, offset, _, _ = twin.worker.log[index]
        stored = twin.worker.account().has_read(f"{topic}/{twin.worker.partition}", offset)
        again = twin.worker.reread(index)
        first = twin.sent[index]
        if not stored:
            assert [(s.value, s.headers) for s in again] == [(s.value, s.headers) for s in first]
        else:
            assert duplicates(again) == again and {s.value for s in again} <= {s.value for s in first}
            if twin.worker.account().archived == 0:  # an archived order's reports cannot go again
                assert reports(again) == reports(first)


ACTIONS = [do_batch, do_batch, do_crash, do_ack_and_fill, do_ack_and_fill, do_submit, do_submit, do_submit, do_venue, do_venue, do_venue, do_venue, do_venue,
           do_cancel, do_replace, do_kill, do_retry, do_resend, do_reread, do_reread]


def _check_same_state(twin: Twin) -> None:
    compact, book = twin.worker.account(), twin.book.account
    assert compact.balances == book.balances and compact.open_count == book.open_count
    reference = positions(twin.fills, instruments(), {})
    assert {s: (h.quantity, h.cost, h.realised, h.fills) for s, h in compact.positions.items()} == \
           {s: (p.quantity, p.cost, p.realised, p.fills) for s, p in reference.items()}
    for order_id, order in twin.book.orders.items():
        held = twin.worker.order(order_id)
        if held is None:
            assert not order.is_open, f"open order {order_id} archived"
            continue
        assert held == order
        assert twin.worker.executions(order_id) == twin.book.executions(order_id)


def _run(table: MemoryTable, data) -> None:
    twin = Twin(Worker(table))
    for _ in range(data.draw(st.integers(1, 50), label="steps")):
        data.draw(st.sampled_from(ACTIONS), label="action")(twin, data)
    twin.worker.close_batch()
    _check_same_state(twin)


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow,
                                                                                     HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_compact_state_matches_the_reference_model(memory_table, data):
    _reset(memory_table)
    _run(memory_table, data)


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow,
                                                                                    HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_compact_state_matches_the_reference_model_while_archiving_closed_orders(memory_table, monkeypatch, data):
    from tests.unit.agents.oms_harness import keep
    keep(monkeypatch, Retention(keep=1))
    _reset(memory_table)
    _run(memory_table, data)


def _reset(table: MemoryTable) -> None:
    """A fresh table for each example (the fixture makes one per test)."""
    from atlas.agents import oms as agent
    from atlas.tables import oms as tables
    table.clear()
    tables._pending = None  # a batch a failed example left open
    agent._touched.clear()
    tables.forget_cached()
    table[tables.account_key("alice")] = account().model_dump_json().encode()
