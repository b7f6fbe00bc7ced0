"""The audit trail's format and the folder sink: encoding, names, the hash chain, and what it catches."""
from __future__ import annotations

import gzip
import json
from dataclasses import replace

import pytest

from atlas.audit.format import (
    GENESIS, AuditRecord, Batcher, check_chain, decode, encode, manifest, manifest_key, object_key, object_time,
)
from atlas.audit.sinks import FileSink, ObjectExists, open_sink
from tests.helpers import AUDIT_T0 as T0, audit_records as records




def chain_of(*batches: list) -> tuple[list, dict]:
    """Manifests and objects for consecutive batches of one partition (each ends where the next starts)."""
    manifests, objects, previous = [], {}, None
    for n, batch in enumerate(batches):
        key = object_key("audit", batch[0].topic, batch[0].partition, batch[0].offset, batch[0].timestamp)
        data = encode(batch)
        end = batches[n + 1][0].offset if n + 1 < len(batches) else batch[-1].offset + 1
        previous = manifest(key, data, batch, previous, start=batch[0].offset, end=end)
        manifests.append(previous)
        objects[key] = data
    return manifests, objects


def test_object_is_gzip_jsonl_one_line_per_message_with_every_field():
    data = encode(records(100, 2))
    lines = [json.loads(line) for line in gzip.decompress(data).splitlines()]
    assert [line["offset"] for line in lines] == [100, 101]
    assert set(lines[0]) == {"topic", "partition", "offset", "timestamp", "key", "value", "headers"}
    assert lines[0]["key"] == "alice" and json.loads(lines[0]["value"]) == {"n": 100}
    assert lines[0]["headers"] == [["trace", "AQI="]]


def test_encoding_is_deterministic_and_decodes_back():
    batch = records(7, 5)
    assert encode(batch) == encode(batch)
    assert decode(encode(batch)) == batch


def test_binary_key_and_value_travel_as_base64():
    record = AuditRecord.of("t", 0, 1, T0, b"\xff\xfe", b"\x00\x9f")
    assert record.encoding == "base64" and decode(encode([record])) == [record]


def test_object_key_is_hive_layout_dated_by_the_first_record_in_utc():
    key = object_key("audit", "atlas.executions", 3, 1200, T0)
    assert key == "audit/topic=atlas.executions/dt=2026-11-25/hour=09/partition=3/00000000000000001200.jsonl.gz"
    assert manifest_key(key).endswith("/00000000000000001200.manifest.json")


def test_intact_chain_has_no_problems_even_with_offsets_skipped_for_transaction_markers():
    manifests, objects = chain_of(records(0, 3, step=2), records(7, 2), records(12, 4))
    assert manifests[0].previous == GENESIS
    assert check_chain(manifests, objects) == []


def test_verify_catches_a_deleted_object_as_a_gap_and_a_broken_chain():
    manifests, objects = chain_of(records(0, 3), records(3, 3), records(6, 3))
    problems = check_chain([manifests[0], manifests[2]], objects)
    assert any("gap" in p for p in problems) and any("chain broken" in p for p in problems)


def test_verify_catches_reordered_objects():
    manifests, objects = chain_of(records(0, 3), records(3, 3), records(6, 3))
    assert check_chain([manifests[1], manifests[0], manifests[2]], objects)


def test_verify_catches_an_altered_object_and_an_altered_manifest():
    manifests, objects = chain_of(records(0, 3), records(3, 3))
    tampered = dict(objects)
    key = manifests[1].key
    tampered[key] = encode([replace(r, value='{"n": 666}') if r.offset == 4 else r for r in decode(objects[key])])
    assert any("object altered" in p for p in check_chain(manifests, tampered))
    forged = [manifests[0], replace(manifests[1], records=2)]
    assert any("manifest altered" in p for p in check_chain(forged, objects))


def test_verify_catches_a_missing_object():
    manifests, objects = chain_of(records(0, 3), records(3, 3))
    del objects[manifests[1].key]
    assert check_chain(manifests, objects) == [f"{manifests[1].key}: object missing"]


def test_manifest_refuses_records_outside_its_range():
    with pytest.raises(ValueError):
        manifest("k", b"", records(5, 2), None, start=6, end=10)


def test_file_sink_writes_atomically_and_never_overwrites(tmp_path):
    sink = open_sink(f"file://{tmp_path}")
    sink.put("audit/a/1.jsonl.gz", b"one")
    with pytest.raises(ObjectExists):
        sink.put("audit/a/1.jsonl.gz", b"two")
    assert sink.get("audit/a/1.jsonl.gz") == b"one" and sink.get("audit/a/2.jsonl.gz") is None
    sink.put("audit/b/1.jsonl.gz", b"three")
    assert list(sink.keys("audit/")) == ["audit/a/1.jsonl.gz", "audit/b/1.jsonl.gz"]
    assert not [p for p in tmp_path.rglob(".tmp-*")]


def test_file_sink_refuses_keys_that_leave_its_folder(tmp_path):
    with pytest.raises(ValueError):
        FileSink(tmp_path).put("../escape", b"x")


# -- batching ---------------------------------------------------------------------------


def test_batcher_cuts_by_record_count_and_each_batch_starts_where_the_last_ended():
    batcher = Batcher(max_records=3, max_age_ms=60_000)
    cuts = [b for r in records(10, 7, step=2) if (b := batcher.add(r, now_ms=0))]
    assert [[r.offset for r in b.records] for b in cuts] == [[10, 12, 14], [16, 18, 20]]
    assert [(b.start, b.end) for b in cuts] == [(10, 15), (15, 21)]


def test_batcher_cuts_by_age():
    batcher = Batcher(max_records=100, max_age_ms=500)
    for r in records(0, 2):
        batcher.add(r, now_ms=1_000)
    assert batcher.due(now_ms=1_400) == []
    (batch,) = batcher.due(now_ms=1_500)
    assert [r.offset for r in batch.records] == [0, 1] and batcher.due(now_ms=9_999) == []


def test_batcher_keeps_partitions_apart():
    batcher = Batcher(max_records=2, max_age_ms=0)
    batcher.add(records(0, 1, partition=0)[0], now_ms=0)
    batcher.add(records(0, 1, partition=1)[0], now_ms=0)
    assert sorted(b.partition for b in batcher.due(now_ms=0)) == [0, 1]


def test_batcher_after_resume_drops_what_was_written_and_repeats():
    batcher = Batcher(max_records=2, max_age_ms=60_000)
    batcher.resume("atlas.executions", 3, start=5)
    cuts = [b for r in records(3, 4) + records(6, 1) if (b := batcher.add(r, now_ms=0))]
    assert [[r.offset for r in b.records] for b in cuts] == [[5, 6]] and [b.start for b in cuts] == [5]


def test_record_with_a_null_header_value_keeps_it_as_null():
    record = AuditRecord.of("t", 0, 1, T0, b"k", b"v", [("trace", None), ("id", b"\x01")])
    assert record.headers == (("trace", None), ("id", "AQ=="))
    assert decode(encode([record])) == [record]


@pytest.mark.parametrize("timestamp, folder", [(-1, "dt=1970-01-01/hour=00"), (2**62, "dt=9999-12-31/hour=23")])
def test_object_time_of_a_timestamp_no_date_can_name_is_clamped(timestamp, folder):
    record = AuditRecord("t", 0, 0, timestamp, "k", "v")
    assert folder in object_key("audit", "t", 0, 0, object_time([record], None))
