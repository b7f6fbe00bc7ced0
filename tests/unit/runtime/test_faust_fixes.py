"""The corrections `atlas.runtime.faust_fixes` makes to Faust, run on Faust's own code without a broker."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from faust.tables.recovery import Recovery
from faust.transport.producer import ProducerBuffer
from faust.types import TP
from faust.types.tuples import FutureMessage, PendingMessage

from atlas.runtime.faust_fixes import handed_over  # (importing it patches Faust, as atlas.app does)

CHANGELOG = TP("atlas-oms-changelog", 3)
RECORDS = 9  # offsets 0-8; offset 9 is the transaction's commit marker, the last offset before the highwater


class Table:
    """Just what recovery calls on a table."""

    recovery_buffer_size = 1000

    def __init__(self) -> None:
        self.applied: list[int] = []

    def persisted_offset(self, tp: TP) -> None:
        return None  # a local store wiped after the kill

    async def on_changelog_event(self, event) -> None:
        pass

    def apply_changelog_batch(self, events) -> None:
        self.applied += [event.message.offset for event in events]


class ScriptedQueue:
    """A changelog queue whose `get` plays a script: each step is an event, or a callable run before the wait times out."""

    def __init__(self, steps) -> None:
        self.steps = list(steps)

    async def get(self):
        step = self.steps.pop(0)
        if callable(step):
            step()
            raise asyncio.TimeoutError  # the 5 s wait for the next event ran out
        return step


class Consumer:
    def __init__(self) -> None:
        self.positions: dict[TP, int] = {}

    async def position(self, tp: TP) -> int:
        return self.positions[tp]


def event(offset: int) -> SimpleNamespace:
    return SimpleNamespace(message=SimpleNamespace(tp=CHANGELOG, offset=offset))


def idle() -> None:
    pass


def test_recovery_with_timeouts_from_before_it_started_does_not_skip_fetched_changelog_records():
    table, consumer, steps = Table(), Consumer(), []

    def start_recovery() -> None:
        # What `_restart_recovery` does before it resumes the changelog partitions.
        recovery._set_recovery_started()
        recovery.add_active(table, CHANGELOG)
        recovery.active_highwaters[CHANGELOG] = RECORDS
        recovery.active_offsets[CHANGELOG] = -1
        # The consumer has fetched every record and the marker; none is on the queue yet.
        consumer.positions[CHANGELOG] = RECORDS + 1

    def stop() -> None:
        recovery._stopped.set()

    # Idle before the recovery (a restarted worker waiting to join its group): timeouts pile up.
    # The recovery starts during a wait that then times out; the records arrive; the queue runs dry.
    steps += [idle, idle, idle, start_recovery, *map(event, range(RECORDS)), idle, idle, stop]

    async def slurp() -> None:
        nonlocal recovery
        app = SimpleNamespace(conf=SimpleNamespace(stream_recovery_delay=0.0), in_transaction=True,
                              consumer=consumer, in_recovery=False)
        recovery = Recovery(app, SimpleNamespace(changelog_queue=ScriptedQueue(steps), standbys_ready=True))
        await asyncio.wait_for(Recovery._slurp_changelogs(recovery), timeout=10)

    recovery: Recovery
    asyncio.run(slurp())

    assert table.applied == list(range(RECORDS))
    assert recovery.active_offsets[CHANGELOG] == RECORDS  # past the marker, after two empty waits in this recovery
    assert not recovery.in_recovery


class Channel:
    """A topic as the producer buffer sees it: publishing records the message."""

    def __init__(self) -> None:
        self.published: list[str] = []

    async def publish_message(self, fut, wait: bool = False):
        self.published.append(fut.message.value)
        return fut


def test_handed_over_returns_only_once_every_message_put_before_it_is_with_the_producer():
    async def run() -> list[str]:
        channel, order = Channel(), []
        buffer = ProducerBuffer()
        buffer.app = SimpleNamespace(conf=SimpleNamespace(producer_threaded=False))
        for value in ("changelog-1", "changelog-2"):
            buffer.put(FutureMessage(PendingMessage(channel, b"k", value, 0, None, None, None, None, None)))

        async def output() -> None:
            await handed_over(buffer)
            order.append(f"output after {channel.published}")

        waiting = asyncio.create_task(output())
        for _ in range(2):
            await asyncio.sleep(0)
            assert not waiting.done()  # a changelog write is still in the buffer
            await buffer._send_pending(buffer.pending.get_nowait())  # what the buffer's task does
        await asyncio.wait_for(waiting, timeout=1)
        await handed_over(buffer)  # nothing pending: at once
        return order

    assert asyncio.run(run()) == ["output after ['changelog-1', 'changelog-2']"]


class RefusingChannel(Channel):
    """A topic whose producer refuses the message (too large, no metadata)."""

    async def publish_message(self, fut, wait: bool = False):
        raise ValueError("MessageSizeTooLargeError")


def test_handed_over_raises_when_a_message_before_it_could_not_be_handed_over():
    async def run() -> tuple[str, str]:
        buffer = ProducerBuffer()
        buffer.app = SimpleNamespace(conf=SimpleNamespace(producer_threaded=False))
        buffer.put(FutureMessage(PendingMessage(RefusingChannel(), b"k", "changelog", 0, None, None, None, None, None)))
        waiting = asyncio.create_task(handed_over(buffer))
        await asyncio.sleep(0)
        with pytest.raises(ValueError):
            await buffer._send_pending(buffer.pending.get_nowait())
        with pytest.raises(RuntimeError) as waited:
            await asyncio.wait_for(waiting, timeout=1)
        with pytest.raises(RuntimeError) as later:
            await handed_over(buffer)  # an output sent later must not go out either
        return str(waited.value), str(later.value)

    waited, later = asyncio.run(run())
    assert "failed to hand over" in waited and "MessageSizeTooLargeError" in later


def transactional_ids(topic_groups: dict[str, int], tps: set[TP]) -> set[str]:
    """The transactional ids Faust's TransactionManager starts for the partitions, with these groups."""
    from faust.transport.consumer import TransactionManager

    assignor = SimpleNamespace(group_for_topic=topic_groups.__getitem__, is_standby=lambda tp: False)
    manager = SimpleNamespace(app=SimpleNamespace(assignor=assignor, conf=SimpleNamespace(id="atlas")),
                              transactional_id_format=TransactionManager.transactional_id_format)
    manager._tps_to_active_tpgs = lambda tps: TransactionManager._tps_to_active_tpgs(manager, tps)
    return TransactionManager._tps_to_transactional_ids(manager, tps)


