"""Corrections to faust-streaming 0.15.3 that ATLAS's guarantees depend on, and one shortcut on its hot path.

Imported by `atlas.app` before the app is created.
"""
from __future__ import annotations

import asyncio
import logging
from time import monotonic
from typing import Any, Callable, Counter, Mapping, Set

from faust.assignor.partition_assignor import PartitionAssignor
from faust.tables.recovery import Recovery
from faust.tables.recovery import logger as recovery_logger
from faust.transport.consumer import Consumer, TransactionManager
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.topics import Topic
from faust.transport.producer import ProducerBuffer
from faust.types import TP, EventT
from faust.utils.tracing import finish_span

log = logging.getLogger(__name__)
_send_pending = ProducerBuffer._send_pending


async def _send_pending_tracked(self: ProducerBuffer, fut) -> None:
    # The buffer's task takes a message off the queue before sending it: remember it, so
    # that a flush can wait for it too.
    # A message the producer refused is not handed: whoever waits for it is told, and so is
    # every later `handed_over` (the buffer's task dies with the error, and the worker with it).
    self.atlas_in_flight = fut
    try:
        await _send_pending(self, fut)
    except BaseException as exc:
        self.atlas_failed = exc
        for _, waiter in getattr(self, "atlas_handed_waiters", ()):
            if not waiter.done():
                waiter.set_exception(RuntimeError(f"the producer buffer failed to hand over a message: {exc!r}"))
        self.atlas_handed_waiters = []
        raise
    self.atlas_handed = getattr(self, "atlas_handed", 0) + 1
    if getattr(self, "atlas_handed_waiters", None):
        _wake_handed(self)


_put = ProducerBuffer.put


def _put_counted(self: ProducerBuffer, fut) -> None:
    self.atlas_put = getattr(self, "atlas_put", 0) + 1
    _put(self, fut)


async def handed_over(buffer: ProducerBuffer) -> None:
    """Return once every message put in the buffer so far has been handed to the Kafka producer.

    Handed, not delivered: in the producer's hands a message belongs to the transaction open
    then, and a message sent after it cannot belong to an earlier one. Under exactly_once an
    agent's outputs go straight to the transaction of their input; they wait for this first, so
    that a commit can never take an output without the changelog writes its event made before it.
    """
    failed = getattr(buffer, "atlas_failed", None)
    if failed is not None:
        raise RuntimeError(f"the producer buffer failed to hand over a message: {failed!r}")
    target = getattr(buffer, "atlas_put", 0)
    if getattr(buffer, "atlas_handed", 0) >= target:
        return
    waiter = asyncio.get_running_loop().create_future()
    buffer.__dict__.setdefault("atlas_handed_waiters", []).append((target, waiter))
    await waiter


def _wake_handed(buffer: ProducerBuffer) -> None:
    handed, still = buffer.atlas_handed, []
    for target, waiter in buffer.atlas_handed_waiters:
        if handed >= target:
            if not waiter.done():
                waiter.set_result(None)
        else:
            still.append((target, waiter))
    buffer.atlas_handed_waiters = still


async def _flush_until_delivered(self: ProducerBuffer) -> None:
    """Return only once every message buffered now has been delivered to Kafka.

    Table changelog writes go through this buffer (`send_soon`), and Faust flushes it
    before committing source offsets. Its own `flush` returns as soon as no message went
    out for 0.1 s, or once the queue is empty while the last message is still being
    handed to the Kafka client: in both cases the offsets get committed with changelog
    writes still pending, and after a `kill -9` those events are neither in the changelog
    nor read again (seen in tests/faults/test_kill_restart.py). Awaiting each message's
    own delivery future closes both gaps; a failed delivery raises, so nothing is committed.
    """
    waiting = list(self.pending._queue)
    in_flight = getattr(self, "atlas_in_flight", None)
    if in_flight is not None:
        waiting.insert(0, in_flight)
    for fut in waiting:
        await fut


_commit_transaction = TransactionManager.commit


async def _commit_transaction_after_flush(self: TransactionManager, offsets, start_new_transaction: bool = True) -> bool:
    """Under exactly_once, hand the buffered changelog writes to the transaction before committing it.

    Faust flushes the producer buffer before committing offsets only without transactions.
    With them, writes still buffered at commit time went into the next transaction while
    the offsets of the events that made them were committed in this one; a `kill -9`
    before the next commit then lost those events (seen in tests/faults/test_kill_restart.py).
    """
    await self.app.producer.buffer.flush()
    return await _commit_transaction(self, offsets, start_new_transaction=start_new_transaction)


