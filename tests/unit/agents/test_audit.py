"""The audit exporter's state machine (`agents.audit.AuditExporter`) over a fake consumer and a folder sink.

No Kafka: `FakeConsumer` holds each partition's log in memory and plays the part of aiokafka's
consumer the exporter uses (fetch, pause, seek, commit, offsets). Each test drives the
exporter's coroutines directly, as its export loop and the rebalance listener would.
"""
from __future__ import annotations

import asyncio
import functools
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import OffsetOutOfRangeError
from tenacity import wait_none

from atlas.agents import audit as exporter_module
from atlas.agents.audit import AuditExporter
from atlas.audit import trail
from atlas.audit.format import AuditRecord, Batch, Batcher, Manifest, check_chain, decode, manifest_key
from atlas.audit.sinks import FileSink
from tests.helpers import AUDIT_T0 as T0

PREFIX = "audit"
TOPIC = "atlas.executions"
TP0 = TopicPartition(TOPIC, 0)
TP1 = TopicPartition(TOPIC, 1)
NEVER_DUE_MS = 3_600_000  # batches are cut by count only, unless a test flushes


@dataclass(frozen=True)
class Message:
    """A consumed record, as aiokafka's ConsumerRecord shows it to the exporter."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple = ()


def messages(tp: TopicPartition, first: int, count: int, headers: tuple = (("trace", b"\x01"),)) -> list[Message]:
    """`count` consecutive messages of a partition from offset `first`, one ms apart from T0 + first."""
    return [Message(tp.topic, tp.partition, n, T0 + n, b"alice", f'{{"n": {n}}}'.encode(), headers)
            for n in range(first, first + count)]


def records_of(msgs: list[Message]) -> list[AuditRecord]:
    return [AuditRecord.of(m.topic, m.partition, m.offset, m.timestamp, m.key, m.value, list(m.headers)) for m in msgs]


def write_trail(sink: FileSink, msgs: list[Message], previous: Manifest | None = None,
                start: int | None = None) -> Manifest:
    """Write the messages as one object of the trail (what an earlier exporter left), after `previous`."""
    recs = records_of(msgs)
    if start is None:
        start = previous.end if previous is not None else recs[0].offset
    return trail.write_batch(sink, PREFIX, Batch(recs[0].topic, recs[0].partition, start, 0, recs), previous)


class FakeConsumer:
    """The part of AIOKafkaConsumer the exporter calls, over an in-memory log per partition."""

    def __init__(self, journal: list | None = None):
        self.journal = journal if journal is not None else []  # shared with a JournalSink to see the order
        self.log: dict[TopicPartition, list[Message]] = {}
        self.assigned: set[TopicPartition] = set()
        self.paused: set[TopicPartition] = set()
        self.position: dict[TopicPartition, int] = {}
        self.seeks: list[tuple[TopicPartition, int]] = []
        self.commits: list[dict[TopicPartition, int]] = []
        self.fail_next_fetch: Exception | None = None
        self.stopped = False

    def produce(self, msgs: list[Message]) -> None:
        for m in msgs:
            self.log.setdefault(TopicPartition(m.topic, m.partition), []).append(m)

    def rewind(self, tp: TopicPartition, offset: int) -> None:
        """Deliver from `offset` again without a seek by the exporter (a fetch in flight across a restart)."""
        self.position[tp] = offset

    async def getmany(self, timeout_ms: int = 0, max_records: int | None = None) -> dict:
        if self.fail_next_fetch is not None:
            exc, self.fail_next_fetch = self.fail_next_fetch, None
            raise exc
        fetched = {}
        for tp in sorted(self.assigned - self.paused):
            if tp not in self.position:
                continue  # the exporter seeks every partition before resuming it
            found = [m for m in self.log.get(tp, []) if m.offset >= self.position[tp]][:max_records]
            if found:
                fetched[tp] = found
                self.position[tp] = found[-1].offset + 1
        return fetched

    def pause(self, *tps: TopicPartition) -> None:
        self.paused.update(tps)

    def resume(self, *tps: TopicPartition) -> None:
        self.paused.difference_update(tps)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append((tp, offset))
        self.position[tp] = offset

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(dict(offsets))
        self.journal.append(("commit", dict(offsets)))

    async def beginning_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.log[tp][0].offset if self.log.get(tp) else 0 for tp in tps}

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.log[tp][-1].offset + 1 if self.log.get(tp) else 0 for tp in tps}

    async def stop(self) -> None:
        self.stopped = True


class JournalSink(FileSink):
    """A folder sink that journals each put, and fails the puts `fail(key)` returns an error for."""

    def __init__(self, root: Path, journal: list, fail: Callable[[str], Exception | None] | None = None):
        super().__init__(root)
        self.journal, self.fail = journal, fail

    def put(self, key: str, data: bytes) -> None:
        error = self.fail(key) if self.fail is not None else None
        self.journal.append(("put", key) if error is None else ("failed", key, type(error).__name__))
        if error is not None:
            raise error
        super().put(key, data)


def run(test: Callable[..., Any]) -> Callable[..., None]:
    """Run an async test body in a fresh event loop (the exporter is built inside it)."""
    @functools.wraps(test)
    def sync(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))
    return sync


def exporter_for(sink: FileSink, consumer: FakeConsumer, max_records: int = 5) -> AuditExporter:
    exporter = AuditExporter()
    exporter.sink, exporter.prefix = sink, PREFIX
    exporter.batcher = Batcher(max_records, NEVER_DUE_MS)
    exporter._consumer = consumer
    return exporter


async def assign(exporter: AuditExporter, consumer: FakeConsumer, *tps: TopicPartition) -> None:
    """What the rebalance listener does on assignment, then the export loop's first resume."""
    consumer.assigned.update(tps)
    await exporter.assigned(set(tps))
    await exporter._resume()


