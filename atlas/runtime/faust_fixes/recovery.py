"""Changelog recovery under exactly_once: exact highwaters, and the aborted-transaction guess counted per recovery."""
from __future__ import annotations

import asyncio
import logging
from time import monotonic
from typing import Counter

from faust.tables.recovery import Recovery
from faust.tables.recovery import logger as recovery_logger
from faust.types import TP, EventT
from faust.utils.tracing import finish_span

log = logging.getLogger(__name__)

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