ProducerBuffer._send_pending = _send_pending_tracked
ProducerBuffer.put = _put_counted
ProducerBuffer.flush = _flush_until_delivered


_on_assignment = PartitionAssignor.on_assignment


def _on_assignment_with_stable_groups(self: PartitionAssignor, assignment) -> None:
    """Faust's `on_assignment`, then each topic's group renamed to its group's partition count.

    Under exactly_once the group is part of every transactional id (`<app>-<group>-<partition>`):
    the changelog writes, the outputs and the offsets of a partition share that transaction, and
    a restarted worker fences the transactions its dead predecessor left open by starting
    producers with the same ids. Faust numbers the groups 0, 1, ... in order of partition count
    among the topics the group leader's metadata held. On a first start the assignor's own
    one-partition topic was often not there yet ("not found in cluster metadata"), so the
    8-partition topics were group 0, and group 1 after every restart. The restarted worker then
    fenced nothing: the dead worker's open transactions held each changelog's last stable offset
    back for the 60 s transaction timeout, and recovery, which reads to that offset under
    read_committed, restored a state from before the crash and went on from the committed input
    offsets (the OMS lost 100 commands of a trader, the venue filled some orders twice;
    tests/faults/test_audit_kill_restart.py). A partition count names the same group on every
    start; topics of one app with the same count are subscribed together, so one group per count.
    """
    _on_assignment(self, assignment)
    try:
        cluster = self.app.consumer._thread._ensure_consumer()._client.cluster
        self._topic_groups = stable_groups(self._topic_groups,
                                           lambda topic: len(cluster.partitions_for_topic(topic) or ()))
    except Exception:  # never let it end aiokafka's coordinator: Faust's numbers, as before
        log.exception("transactional ids keep Faust's group numbers (the partition counts were not read)")


def stable_groups(topic_groups: dict[str, int], partitions: Callable[[str], int]) -> dict[str, int]:
    """Each topic's group renamed to the group's partition count.

    A group none of whose topics this worker's metadata holds (the assignor's own topic, on a first
    start) gets a negative name instead, `-1 - Faust's number`: no transaction writes there. If two
    groups share a count (Faust's leader makes one per count), Faust's numbers are kept, with a warning.
    """
    counts: dict[int, int] = {}
    for topic, group in topic_groups.items():
        counts[group] = max(counts.get(group, 0), partitions(topic))
    known = [count for count in counts.values() if count]
    if len(set(known)) < len(known):
        log.warning("two partition groups have the same partition count (%s): transactional ids keep Faust's "
                    "group numbers, which may change between starts", sorted(known))
        return dict(topic_groups)
    names = {group: count or -1 - group for group, count in counts.items()}
    return {topic: names[group] for topic, group in topic_groups.items()}


PartitionAssignor.on_assignment = _on_assignment_with_stable_groups


_perform_seek = Consumer.perform_seek


async def _perform_seek_with_flow_stopped(self: Consumer) -> None:
    """Seek to the committed offsets with the flow stopped; recovery resumes it right after.

    Recovery resumes the stream partitions and then seeks them back to the committed
    offsets. A batch fetched in between, from the old position, kept being handed to the
    agents after the seek and moved the consumer's read offset past messages it had not
    delivered; Faust then dropped those as already read and committed over them as a gap
    (faust-streaming issues #216 and #596 describe this race). `getmany` stops handing out
    a batch as soon as the flow is stopped, so the rest is fetched again from the new position.
    """
    self.stop_flow()
    await _perform_seek(self)


async def _seek_to_committed_else_reset(self: AIOKafkaConsumerThread) -> Mapping[TP, int]:
    """Seek the stream partitions with nothing committed to where the reset policy puts them too.

    aiokafka seeks only where an offset above 0 is committed and leaves every other partition
    where it is. A partition no worker had committed yet was then left past the batch that the
    perform_seek above discards: a worker restarted before its first commit on a partition
    skipped that partition's first records (its OMS never saw the venue's first reports, and
    their orders stayed PENDING_NEW). Changelog partitions are recovery's to place and are left
    where it put them.
    """
    return await self.call_thread(_seek_committed_or_reset, self._ensure_consumer(),
                                  self.app.tables.changelog_topics, self.app.conf.consumer_auto_offset_reset)


