"""The audit trail in a folder sink: writing batches, finding a partition's end, adopting orphans, verify and export."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from atlas.audit import trail
from atlas.audit.cli import export, order_story
from atlas.audit.format import (
    GENESIS, AuditRecord, Batch, Batcher, Manifest, check_chain, decode, encode, manifest, manifest_key, object_key,
    object_time,
)
from atlas.audit.sinks import FileSink
from atlas.audit.trail import PartitionEnd, TrailConflict, find_end, resume, write_batch
from atlas.audit.verify import BrokerView, verify, verify_partition
from atlas.core.events import ExecType
from tests.helpers import AUDIT_T0 as T0
from tests.helpers import Book, cancel

PREFIX = "audit"
TOPIC = "atlas.executions"
HOUR = 3_600_000
DAY = 24 * HOUR


def records(first: int, count: int, ts: int = T0, partition: int = 3, topic: str = TOPIC, step: int = 1,
            tag: str = "") -> list[AuditRecord]:
    """`count` records of one partition from offset `first`, `step` apart, one ms apart from `ts`."""
    return [AuditRecord.of(topic, partition, first + i * step, ts + i, b"alice",
                           f'{{"n": {first + i * step}{tag}}}'.encode(), [("trace", b"\x01")]) for i in range(count)]


def batch(recs: list[AuditRecord], start: int | None = None) -> Batch:
    """A batch of the records, accounting for offsets from `start` (by default the first record's)."""
    return Batch(recs[0].topic, recs[0].partition, recs[0].offset if start is None else start, 0, recs)


def write_chain(sink: FileSink, *record_lists: list[AuditRecord]) -> list[Manifest]:
    """Write consecutive batches of one partition, each starting where the one before ended."""
    manifests: list[Manifest] = []
    previous = None
    for recs in record_lists:
        previous = write_batch(sink, PREFIX, batch(recs, previous.end if previous else None), previous)
        manifests.append(previous)
    return manifests


def object_keys(sink: FileSink) -> list[str]:
    return [k for k in sink.keys() if k.endswith(trail.OBJECT_SUFFIX)]


def report_of(sink: FileSink, partition: int = 3, broker: BrokerView | None = None):
    """verify_partition over one partition of the trail, its keys listed as `verify` lists them."""
    keys = trail.partitions(sink, PREFIX, TOPIC).get(partition, [])
    return verify_partition(sink, TOPIC, partition, keys, broker)


@pytest.fixture
def sink(tmp_path: Path) -> FileSink:
    return FileSink(tmp_path / "trail")


@pytest.fixture
def three(sink: FileSink) -> list[Manifest]:
    """A good trail: three objects of partition 3 in the same hour, offsets [100, 109)."""
    return write_chain(sink, records(100, 3), records(103, 3, ts=T0 + 10), records(106, 3, ts=T0 + 20))


def damage(sink: FileSink, key: str, data: bytes | None) -> None:
    """Overwrite (or with None delete) a key behind the sink's back, as a tamperer or an accident would."""
    path = sink.root / key
    if data is None:
        path.unlink()
    else:
        path.write_bytes(data)


# -- write_batch -------------------------------------------------------------------------------


def test_write_batch_new_batch_writes_object_and_manifest_at_hive_key(sink):
    recs = records(100, 3)
    made = write_batch(sink, PREFIX, batch(recs), None)
    key = f"{PREFIX}/topic={TOPIC}/dt=2026-11-25/hour=09/partition=3/{100:020d}.jsonl.gz"
    assert made.key == key
    assert list(sink.keys()) == [key, manifest_key(key)]
    assert decode(sink.get(key)) == recs
    assert Manifest.from_json(sink.get(manifest_key(key))) == made
    assert (made.first_offset, made.last_offset, made.records, made.start, made.end) == (100, 102, 3, 100, 103)
    assert made.previous == GENESIS


def test_write_batch_start_before_first_record_covers_from_start(sink):
    made = write_batch(sink, PREFIX, batch(records(100, 2), start=95), None)
    assert (made.start, made.end, made.first_offset) == (95, 102, 100)


def test_write_batch_same_batch_twice_is_a_noop(sink):
    recs = records(100, 3)
    first = write_batch(sink, PREFIX, batch(recs), None)
    before = {k: sink.get(k) for k in sink.keys()}
    again = write_batch(sink, PREFIX, batch(list(recs)), None)
    assert again == first
    assert {k: sink.get(k) for k in sink.keys()} == before


def test_write_batch_other_records_at_same_key_raises_conflict(sink):
    write_batch(sink, PREFIX, batch(records(100, 3)), None)
    with pytest.raises(TrailConflict, match="exists with other contents"):
        write_batch(sink, PREFIX, batch(records(100, 3, tag=', "other": 1')), None)


def test_write_batch_same_object_other_previous_raises_conflict_on_manifest(sink):
    first = write_batch(sink, PREFIX, batch(records(100, 3)), None)
    recs = records(103, 3)
    write_batch(sink, PREFIX, batch(recs, start=first.end), first)
    with pytest.raises(TrailConflict, match="manifest.json exists"):
        write_batch(sink, PREFIX, batch(recs, start=first.end), None)


# -- the chain and find_end ---------------------------------------------------------------------


def test_write_batch_consecutive_batches_chain_and_meet(sink, three):
    first, second, third = three
    assert second.previous == first.chain and third.previous == second.chain
    assert (first.end, second.start, second.end, third.start) == (103, 103, 106, 106)
    assert check_chain(three, {k: sink.get(k) for k in object_keys(sink)}) == []


def test_write_batch_from_batcher_chains_across_cuts(sink):
    batcher = Batcher(max_records=2, max_age_ms=1_000)
    batches = [b for r in records(10, 4, step=3) if (b := batcher.add(r, now_ms=0)) is not None]
    previous = None
    for b in batches:
        previous = write_batch(sink, PREFIX, b, previous)
    last = find_end(sink, PREFIX, TOPIC, 3).manifest
    assert (last.start, last.first_offset, last.end) == (14, 16, 20)
    report = report_of(sink)
    assert (report.problems, report.objects, report.start, report.end) == ([], 2, 10, 20)


def test_find_end_empty_trail_finds_nothing(sink):
    assert find_end(sink, PREFIX, TOPIC, 3) == PartitionEnd(None, None)


def test_find_end_objects_in_several_hour_and_day_folders_returns_last(sink):
    made = write_chain(sink, records(100, 2), records(102, 2, ts=T0 + HOUR), records(104, 2, ts=T0 + DAY),
                       records(106, 2, ts=T0 + DAY + 3 * HOUR))
    hours = {k.split("/")[2] + "/" + k.split("/")[3] for k in object_keys(sink)}
    assert hours == {"dt=2026-11-25/hour=09", "dt=2026-11-25/hour=10", "dt=2026-11-26/hour=09",
                     "dt=2026-11-26/hour=12"}
    assert find_end(sink, PREFIX, TOPIC, 3) == PartitionEnd(made[-1], None)


def test_find_end_other_partition_in_newer_folders_returns_own_last(sink):
    mine = write_chain(sink, records(100, 2), records(102, 2, ts=T0 + HOUR))
    theirs = write_chain(sink, records(7, 2, partition=4, ts=T0 + 2 * HOUR),
                         records(9, 2, partition=4, ts=T0 + DAY))
    assert find_end(sink, PREFIX, TOPIC, 3).manifest == mine[-1]
    assert find_end(sink, PREFIX, TOPIC, 4).manifest == theirs[-1]
    assert find_end(sink, PREFIX, TOPIC, 5) == PartitionEnd(None, None)


def test_find_end_empty_prefix_finds_last(sink):
    first = write_batch(sink, "", batch(records(100, 2)), None)
    second = write_batch(sink, "", batch(records(102, 2, ts=T0 + HOUR), first.end), first)
    assert second.key.startswith(f"topic={TOPIC}/dt=")
    assert find_end(sink, "", TOPIC, 3).manifest == second


# -- object_time: a clock that steps back ---------------------------------------------------------


def test_object_time_first_object_is_its_first_record_time():
    assert object_time(records(0, 2, ts=T0 + 5), None) == T0 + 5


def test_write_batch_records_older_than_previous_hour_filed_in_previous_hour(sink):
    first = write_batch(sink, PREFIX, batch(records(100, 2, ts=T0 + 2 * HOUR)), None)  # hour=11
    second = write_batch(sink, PREFIX, batch(records(102, 2, ts=T0), first.end), first)  # records from hour=09
    assert "/hour=11/" in first.key and "/hour=11/" in second.key
    assert object_time(records(102, 2, ts=T0), first) == T0 - T0 % HOUR + 2 * HOUR
    assert find_end(sink, PREFIX, TOPIC, 3).manifest == second


def test_write_batch_records_older_than_previous_day_stay_in_previous_folder(sink):
    first = write_batch(sink, PREFIX, batch(records(100, 2, ts=T0 + DAY)), None)
    second = write_batch(sink, PREFIX, batch(records(102, 2, ts=T0), first.end), first)
    third = write_batch(sink, PREFIX, batch(records(104, 2, ts=T0 + HOUR), second.end), second)
    assert {m.key.split("/")[2] for m in (first, second, third)} == {"dt=2026-11-26"}
    assert find_end(sink, PREFIX, TOPIC, 3).manifest == third


# -- orphans and resume ---------------------------------------------------------------------------


def crash_after_object(sink: FileSink, recs: list[AuditRecord], previous: Manifest | None) -> str:
    """What a crash between the two puts of write_batch leaves: the object, no manifest."""
    key = object_key(PREFIX, TOPIC, recs[0].partition, recs[0].offset, object_time(recs, previous))
    sink.put(key, encode(recs))
    return key


def test_find_end_object_without_manifest_is_reported_as_orphan(sink, three):
    key = crash_after_object(sink, records(109, 3, ts=T0 + 30), three[-1])
    assert find_end(sink, PREFIX, TOPIC, 3) == PartitionEnd(three[-1], key)


def test_find_end_orphan_in_newer_hour_than_last_manifest_is_reported(sink, three):
    key = crash_after_object(sink, records(109, 3, ts=T0 + HOUR), three[-1])
    assert "/hour=10/" in key
    assert find_end(sink, PREFIX, TOPIC, 3) == PartitionEnd(three[-1], key)


def test_resume_orphan_writes_manifest_chained_to_previous(sink, three):
    recs = records(109, 3, ts=T0 + HOUR, step=2)  # offsets 109, 111, 113
    key = crash_after_object(sink, recs, three[-1])
    adopted = resume(sink, PREFIX, TOPIC, 3, log_start=0)
    assert adopted.key == key and adopted.previous == three[-1].chain
    assert (adopted.start, adopted.end, adopted.records) == (three[-1].end, 114, 3)
    assert Manifest.from_json(sink.get(manifest_key(key))) == adopted
    assert find_end(sink, PREFIX, TOPIC, 3) == PartitionEnd(adopted, None)
    assert report_of(sink).problems == [] and report_of(sink).notes == []


def test_resume_orphan_then_same_batch_written_again_is_a_noop(sink, three):
    recs = records(109, 3, ts=T0 + 30)
    crash_after_object(sink, recs, three[-1])
    adopted = resume(sink, PREFIX, TOPIC, 3, log_start=0)
    assert write_batch(sink, PREFIX, batch(recs, three[-1].end), three[-1]) == adopted


def test_resume_orphan_without_previous_manifest_starts_at_log_start(sink):
    key = crash_after_object(sink, records(100, 3), None)
    adopted = resume(sink, PREFIX, TOPIC, 3, log_start=90)
    assert adopted.key == key and adopted.previous == GENESIS
    assert (adopted.start, adopted.end) == (90, 103)
    assert find_end(sink, PREFIX, TOPIC, 3) == PartitionEnd(adopted, None)


def test_resume_orphan_without_previous_log_start_after_first_record_starts_at_record(sink):
    crash_after_object(sink, records(100, 3), None)
    assert resume(sink, PREFIX, TOPIC, 3, log_start=102).start == 100


def test_resume_no_orphan_returns_last_manifest_and_writes_nothing(sink, three):
    before = list(sink.keys())
    assert resume(sink, PREFIX, TOPIC, 3, log_start=0) == three[-1]
    assert list(sink.keys()) == before


def test_find_end_newest_object_lost_rewriting_its_batch_restores_it(sink, three):
    damage(sink, three[-1].key, None)
    assert find_end(sink, PREFIX, TOPIC, 3) == PartitionEnd(three[1], None)
    again = write_batch(sink, PREFIX, batch(records(106, 3, ts=T0 + 20), three[1].end), three[1])
    assert again == three[-1]
    assert report_of(sink).problems == []


def test_resume_empty_partition_returns_none(sink):
    assert resume(sink, PREFIX, TOPIC, 3, log_start=0) is None
    assert list(sink.keys()) == []


# -- verify ----------------------------------------------------------------------------------------


def test_verify_good_trail_reports_no_problem(sink, three):
    write_chain(sink, records(0, 2, partition=0, ts=T0 + HOUR))
    reports = verify(sink, PREFIX, None)
    assert [(r.topic, r.partition) for r in reports] == [(TOPIC, 0), (TOPIC, 3)]
    assert all(r.problems == [] and r.notes == [] for r in reports)
    assert (reports[1].objects, reports[1].records, reports[1].start, reports[1].end) == (3, 9, 100, 109)


def test_verify_partition_broker_in_step_reports_no_problem(sink, three):
    report = report_of(sink, broker=BrokerView(log_start=100, head=109, committed=109))
    assert report.problems == [] and report.notes == []


def test_verify_partition_broker_log_start_after_trail_start_reports_no_problem(sink, three):
    # Retention deleted the oldest records from the broker; the trail still has them.
    assert report_of(sink, broker=BrokerView(log_start=105, head=109, committed=109)).problems == []


def test_verify_partition_deleted_object_reports_object_missing(sink, three):
    damage(sink, three[1].key, None)
    problems = report_of(sink).problems
    assert problems == [f"{three[1].key}: object missing"]


def test_verify_partition_altered_object_reports_altered(sink, three):
    damage(sink, three[1].key, encode(records(103, 3, tag=', "forged": true')))
    assert report_of(sink).problems == [f"{three[1].key}: object altered (SHA-256 differs from its manifest)"]


def test_verify_partition_swapped_objects_reports_both(sink, three):
    first, second = sink.get(three[0].key), sink.get(three[1].key)
    damage(sink, three[0].key, second)
    damage(sink, three[1].key, first)
    problems = report_of(sink).problems
    assert any(p.startswith(three[0].key) and "altered" in p for p in problems)
    assert any(p.startswith(three[1].key) and "altered" in p for p in problems)


def test_verify_partition_swapped_objects_with_their_manifests_reports_problem(sink, three):
    a, b = three[0].key, three[1].key
    pair_a = (sink.get(a), sink.get(manifest_key(a)))
    pair_b = (sink.get(b), sink.get(manifest_key(b)))
    damage(sink, a, pair_b[0])
    damage(sink, manifest_key(a), pair_b[1])
    damage(sink, b, pair_a[0])
    damage(sink, manifest_key(b), pair_a[1])
    assert report_of(sink).problems != []


def test_verify_partition_manifest_deleted_in_middle_reports_object_without_manifest(sink, three):
    damage(sink, manifest_key(three[1].key), None)
    problems = report_of(sink).problems
    assert f"{three[1].key}: object without a manifest" in problems
    assert any(p.startswith(three[2].key) and "chain broken" in p for p in problems)
    assert any(p.startswith(three[2].key) and "gap" in p for p in problems)


def test_verify_partition_object_and_manifest_forged_together_breaks_next_link(sink, three):
    forged = records(103, 3, tag=', "forged": true')
    data = encode(forged)
    fake = manifest(three[1].key, data, forged, three[0], three[1].start, three[1].end)
    damage(sink, three[1].key, data)
    damage(sink, manifest_key(three[1].key), fake.to_json())
    problems = report_of(sink).problems
    assert len(problems) == 1 and problems[0].startswith(three[2].key) and "chain broken" in problems[0]


def test_verify_partition_manifest_edited_reports_manifest_altered(sink, three):
    doc = json.loads(sink.get(manifest_key(three[1].key)))
    doc["end"] = 105
    damage(sink, manifest_key(three[1].key), json.dumps(doc).encode())
    problems = report_of(sink).problems
    assert any(p.startswith(three[1].key) and "manifest altered" in p for p in problems)


def test_verify_partition_garbled_manifest_reports_problem(sink, three):
    # Fails: Manifest.from_json raises JSONDecodeError out of verify_partition (and so out of `verify`,
    # which stops before the other partitions) instead of reporting the manifest as a problem.
    damage(sink, manifest_key(three[1].key), b'{"key": "trunc')
    problems = report_of(sink).problems
    assert any(p.startswith(three[1].key) for p in problems)


def test_verify_partition_newest_object_without_manifest_is_only_a_note(sink, three):
    key = crash_after_object(sink, records(109, 3, ts=T0 + 30), three[-1])
    report = report_of(sink)
    assert report.problems == []
    assert len(report.notes) == 1 and report.notes[0].startswith(f"{key}: newest object has no manifest")
    assert (report.objects, report.end) == (3, 109)


def test_verify_partition_committed_beyond_trail_end_reports_missing_offsets(sink, three):
    problems = report_of(sink, broker=BrokerView(log_start=100, head=120, committed=115)).problems
    assert problems == ["missing offsets 109..114: the exporter committed them but the trail ends at 109"]


def test_verify_partition_newest_object_and_manifest_deleted_reports_missing_offsets(sink, three):
    damage(sink, three[-1].key, None)
    damage(sink, manifest_key(three[-1].key), None)
    problems = report_of(sink, broker=BrokerView(log_start=100, head=109, committed=109)).problems
    assert problems == ["missing offsets 106..108: the exporter committed them but the trail ends at 106"]


def test_verify_partition_broker_log_start_before_trail_start_reports_gap_at_start(sink, three):
    problems = report_of(sink, broker=BrokerView(log_start=90, head=109, committed=109)).problems
    assert problems == ["gap at the start: the broker holds offsets from 90, the trail starts at 100"]


def test_verify_partition_broker_head_beyond_trail_notes_lag(sink, three):
    report = report_of(sink, broker=BrokerView(log_start=100, head=112, committed=109))
    assert report.problems == []
    assert report.notes == ["exporter lag: 3 offsets not in the trail yet"]


def test_verify_broker_partition_missing_from_trail_reports_no_objects(sink, three):
    views = {(TOPIC, 3): BrokerView(100, 109, 109), (TOPIC, 7): BrokerView(0, 5, 5)}
    reports = {(r.topic, r.partition): r for r in verify(sink, PREFIX, views)}
    assert reports[(TOPIC, 3)].problems == []
    assert "no objects, but the exporter committed offsets up to 5" in reports[(TOPIC, 7)].problems


def test_verify_broker_partition_never_committed_and_empty_reports_no_problem(sink):
    reports = verify(sink, PREFIX, {(TOPIC, 0): BrokerView(0, 0, None)})
    assert [(r.partition, r.problems, r.objects) for r in reports] == [(0, [], 0)]


def test_verify_takes_the_brokers_view_after_listing_the_trail_so_a_live_exporter_is_lag_not_a_problem(sink, three):
    # A fresh-clone run failed `audit verify` so: the exporter wrote past the head the view had read.
    asked: list[int] = []

    def view() -> dict:
        asked.append(1)
        if len(asked) == 1:  # before the listing: the trail as committed so far
            return {(TOPIC, 3): BrokerView(100, 109, 109)}
        # After it: the exporter has meanwhile produced, written (too late to be listed) and committed 109..111.
        write_batch(sink, PREFIX, batch(records(109, 3)), three[-1])
        return {(TOPIC, 3): BrokerView(100, 112, 112)}

    [report] = verify(sink, PREFIX, view)

    assert report.problems == [] and report.notes == ["exporter lag: 3 offsets not in the trail yet"]


# -- listing, reading and export ---------------------------------------------------------------


def test_topics_lists_each_topic_of_trail(sink):
    write_chain(sink, records(0, 1, topic="atlas.venue.orders"))
    write_chain(sink, records(0, 1, topic="atlas.executions"))
    assert trail.topics(sink, PREFIX) == ["atlas.executions", "atlas.venue.orders"]
    assert trail.topics(sink, "elsewhere") == []


def test_partitions_lists_keys_in_offset_order_across_folders(sink):
    made = write_chain(sink, records(98, 2, ts=T0 + 3 * HOUR), records(100, 2, ts=T0 + DAY),
                       records(1000, 2, ts=T0 + DAY + HOUR))
    write_chain(sink, records(5, 1, partition=10))
    parts = trail.partitions(sink, PREFIX, TOPIC)
    assert sorted(parts) == [3, 10]
    assert parts[3] == [k for m in made for k in (m.key, manifest_key(m.key))]


def test_records_yields_records_in_offset_order(sink):
    recs = records(98, 2, ts=T0 + 3 * HOUR), records(100, 2, ts=T0 + DAY), records(1000, 2, ts=T0 + DAY + HOUR)
    write_chain(sink, *recs)
    keys = trail.partitions(sink, PREFIX, TOPIC)[3]
    assert list(trail.records(sink, keys)) == [r for part in recs for r in part]


def test_export_writes_each_partition_in_offset_order(sink, tmp_path):
    mine = records(98, 2, ts=T0 + 3 * HOUR), records(100, 2, ts=T0 + DAY), records(1000, 2, ts=T0 + DAY + HOUR)
    write_chain(sink, *mine)
    other = records(0, 3, partition=0, topic="atlas.venue.orders")
    write_chain(sink, other)
    dest = tmp_path / "out"
    assert export(sink, PREFIX, dest) == 9
    assert (dest / TOPIC / "partition=3.jsonl").read_bytes() == b"".join(r.line() for part in mine for r in part)
    assert (dest / "atlas.venue.orders" / "partition=0.jsonl").read_bytes() == b"".join(r.line() for r in other)
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*.jsonl")) == [
        f"{TOPIC}/partition=3.jsonl", "atlas.venue.orders/partition=0.jsonl"]