def manifests_of(sink: FileSink, partition: int) -> list[Manifest]:
    keys = trail.partitions(sink, PREFIX, TOPIC).get(partition, [])
    return [Manifest.from_json(sink.get(k)) for k in keys if k.endswith(trail.MANIFEST_SUFFIX)]


def exported_offsets(sink: FileSink, partition: int) -> list[int]:
    keys = trail.partitions(sink, PREFIX, TOPIC).get(partition, [])
    return [r.offset for r in trail.records(sink, keys)]


@pytest.fixture
def journal() -> list:
    return []


@pytest.fixture
def sink(tmp_path: Path, journal: list) -> JournalSink:
    return JournalSink(tmp_path / "trail", journal)


@pytest.fixture
def consumer(journal: list) -> FakeConsumer:
    return FakeConsumer(journal)


@run
async def test_resume_when_warnings_are_errors_still_resumes_partition(sink, consumer):
    consumer.produce(messages(TP0, 0, 3))
    exporter = exporter_for(sink, consumer)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # as this repo's pytest settings have it, and `python -W error`
        await assign(exporter, consumer, TP0)
    assert exporter.refused == {} and exporter._last == {TP0: None} and TP0 not in consumer.paused


@run
async def test_assigned_partition_is_paused_until_resumed(sink, consumer):
    consumer.produce(messages(TP0, 0, 3))
    exporter = exporter_for(sink, consumer)
    consumer.assigned.add(TP0)
    await exporter.assigned({TP0})
    assert TP0 in consumer.paused and exporter._unresumed == {TP0}
    assert await consumer.getmany(max_records=10) == {}


@run
async def test_resume_when_trail_empty_seeks_to_log_start_and_resumes(sink, consumer):
    consumer.produce(messages(TP0, 3, 2))  # retention already deleted offsets 0..2
    exporter = exporter_for(sink, consumer)
    await assign(exporter, consumer, TP0)
    assert consumer.seeks[-1] == (TP0, 3)
    assert TP0 not in consumer.paused and not exporter._unresumed and exporter._last == {TP0: None}


@run
async def test_export_when_batch_full_writes_object_then_manifest_then_commits_next_offset(sink, consumer, journal):
    consumer.produce(messages(TP0, 0, 7))
    exporter = exporter_for(sink, consumer, max_records=5)
    await assign(exporter, consumer, TP0)
    await exporter._export_some()
    [made] = manifests_of(sink, 0)
    assert (made.start, made.end, made.records) == (0, 5, 5)
    assert journal == [("put", made.key), ("put", manifest_key(made.key)), ("commit", {TP0: 5})]
    assert exported_offsets(sink, 0) == [0, 1, 2, 3, 4]
    assert exporter._last[TP0] == made and (exporter.objects_written, exporter.records_written) == (1, 5)