async def _seek_committed_or_reset(consumer: Any, changelogs: Set[str], reset: str) -> Mapping[TP, int]:
    committed = await consumer.seek_to_committed()
    unread = [tp for tp, offset in committed.items() if not offset and tp.topic not in changelogs]
    if unread:
        log.debug("nothing committed on %s: sought to their %s", sorted(map(tuple, unread)),
                  "end" if reset == "latest" else "beginning")
        await (consumer.seek_to_end if reset == "latest" else consumer.seek_to_beginning)(*unread)
    return committed


Consumer.perform_seek = _perform_seek_with_flow_stopped
AIOKafkaConsumerThread.seek_to_committed = _seek_to_committed_else_reset
TransactionManager.commit = _commit_transaction_after_flush


_get_producer = Topic._get_producer


async def _get_started_producer(self: Topic):
    """Skip `App.maybe_start_producer` (a stampede-guarded coroutine) once the producer runs.

    Not a correction but a cost: it ran for every message sent, about a tenth of the
    producer path's time in a profile of the `oms` agent.
    """
    app = self.app
    if not app.in_transaction and app.producer.started:
        return app.producer
    return await _get_producer(self)


Topic._get_producer = _get_started_producer


_build_highwaters = Recovery._build_highwaters


async def _build_highwaters_at_the_last_record(self: Recovery, consumer, tps, destination, title: str) -> None:
    """Under exactly_once, each changelog partition's highwater is the offset of its last committed record.

    Faust takes the last stable offset its consumer cached from its last fetch of the partition,
    less one. That is a commit marker's offset, which no record reaches: recovery then ended only
    through the aborted-transaction guess below, two 5 s queue timeouts after the last record (10 s
    of every restart). And a cached value can predate the abort of the transactions a dead worker
    left open (a new worker's producers abort them as it starts): recovery would stop before the
    records committed after them. So ask the broker now, and read back from the end to the last
    record (`atlas.runtime.kafka.last_records`). If that fails, Faust's own way.
    """
    if not self.app.in_transaction or not tps:
        return await _build_highwaters(self, consumer, tps, destination, title)
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from atlas.runtime.kafka import client_options, last_records

    reader = AIOKafkaConsumer(**client_options(), isolation_level="read_committed", enable_auto_commit=False,
                              client_id=f"{self.app.conf.id}-recovery")
    try:
        await reader.start()
        last = await last_records(reader, [TopicPartition(tp.topic, tp.partition) for tp in tps], timeout=30.0)
    except Exception as exc:
        log.warning("recovery: the changelogs' last records not found (%s); highwaters from the consumer", exc)
        return await _build_highwaters(self, consumer, tps, destination, title)
    finally:
        try:
            await reader.stop()
        except Exception:
            log.exception("recovery: the reader of the changelogs' last records did not stop cleanly")
    highwaters = {TP(tp.topic, tp.partition): -1 if offset is None else offset for tp, offset in last.items()}
    self.log.info("Highwater for %s changelog partitions:\n%s", title, self._highwater_logtable(highwaters, title=title))
    destination.clear()
    destination.update(highwaters)


Recovery._build_highwaters = _build_highwaters_at_the_last_record