def test_a_partitions_transaction_has_the_same_id_on_a_first_start_and_after_a_restart():
    from atlas.runtime.faust_fixes import stable_groups

    counts = {"atlas.commands": 8, "atlas-oms-changelog": 8, "atlas-__assignor-__leader": 1}
    # Faust's leader numbers groups by partition count among the topics its metadata held: on a
    # first start the assignor's own topic was often missing, after a restart it is group 0.
    first = {"atlas.commands": 0, "atlas-oms-changelog": 0}
    restart = {"atlas-__assignor-__leader": 0, "atlas.commands": 1, "atlas-oms-changelog": 1}
    tps = {TP("atlas.commands", 1), TP("atlas-oms-changelog", 1)}
    assert transactional_ids(first, tps) != transactional_ids(restart, tps)  # what fenced nothing

    assert stable_groups(first, counts.__getitem__) == {"atlas.commands": 8, "atlas-oms-changelog": 8}
    assert stable_groups(restart, counts.__getitem__) == {**stable_groups(first, counts.__getitem__),
                                                          "atlas-__assignor-__leader": 1}
    assert transactional_ids(stable_groups(first, counts.__getitem__), tps) \
        == transactional_ids(stable_groups(restart, counts.__getitem__), tps) == {"atlas-8-1"}


def test_a_group_whose_count_is_unknown_here_gets_a_name_no_count_has_and_shared_counts_keep_fausts_numbers():
    from atlas.runtime.faust_fixes import stable_groups

    # The assignor's topic not in this worker's metadata yet: the others are still named by their count.
    assert stable_groups({"leader": 0, "a": 1}, {"leader": 0, "a": 8}.__getitem__) == {"leader": -1, "a": 8}
    groups = {"a": 0, "b": 1}
    assert stable_groups(groups, lambda topic: 8) == groups  # two groups of 8: not one per count


@pytest.mark.parametrize("reset", ["earliest", "latest"])
def test_a_stream_partition_with_nothing_committed_is_sought_by_the_reset_policy_and_changelogs_are_left_alone(reset):
    from aiokafka import TopicPartition
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    never, zero, read, changelog = (TopicPartition("atlas.venue.reports", 7), TopicPartition("atlas.commands", 1),
                                    TopicPartition("atlas.commands", 2), TopicPartition("atlas-oms-changelog", 7))
    committed = {never: None, zero: 0, read: 42, changelog: None}
    sought: list = []

    class AIOKafka:  # what aiokafka's consumer does: seeks only offsets above 0
        async def seek_to_committed(self):
            sought.extend((tp, offset) for tp, offset in committed.items() if offset)
            return committed

        async def seek_to_beginning(self, *tps):
            sought.extend((tp, "beginning") for tp in tps)

        async def seek_to_end(self, *tps):
            sought.extend((tp, "end") for tp in tps)

    async def call_thread(fun, *args):
        return await fun(*args)

    consumer = AIOKafka()
    app = SimpleNamespace(tables=SimpleNamespace(changelog_topics={"atlas-oms-changelog"}),
                          conf=SimpleNamespace(consumer_auto_offset_reset=reset))
    thread = SimpleNamespace(call_thread=call_thread, _ensure_consumer=lambda: consumer, app=app)
    assert asyncio.run(AIOKafkaConsumerThread.seek_to_committed(thread)) == committed  # Faust's read offsets
    where = "end" if reset == "latest" else "beginning"
    assert sorted(sought, key=str) == sorted([(read, 42), (never, where), (zero, where)], key=str)