@run
async def test_resume_when_trail_exists_seeks_to_last_manifest_end(sink, consumer):
    log = messages(TP0, 0, 12)
    consumer.produce(log)
    last = write_trail(sink, log[4:7], write_trail(sink, log[:4]))
    exporter = exporter_for(sink, consumer)
    await assign(exporter, consumer, TP0)
    assert consumer.seeks[-1] == (TP0, 7) and exporter._last[TP0] == last


@run
async def test_export_when_records_in_trail_come_again_writes_each_once(sink, consumer):
    log = messages(TP0, 0, 12)
    consumer.produce(log)
    write_trail(sink, log[:4])
    exporter = exporter_for(sink, consumer, max_records=4)
    await assign(exporter, consumer, TP0)
    consumer.rewind(TP0, 0)  # offsets 0..3, already in the trail, are delivered again
    await exporter._export_some()
    assert exported_offsets(sink, 0) == list(range(12))
    assert [(m.start, m.end) for m in manifests_of(sink, 0)] == [(0, 4), (4, 8), (8, 12)]
    assert check_chain(manifests_of(sink, 0)) == [] and consumer.commits == [{TP0: 8}, {TP0: 12}]


@run
async def test_resume_when_newest_object_lacks_manifest_adopts_it_and_seeks_after_it(sink, consumer):
    log = messages(TP0, 0, 10)
    consumer.produce(log)
    first = write_trail(sink, log[:3])
    orphan = write_trail(sink, log[3:6], first)
    (sink.root / manifest_key(orphan.key)).unlink()  # a crash between the object and its manifest
    exporter = exporter_for(sink, consumer)
    await assign(exporter, consumer, TP0)
    assert consumer.seeks[-1] == (TP0, 6) and manifests_of(sink, 0) == [first, orphan]


@run
async def test_export_when_other_writer_holds_the_key_restarts_partition_from_sink(sink, consumer, journal):
    log = messages(TP0, 0, 12)
    consumer.produce(log)
    ours = write_trail(sink, log[:3])
    exporter = exporter_for(sink, consumer, max_records=5)
    await assign(exporter, consumer, TP0)
    # The partition's previous owner, still running, writes offsets 3..4 where this exporter will write 3..7.
    theirs = write_trail(sink, log[3:5], ours)
    journal.clear()
    await exporter._export_some()
    assert journal == [("put", theirs.key)]  # one attempt: a conflict is not retried
    assert TP0 in consumer.paused and TP0 in exporter._unresumed and TP0 not in exporter._last
    assert not exporter.refused and consumer.commits == []
    await exporter._export_some()  # resumes after their object, then reads on
    assert consumer.seeks[-1] == (TP0, 5)
    assert [(m.start, m.end) for m in manifests_of(sink, 0)] == [(0, 3), (3, 5), (5, 10)]
    assert check_chain(manifests_of(sink, 0)) == [] and exported_offsets(sink, 0) == list(range(10))
    assert consumer.commits == [{TP0: 10}] and exporter.objects_written == 1


@run
async def test_export_when_sink_rejects_a_partition_refuses_it_and_writes_the_others(tmp_path, consumer, journal):
    sink = JournalSink(tmp_path / "trail", journal,
                       fail=lambda key: ValueError("unwritable key") if "/partition=1/" in key else None)
    consumer.produce(messages(TP0, 0, 5) + messages(TP1, 0, 5))
    exporter = exporter_for(sink, consumer, max_records=5)
    await assign(exporter, consumer, TP0, TP1)
    await exporter._export_some()
    assert list(exporter.refused) == [f"{TOPIC}[1]"]
    assert "offsets 0..4" in exporter.refused[f"{TOPIC}[1]"] and "ValueError" in exporter.refused[f"{TOPIC}[1]"]
    assert TP1 in consumer.paused and TP1 not in exporter._unresumed and TP1 not in exporter._last
    [failed] = [e for e in journal if e[0] == "failed"]  # one attempt: bad data is not retried
    assert "/partition=1/" in failed[1] and failed[2] == "ValueError"
    consumer.produce(messages(TP0, 5, 5))
    await exporter._export_some()
    assert exported_offsets(sink, 0) == list(range(10)) and exported_offsets(sink, 1) == []
    assert consumer.commits == [{TP0: 5}, {TP0: 10}] and exporter.status()["ok"] is False


