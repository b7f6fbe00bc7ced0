"""The audit exporter: every message of every ATLAS topic, exactly once, into the audit sink.

It runs in the worker beside the agents but with its own consumer group (`<app id>-audit`),
because it must commit an offset only once the object holding it is durably written, which
Faust's per-event acks cannot express. The sink, not the group, says where to go on:

1. On assignment, each partition resumes after the last manifest in the sink (writing the
   manifest of an object a crash left without one), and the consumer seeks there.
2. Records are batched per partition by count and age (`atlas.audit.format.Batcher`).
3. A full or old batch is written (object, then manifest, in a thread: the sink blocks) and
   only then is the offset after it committed. A crash before the commit rereads records
   the trail already holds, and the batcher drops them.
4. While the sink fails the exporter retries with backoff and reads nothing more, so memory
   stays bounded by one open batch per partition plus the client's fetch buffer. The agents
   keep trading meanwhile: they have their own consumer.
"""
from __future__ import annotations

import asyncio
import gzip
import logging
import time
import zlib
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError, OffsetOutOfRangeError
from botocore.exceptions import BotoCoreError, ClientError
from mode import Service
from tenacity import AsyncRetrying, retry_if_exception, wait_exponential_jitter

from atlas.app import app
from atlas.audit import trail
from atlas.audit.format import AuditRecord, Batch, Batcher, Manifest
from atlas.audit.sinks import open_sink
from atlas.runtime import metrics, tracing
from atlas.runtime.kafka import client_options
from atlas.settings import settings
from atlas.topics import ALL

log = logging.getLogger(__name__)
FLUSH_BUDGET_S = 8.0  # how long a clean stop lets the last batches take (below shutdown_timeout)


def _sink_options() -> dict[str, Any]:
    if settings.audit_sink.startswith("s3://") and settings.audit_lock_mode:
        return {"lock_mode": settings.audit_lock_mode, "lock_days": settings.audit_lock_days}
    return {}


