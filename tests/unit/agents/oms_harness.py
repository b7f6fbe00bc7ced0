"""The `oms` agent's `process` over an in-memory OMS table, fed like a partition of each input topic.

`process` is the agent's whole synchronous step (load, decide, save, say what to send); here
it runs without Kafka: the table is a dict that records every write, and each input gets the
next offset of its topic, as the account's partitions would give it.
"""
from __future__ import annotations

from typing import Any

from atlas.agents import oms as agent
from atlas.agents.outputs import POSS_DUP, Send
from atlas.core.commands import SetAccountKillSwitch, SetLimits, SubmitOrder
from atlas.core.events import ExecutionReport, VenueReport, VenueReports
from atlas.core.values import order_id_for
from atlas.oms.state import AccountState, Order, Retention
from atlas.runtime.partitioning import partition_for
from atlas.settings import settings
from atlas.tables import oms as tables
from atlas.tables import oms_migrate
from tests import helpers

COMMANDS = settings.topic("commands")
ADMIN = settings.topic("admin")
REPORTS = settings.topic("venue.reports")
EXECUTIONS = settings.topic("executions")


def _key(key: Any) -> bytes:
    return key.encode() if isinstance(key, str) else bytes(key)


class MemoryTable(dict):
    """The OMS table as a dict of bytes keys; `writes` lists (key, bytes written, 0 for a delete) in order."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[tuple[bytes, int]] = []

    @property
    def data(self) -> "MemoryTable":
        return self  # no RocksDB partitions: `scan_prefix` reads the items

    def get(self, key: Any, default: Any = None) -> Any:
        return super().get(_key(key), default)

    def __setitem__(self, key: Any, value: bytes) -> None:
        self.writes.append((_key(key), len(value)))
        super().__setitem__(_key(key), value)

    def __delitem__(self, key: Any) -> None:
        self.writes.append((_key(key), 0))
        super().__delitem__(_key(key))


class Worker:
    """One account's inputs through `process`, with offsets, re-reads and the outputs they caused."""

    def __init__(self, table: MemoryTable, account_id: str = "alice") -> None:
        self.table = table
        self.account_id = account_id
        self.partition = partition_for(account_id.encode())
        self.log: list[tuple[str, int, int, bytes]] = []  # (topic, offset, ts, value) of every input so far
        self.next_offset = {COMMANDS: 0, ADMIN: 0, REPORTS: 0}
        self.now = helpers.T0
        self._batch: Any = None  # the open `tables.batch()`, while inputs are processed as one batch
        self.batch_from = 0  # index in `log` of the open batch's first input

    def open_batch(self) -> None:
        """Process the next inputs as one batch: their writes are held back until `close_batch`."""
        self.close_batch()
        self._batch = tables.batch()
        self._batch.__enter__()
        self.batch_from = len(self.log)

    def close_batch(self) -> None:
        """Write the open batch's state (once per key, accounts last)."""
        if self._batch is not None:
            batch, self._batch = self._batch, None
            batch.__exit__(None, None, None)

    def crash(self) -> list[int]:
        """The worker dies before writing the open batch: its writes are lost; returns the inputs to read again."""
        lost = list(range(self.batch_from, len(self.log))) if self._batch is not None else []
        if self._batch is not None:
            batch, self._batch = self._batch, None
            failure = RuntimeError("killed")
            batch.__exit__(RuntimeError, failure, None)
        self.restart()
        return lost

    def _process(self, topic: str, offset: int, ts: int, value: bytes) -> list[Send]:
        return agent.process(topic, self.partition, offset, ts, self.account_id.encode(), value)

    def send(self, topic: str, value: bytes, ts: int | None = None) -> list[Send]:
        """A new input at the next offset of its topic."""
        self.now = ts if ts is not None else self.now + 100
        offset = self.next_offset[topic]
        self.next_offset[topic] += 1
        self.log.append((topic, offset, self.now, value))
        return self._process(topic, offset, self.now, value)

    def command(self, cmd: Any, ts: int | None = None) -> list[Send]:
        """A command on its topic: an operator's (SetLimits, SetAccountKillSwitch) on `admin`, a trader's on `commands`."""
        topic = ADMIN if isinstance(cmd, (SetLimits, SetAccountKillSwitch)) else COMMANDS
        return self.send(topic, cmd.model_dump_json().encode(), ts)

    def report(self, report: VenueReport) -> list[Send]:
        return self.send(REPORTS, report.model_dump_json().encode())

    def reports(self, reports: list[VenueReport]) -> list[Send]:
        """Several reports of one venue input about the account, as the venue sends them: one message."""
        return self.send(REPORTS, VenueReports(reports=tuple(reports)).model_dump_json().encode())

    def reread(self, index: int) -> list[Send]:
        """The input at `index` of the log read again, at its own offset (as after a crash)."""
        topic, offset, ts, value = self.log[index]
        return self._process(topic, offset, ts, value)

    def restart(self) -> None:
        """What a new assignment does to the agent: caches emptied, every account starts a new epoch."""
        agent._touched.clear()
        tables.forget_cached()

    def account(self) -> AccountState:
        account = tables.load_account(self.account_id)
        assert account is not None
        return account

    def order(self, order_id: str) -> Order | None:
        return tables.load_order(self.account(), order_id)

    def executions(self, order_id: str) -> list[ExecutionReport]:
        order = self.order(order_id)
        return [] if order is None else tables.executions(order)


def reports(sends: list[Send]) -> list[ExecutionReport]:
    """The execution reports among the sends."""
    return [ExecutionReport.model_validate_json(s.value) for s in sends if s.topic.get_topic_name() == EXECUTIONS]


def duplicates(sends: list[Send]) -> list[Send]:
    """The sends marked as possible duplicates."""
    return [s for s in sends if s.headers == POSS_DUP]


def keep(monkeypatch, retention: Retention) -> None:
    """Make the agent archive closed orders by `retention`."""
    monkeypatch.setattr(agent, "retention", lambda: retention)


def submit_id(cmd: SubmitOrder) -> str:
    """The id of the order a submission makes."""
    return order_id_for(cmd.account_id, cmd.client_order_id)