@run
async def test_export_when_sink_fails_twice_retries_then_writes_once_and_commits(tmp_path, consumer, journal,
                                                                                monkeypatch):
    monkeypatch.setattr(exporter_module, "wait_exponential_jitter", lambda **_: wait_none())
    failures = iter([OSError("sink unreachable"), OSError("sink unreachable")])
    failing_since_at_put: list[float | None] = []

    def fail(key: str) -> Exception | None:
        failing_since_at_put.append(exporter.failing_since)
        return next(failures, None)

    sink = JournalSink(tmp_path / "trail", journal, fail=fail)
    consumer.produce(messages(TP0, 0, 5))
    exporter = exporter_for(sink, consumer, max_records=5)
    await assign(exporter, consumer, TP0)
    await exporter._export_some()
    [made] = manifests_of(sink, 0)
    assert journal == [("failed", made.key, "OSError"), ("failed", made.key, "OSError"), ("put", made.key),
                       ("put", manifest_key(made.key)), ("commit", {TP0: 5})]
    assert failing_since_at_put[0] is None and failing_since_at_put[1] is not None
    assert failing_since_at_put[2] == failing_since_at_put[1]  # one outage, timed from its first failure
    assert exporter.failing_since is None and "OSError" in exporter.last_error
    assert exported_offsets(sink, 0) == [0, 1, 2, 3, 4] and exporter.objects_written == 1


@run
async def test_export_when_manifest_put_fails_once_keeps_the_object_and_writes_the_manifest(
        tmp_path, consumer, journal, monkeypatch):
    monkeypatch.setattr(exporter_module, "wait_exponential_jitter", lambda **_: wait_none())
    failed: list[str] = []

    def fail(key: str) -> Exception | None:
        if key.endswith(trail.MANIFEST_SUFFIX) and not failed:
            failed.append(key)
            return OSError("connection reset")
        return None

    sink = JournalSink(tmp_path / "trail", journal, fail=fail)
    consumer.produce(messages(TP0, 0, 5))
    exporter = exporter_for(sink, consumer, max_records=5)
    await assign(exporter, consumer, TP0)
    await exporter._export_some()
    [made] = manifests_of(sink, 0)
    assert journal == [("put", made.key), ("failed", manifest_key(made.key), "OSError"), ("put", made.key),
                       ("put", manifest_key(made.key)), ("commit", {TP0: 5})]
    assert [k for k in sink.keys() if k.endswith(trail.OBJECT_SUFFIX)] == [made.key]
    assert check_chain([made], {made.key: sink.get(made.key)}) == []


@run
async def test_resume_when_trail_ahead_of_topic_refuses_partition_without_seeking(sink, consumer):
    write_trail(sink, messages(TP0, 0, 10))
    consumer.produce(messages(TP0, 0, 5))  # the topic was deleted and made again
    exporter = exporter_for(sink, consumer)
    consumer.assigned.add(TP0)
    await exporter.assigned({TP0})
    seeks_before = list(consumer.seeks)
    await exporter._resume()
    reason = exporter.refused[f"{TOPIC}[0]"]
    assert "ends at offset 10" in reason and "only reaches 5" in reason
    assert consumer.seeks == seeks_before and TP0 in consumer.paused
    assert TP0 not in exporter._last and TP0 not in exporter._unresumed


@run
async def test_resume_when_retention_deleted_unexported_records_starts_at_log_start_and_chain_shows_gap(
        sink, consumer):
    old = write_trail(sink, messages(TP0, 0, 10))
    consumer.produce(messages(TP0, 50, 5))
    exporter = exporter_for(sink, consumer, max_records=5)
    await assign(exporter, consumer, TP0)
    assert consumer.seeks[-1] == (TP0, 50)
    await exporter._export_some()
    manifests = manifests_of(sink, 0)
    assert [(m.start, m.end) for m in manifests] == [(0, 10), (50, 55)] and manifests[1].previous == old.chain
    [problem] = check_chain(manifests)
    assert "gap" in problem and "from 50" in problem and "ended at 10" in problem