class AuditExporter(Service):
    """Consumes every ATLAS topic and writes it to the audit sink, committing after each write."""

    current: "AuditExporter | None" = None
    wait_for_shutdown = True  # stopping waits for the export loop's last flush
    shutdown_timeout = 15.0

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sink = open_sink(settings.audit_sink, **_sink_options())
        self.prefix = settings.audit_prefix
        self.topics = [t.get_topic_name() for t in ALL]
        self.batcher = Batcher(settings.audit_max_records, int(settings.audit_max_age * 1000))
        self._consumer: AIOKafkaConsumer | None = None
        self._last: dict[TopicPartition, Manifest | None] = {}  # per resumed partition
        self._unresumed: set[TopicPartition] = set()
        self._writing = asyncio.Lock()
        # What /readyz reports.
        self.objects_written = 0
        self.records_written = 0
        self.failing_since: float | None = None
        self.last_error: str | None = None
        self.refused: dict[str, str] = {}  # partitions not exported, and why
        self.versioning: str | None = None  # an S3 bucket's versioning state
        self._in_flight_ms: int | None = None  # when the batch being written got its first record

    def status(self) -> dict[str, Any]:
        return {"sink": settings.audit_sink.split("://", 1)[0], "ok": self.failing_since is None and not self.refused,
                "failing_for_s": None if self.failing_since is None else round(time.monotonic() - self.failing_since, 1),
                "last_error": self.last_error, "objects_written": self.objects_written,
                "records_written": self.records_written, "partitions": len(self._last), "refused": self.refused,
                "versioning": self.versioning}

    def lag_seconds(self) -> float:
        """How long the oldest record read but not yet in the sink has waited (0 when every record read is written)."""
        pending = [ms for ms in (self._in_flight_ms, self.batcher.oldest_opened_ms()) if ms is not None]
        return max(0.0, (_now_ms() - min(pending)) / 1000) if pending else 0.0  # the batcher's clock: monotonic

    async def end_offsets(self) -> dict[TopicPartition, int]:
        """Ask the broker for the end of every partition this exporter holds (the last stable offset: read_committed)."""
        wanted = list(self._last)
        return dict(await self._consumer.end_offsets(wanted)) if wanted and self._consumer is not None else {}

    def exported(self) -> dict[TopicPartition, tuple[int | None, int]]:
        """Per partition this exporter holds: (the broker's end offset as last fetched, the end of what the sink has)."""
        consumer = self._consumer
        if consumer is None:
            return {}
        found = {}
        for tp, manifest in list(self._last.items()):
            try:
                end = consumer.highwater(tp)
            except Exception:  # revoked under the scrape
                continue
            found[tp] = (end, manifest.end if manifest is not None else 0)
        return found

    async def on_start(self) -> None:
        self._consumer = AIOKafkaConsumer(
            **client_options(), group_id=settings.audit_group,
            # Every position is set by a seek to the sink's end; "none": a position retention deleted raises,
            # and is resumed with the gap recorded, instead of silently skipping to the earliest offset.
            client_id=f"{settings.app_id}-audit", enable_auto_commit=False, auto_offset_reset="none",
            # Aborted transactions are not events (under at_least_once nothing is transactional).
            isolation_level="read_committed",
            session_timeout_ms=int(settings.session_timeout * 1000), heartbeat_interval_ms=1000,
            # A long sink outage holds the loop in its retries; staying in the group meanwhile
            # is right, since any other exporter would be waiting for the same sink.
            max_poll_interval_ms=30 * 60 * 1000,
            # Batches wait up to max_age anyway: fetch big and seldom rather than a small fetch per
            # new record, which cost the broker (and so the agents on this machine) dear.
            fetch_min_bytes=64 * 1024, fetch_max_wait_ms=int(min(0.5, settings.audit_max_age / 2) * 1000),
        )
        self._consumer.subscribe(self.topics, listener=_Rebalance(self))
        await self._consumer.start()
        AuditExporter.current = self
        if hasattr(self.sink, "versioning"):
            self.add_future(self._check_versioning())

    async def _check_versioning(self) -> None:
        try:
            self.versioning = await asyncio.to_thread(self.sink.versioning, settings.audit_versioning)
        except Exception as exc:  # the sink may be down at start: the writes will retry, this is a report
            log.warning("audit: could not read the bucket's versioning: %r", exc)

    async def on_stop(self) -> None:
        AuditExporter.current = None  # the export loop sees `should_stop`, flushes and stops the consumer

    @Service.task
    async def _export(self) -> None:
        try:
            await self._export_until_stopped()
            try:
                # What is batched still goes out if the sink takes it at once; otherwise the next start rereads it.
                await asyncio.wait_for(self._flush(), timeout=FLUSH_BUDGET_S)
            except (asyncio.TimeoutError, Exception) as exc:
                log.warning("audit: the last batches were not written before stopping (%r); they will be reread", exc)
        finally:
            try:
                await self._consumer.stop()
            finally:
                self.set_shutdown()

    async def _flush(self) -> None:
        async with self._writing:
            for batch in self.batcher.drain():
                await self._write(batch)

    async def _export_until_stopped(self) -> None:
        while not self.should_stop:
            try:
                await self._export_some()
            except Exception as exc:
                if self.should_stop and _transient(exc):
                    return  # a write cut short by the stop: the next start rereads it
                # A bug, not an outage: keep the worker trading, report it, and start over from the sink.
                log.exception("audit: the export loop failed; resuming every partition from the sink")
                self.last_error, self.failing_since = repr(exc)[:300], self.failing_since or time.monotonic()
                async with self._writing:
                    for tp in self._consumer.assignment():
                        self._restart(tp)
                await self.sleep(5.0)

    async def _export_some(self) -> None:
        """One round: resume what is new, read a batch of records, write what is full or old."""
        consumer = self._consumer
        if self._unresumed:
            await self._resume()
        try:
            fetched = await consumer.getmany(timeout_ms=200, max_records=settings.audit_max_records)
        except OffsetOutOfRangeError as exc:
            # Retention deleted records before they were read: resuming records the gap in the chain.
            for tp in (exc.args[0] if exc.args and isinstance(exc.args[0], dict) else consumer.assignment()):
                self._restart(tp)
            return
        except KafkaError as exc:
            log.warning("audit: reading failed (%r); trying again", exc)
            await self.sleep(1.0)
            return
        async with self._writing:
            now = _now_ms()
            for tp, messages in fetched.items():
                for m in messages:
                    if tp not in self._last:
                        break  # revoked, refused, or to resume from the sink (it is read again from there)
                    record = AuditRecord.of(m.topic, m.partition, m.offset, m.timestamp, m.key, m.value,
                                            list(m.headers or ()))
                    batch = self.batcher.add(record, now)
                    if batch is not None:
                        await self._write(batch)
            for batch in self.batcher.due(_now_ms()):
                await self._write(batch)

    def _retrying(self) -> AsyncRetrying:
        """Retry what an outage explains, with backoff, until the service stops; anything else is raised."""
        return AsyncRetrying(wait=wait_exponential_jitter(multiplier=0.2, max=10, jitter=0.5), retry=retry_if_exception(_transient),
                             stop=lambda _: self.should_stop, before_sleep=self._failed, reraise=True)

    async def _write(self, batch: Batch) -> None:
        """Write one batch (retrying while the sink fails), then commit the offset after it."""
        tp = TopicPartition(batch.topic, batch.partition)
        if tp not in self._last:
            return  # the partition left this exporter since the batch was cut: its next owner rereads it
        self._in_flight_ms = batch.opened_ms
        try:
            if tracing.ENABLED:
                with tracing.writing_batch(batch.topic, batch.partition, batch.start, batch.end,
                                           (r.headers for r in batch.records)):
                    made = await self._write_retrying(batch, tp)
            else:
                made = await self._write_retrying(batch, tp)
        except trail.TrailConflict as exc:
            # Another exporter wrote this partition past what we knew: start it again from the sink.
            log.warning("audit: %s; resuming %s from the sink", exc, tp)
            self._restart(tp)
            return
        except Exception as exc:
            if _transient(exc):
                raise  # only while stopping: the next start rereads the batch
            self._refuse(tp, f"writing offsets {batch.start}..{batch.end - 1} failed: {exc!r}")
            return
        finally:
            self._in_flight_ms = None
        if self.failing_since is not None:
            log.info("audit: the sink is back after %.1f s", time.monotonic() - self.failing_since)
        self.failing_since = None
        self._last[tp] = made
        self.objects_written += 1
        self.records_written += made.records
        metrics.AUDIT_OBJECTS.inc()
        metrics.AUDIT_RECORDS.inc(made.records)
        await self._commit({tp: made.end})

    async def _write_retrying(self, batch: Batch, tp: TopicPartition) -> Manifest:
        async def write() -> Manifest:
            return await asyncio.to_thread(trail.write_batch, self.sink, self.prefix, batch, self._last[tp])
        return await self._retrying()(write)

    def _failed(self, state: Any) -> None:
        error = state.outcome.exception()
        metrics.AUDIT_ERRORS.inc()
        if self.failing_since is None:
            self.failing_since = time.monotonic()
            log.error("audit: the sink failed (%r); retrying with backoff, reading nothing meanwhile", error)
        self.last_error = repr(error)[:300]

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        try:
            await self._consumer.commit(offsets)
        except KafkaError as exc:
            # The sink is the record of progress: a lost commit only means rereading what it has.
            log.info("audit: offset commit failed (%r); the sink's manifests still say where to resume", exc)

    def _restart(self, tp: TopicPartition) -> None:
        """Stop reading a partition and resume it from the sink's end."""
        self._last.pop(tp, None)
        self.batcher.forget(tp.topic, tp.partition)
        self._unresumed.add(tp)
        self._consumer.pause(tp)

    def _refuse(self, tp: TopicPartition, reason: str) -> None:
        """Stop exporting a partition (until it is assigned again) and report why."""
        self._last.pop(tp, None)
        self.batcher.forget(tp.topic, tp.partition)
        self._unresumed.discard(tp)
        self._consumer.pause(tp)
        self.refused[f"{tp.topic}[{tp.partition}]"] = reason
        log.error("audit: %s[%d] not exported: %s", tp.topic, tp.partition, reason)

    async def _resume(self) -> None:
        """Start each newly assigned partition after the last object the sink holds for it."""
        pending = sorted(self._unresumed)
        try:
            starts = await self._consumer.beginning_offsets(pending)
            ends = await self._consumer.end_offsets(pending)
        except KafkaError as exc:
            log.warning("audit: reading partition offsets failed (%r); trying again", exc)
            await self.sleep(1.0)
            return
        resumed = 0
        for tp in pending:
            try:
                async for attempt in self._retrying():
                    with attempt:
                        last = await asyncio.to_thread(trail.resume, self.sink, self.prefix, tp.topic, tp.partition,
                                                       starts[tp])
            except Exception as exc:
                if _transient(exc):
                    return  # stopping
                self._refuse(tp, f"its trail cannot be read: {exc!r}")
                continue
            if tp not in self._unresumed:
                continue  # revoked meanwhile
            if last is not None and last.end > ends[tp]:
                ends[tp] = (await self._consumer.end_offsets([tp]))[tp]  # it may have grown meanwhile
            if last is not None and last.end > ends[tp]:
                # The trail is ahead of the topic: the topic was deleted and made again, or the sink
                # belongs to another cluster. Writing on would mix two histories under one chain.
                self._refuse(tp, f"the trail ends at offset {last.end} but the topic only reaches {ends[tp]} "
                                 "(point ATLAS_AUDIT_SINK elsewhere)")
                continue
            start = last.end if last is not None else starts[tp]
            if start < starts[tp]:
                # Retention deleted records the trail never got: start after them, so the chain shows
                # the gap (verify reports it) instead of claiming offsets it does not hold.
                log.error("audit: %s[%d]: offsets %d..%d were deleted before they were exported", tp.topic,
                          tp.partition, start, starts[tp] - 1)
                start = starts[tp]
            self.batcher.resume(tp.topic, tp.partition, start)
            self._last[tp] = last
            self._unresumed.discard(tp)
            self.refused.pop(f"{tp.topic}[{tp.partition}]", None)
            self._consumer.seek(tp, start)
            self._consumer.resume(tp)
            resumed += 1 if last is not None else 0
        self.failing_since = None
        log.info("audit: %d partitions assigned, %d of them resume after their last object in the sink",
                 len(pending), resumed)

    async def assigned(self, partitions: set[TopicPartition]) -> None:
        self._consumer.pause(*partitions)
        for tp in partitions:
            # A placeholder position, so the client does not look for a committed offset to start
            # from (and raise, with no reset policy): `_resume` seeks to the sink's end before reading.
            self._consumer.seek(tp, 0)
        self._unresumed |= set(partitions)

    async def revoked(self, partitions: set[TopicPartition]) -> None:
        async with self._writing:  # let a write in progress finish: the next owner resumes after it
            for tp in partitions:
                self._last.pop(tp, None)
                self._unresumed.discard(tp)
                self.batcher.forget(tp.topic, tp.partition)
                self.refused.pop(f"{tp.topic}[{tp.partition}]", None)


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, exporter: AuditExporter):
        self.exporter = exporter

    async def on_partitions_revoked(self, revoked) -> None:
        await self.exporter.revoked(set(revoked))

    async def on_partitions_assigned(self, assigned) -> None:
        await self.exporter.assigned(set(assigned))


def _now_ms() -> int:
    return int(time.monotonic() * 1000)


if settings.audit_enabled:
    app.service(AuditExporter)


def _transient(exc: BaseException) -> bool:
    """An error an outage explains (worth retrying), not bad data in the trail or the records."""
    if isinstance(exc, (gzip.BadGzipFile, zlib.error, EOFError)):
        return False
    return isinstance(exc, (OSError, BotoCoreError, ClientError, KafkaError))