def test_an_orders_story_keeps_the_order_the_oms_sent_its_reports_in_seq_0_refusals_included(sink):
    book = Book()
    order = book.place()
    book.command(cancel(order.order_id))
    sent = book.executions(order.order_id)  # PENDING_NEW, NEW, PENDING_CANCEL: seq 1, 2, 3
    refused = sent[-1].model_copy(update={"exec_id": "past-the-cap", "seq": 0, "exec_type": ExecType.CANCEL_REJECTED})
    story = [sent[0], sent[1], refused, sent[2], sent[1]]  # the last: a redelivered copy
    recs = [AuditRecord.of(TOPIC, 3, n, T0 + n, b"alice", r.model_dump_json().encode(), []) for n, r in enumerate(story)]
    write_chain(sink, recs)

    told = order_story(sink, PREFIX, order.order_id)

    assert [(r.seq, r.exec_id) for r in told] == [(1, sent[0].exec_id), (2, sent[1].exec_id), (0, "past-the-cap"),
                                                   (3, sent[2].exec_id)]


def test_verify_and_replay_say_the_broker_did_not_answer_and_exit_2(tmp_path):
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "ATLAS_KAFKA_BOOTSTRAP": f"127.0.0.1:{port}"}
    for command in (["verify"], ["replay", "--wait", "1"]):
        done = subprocess.run([sys.executable, "-m", "atlas", "audit", "--sink", f"file://{tmp_path}", *command],
                              env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, done.stderr
        assert f"error: the broker (127.0.0.1:{port}) did not answer: KafkaConnectionError" in done.stderr
        assert "Traceback" not in done.stderr