@run
async def test_resume_when_object_after_retention_gap_lacks_manifest_adopts_it_keeping_the_gap(sink, consumer):
    old = write_trail(sink, messages(TP0, 0, 10))
    # The exporter resumed at the log start, 50, wrote offsets 50..54 and died before their manifest.
    orphan = write_trail(sink, messages(TP0, 50, 5), old, start=50)
    (sink.root / manifest_key(orphan.key)).unlink()
    consumer.produce(messages(TP0, 50, 8))
    exporter = exporter_for(sink, consumer)
    await assign(exporter, consumer, TP0)
    assert consumer.seeks[-1] == (TP0, 55)
    manifests = manifests_of(sink, 0)
    assert [(m.start, m.end) for m in manifests] == [(0, 10), (50, 55)]
    assert len(check_chain(manifests)) == 1 and "gap" in check_chain(manifests)[0]


@run
async def test_flush_open_batches_writes_and_commits_them(sink, consumer):
    consumer.produce(messages(TP0, 0, 3) + messages(TP1, 0, 2))
    exporter = exporter_for(sink, consumer, max_records=5)
    await assign(exporter, consumer, TP0, TP1)
    await exporter._export_some()
    assert list(sink.keys()) == [] and consumer.commits == []
    await exporter._flush()
    assert exported_offsets(sink, 0) == [0, 1, 2] and exported_offsets(sink, 1) == [0, 1]
    assert sorted(consumer.commits, key=lambda c: list(c)[0]) == [{TP0: 3}, {TP1: 2}]


@run
async def test_revoked_partition_open_batch_is_not_written_on_flush(sink, consumer):
    consumer.produce(messages(TP0, 0, 3) + messages(TP1, 0, 2))
    exporter = exporter_for(sink, consumer, max_records=5)
    await assign(exporter, consumer, TP0, TP1)
    await exporter._export_some()
    consumer.assigned.discard(TP1)
    await exporter.revoked({TP1})
    await exporter._flush()
    assert exported_offsets(sink, 0) == [0, 1, 2] and exported_offsets(sink, 1) == []
    assert consumer.commits == [{TP0: 3}] and TP1 not in exporter._last


@run
async def test_write_when_partition_revoked_after_its_batch_was_cut_writes_nothing(sink, consumer):
    consumer.produce(messages(TP0, 0, 3))
    exporter = exporter_for(sink, consumer, max_records=5)
    await assign(exporter, consumer, TP0)
    await exporter._export_some()
    [batch] = exporter.batcher.drain()
    await exporter.revoked({TP0})
    await exporter._write(batch)
    assert list(sink.keys()) == [] and consumer.commits == []


@run
async def test_export_record_with_null_header_value_keeps_it_null(sink, consumer):
    consumer.produce(messages(TP0, 0, 1, headers=(("trace", None), ("span", b"\x02"))))
    exporter = exporter_for(sink, consumer, max_records=1)
    await assign(exporter, consumer, TP0)
    await exporter._export_some()
    [made] = manifests_of(sink, 0)
    [record] = decode(sink.get(made.key))
    assert record.headers == (("trace", None), ("span", "Ag=="))


@run
async def test_export_when_offset_out_of_range_restarts_partition_without_raising(sink, consumer):
    consumer.produce(messages(TP0, 0, 3))
    exporter = exporter_for(sink, consumer, max_records=3)
    await assign(exporter, consumer, TP0)
    await exporter._export_some()
    consumer.fail_next_fetch = OffsetOutOfRangeError({TP0: 3})
    await exporter._export_some()
    assert TP0 in consumer.paused and TP0 in exporter._unresumed and TP0 not in exporter._last
    consumer.log[TP0] = messages(TP0, 8, 3)  # retention deleted offsets 3..7 before they were read
    await exporter._export_some()
    assert consumer.seeks[-1] == (TP0, 8) and TP0 not in consumer.paused
    assert [(m.start, m.end) for m in manifests_of(sink, 0)] == [(0, 3), (8, 11)]
    assert consumer.commits == [{TP0: 3}, {TP0: 11}]