@Recovery.task
async def _slurp_changelogs_counting_this_recovery(self: Recovery) -> None:
    """Faust's `Recovery._slurp_changelogs`, counting only queue timeouts that began in the current recovery.

    Under exactly_once, two consecutive 5 s timeouts of the changelog queue make Faust take every
    active partition whose consumer position reached the highwater as done ("Aborted tx until
    highwater"): its seen offset jumps to the highwater. Its counter of timeouts lives as long as
    the task and was only reset by an event, so the idle waits before a recovery already counted:
    after a `kill -9` and restart, the first timeout in the recovery, 1.5 s in, took a partition
    whose records were fetched but not yet delivered as done, and all of them were then dropped
    as already seen (an account's orders missing in tests/faults/test_kill_restart.py).

    A copy of faust 0.15.3's method (its comments trimmed), except two lines: the time each wait
    begins is taken (`waiting_since`), and a timeout of a wait that began before the current
    recovery started sets the counter to 0 instead of adding 1.
    """
    changelog_queue = self.tables.changelog_queue
    tp_to_table = self.tp_to_table

    active_tps = self.active_tps
    standby_tps = self.standby_tps
    active_offsets = self.active_offsets
    standby_offsets = self.standby_offsets
    active_events_received_at = self._active_events_received_at
    standby_events_received_at = self._standby_events_received_at

    buffers = self.buffers
    buffer_sizes = self.buffer_sizes
    processing_times = self._processing_times

    async def _maybe_signal_recovery_end(timeout: bool = False, timeout_count: int = 0) -> None:
        # lets wait at least 2 consecutive cycles for the queue to be
        # empty to avoid race conditions between
        # the aiokafka consumer position and draining of the queue
        if timeout and self.app.in_transaction and timeout_count > 1:
            await detect_aborted_tx()
        if self.in_recovery and not self.need_recovery():
            # apply anything stuck in the buffers
            self.flush_buffers()
            self._set_recovery_ended()
            if self._actives_span is not None:
                self._actives_span.set_tag("Actives-Ready", True)
            recovery_logger.debug("Setting recovery end")
            self.signal_recovery_end.set()

    async def detect_aborted_tx() -> None:
        highwaters = self.active_highwaters
        offsets = self.active_offsets
        for tp, highwater in highwaters.items():
            if highwater is not None and offsets[tp] is not None and offsets[tp] < highwater:
                # Past the highwater, not at it: with the last record as highwater (under exactly_once, see
                # _build_highwaters_at_the_last_record), a position at it is that record not fetched yet.
                if await self.app.consumer.position(tp) > highwater:  # type: ignore[operator]
                    recovery_logger.info(f"Aborted tx until highwater for {tp}")
                    offsets[tp] = highwater

    timeout_count = 0
    while not self.should_stop:
        try:
            self.signal_recovery_end.clear()
            waiting_since = monotonic()
            try:
                event: EventT = await asyncio.wait_for(changelog_queue.get(), timeout=5.0)
            except asyncio.TimeoutError:
                started_at = self._recovery_started_at
                timeout_count = 0 if started_at is not None and waiting_since < started_at else timeout_count + 1
                if self.should_stop:
                    return
                await _maybe_signal_recovery_end(timeout=True, timeout_count=timeout_count)
                continue
            now = monotonic()
            timeout_count = 0
            message = event.message
            tp = message.tp
            offset = message.offset
            recovery_logger.debug(f"Recovery message topic {tp} offset {offset}")
            offsets: Counter[TP]
            bufsize = buffer_sizes.get(tp)
            is_active = False
            if tp in active_tps:
                is_active = True
                table = tp_to_table[tp]
                offsets = active_offsets
                if bufsize is None:
                    bufsize = buffer_sizes[tp] = table.recovery_buffer_size
                active_events_received_at[tp] = now
            elif tp in standby_tps:
                table = tp_to_table[tp]
                offsets = standby_offsets
                if bufsize is None:
                    bufsize = buffer_sizes[tp] = table.standby_buffer_size
                    standby_events_received_at[tp] = now
            else:
                recovery_logger.warning(f"recovery unknown topic {tp} offset {offset}")

            seen_offset = offsets.get(tp, None)
            recovery_logger.debug(f"seen offset for {tp} is {seen_offset} message offset {offset}")
            if seen_offset is None or offset > seen_offset:
                offsets[tp] = offset
                buf = buffers[table]
                buf.append(event)
                await table.on_changelog_event(event)
                if len(buf) >= bufsize:  # type: ignore[operator]
                    table.apply_changelog_batch(buf)
                    buf.clear()
                    self._last_flush_at = now
                now_after = monotonic()

                if is_active:
                    last_processed_at = self._last_active_event_processed_at
                    if last_processed_at is not None:
                        processing_times.append(now_after - last_processed_at)
                        max_samples = self.num_samples_required_for_estimate
                        if len(processing_times) > max_samples:
                            processing_times.popleft()
                    self._last_active_event_processed_at = now_after

            await _maybe_signal_recovery_end()

            standby_ready = self._standbys_span is None and self.tables.standbys_ready
            if not standby_ready and not self.standby_remaining_total():
                recovery_logger.debug("Completed standby partition fetch")
                if self._standbys_span:
                    finish_span(self._standbys_span)
                    self._standbys_span = None
                self.tables.on_standbys_ready()
        except Exception as ex:
            recovery_logger.warning(f"Error in recovery {ex}")


Recovery._slurp_changelogs = _slurp_changelogs_counting_this_recovery
