"""An audit trail in a sink: write a batch as an object and its manifest, find where a partition ends.

The format is `atlas.audit.format`'s; this module adds the sink I/O around it (blocking: callers in
an event loop run it in a thread). Layout of one partition:
`<prefix>/topic=T/dt=D/hour=H/partition=P/<first offset>.jsonl.gz` and `.manifest.json` beside it.

Writes are idempotent: an object or manifest already in the sink with the same bytes counts
as written (a retry after a lost answer, or the same batch written by the partition's
previous owner), and different bytes raise `TrailConflict`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from atlas.audit.format import Batch, Manifest, decode, encode, manifest, manifest_key, object_key, object_time, offset_of
from atlas.audit.sinks import ObjectExists, Sink

OBJECT_SUFFIX = ".jsonl.gz"
MANIFEST_SUFFIX = ".manifest.json"


class TrailConflict(Exception):
    """The sink holds other bytes under a key this writer computed: someone else wrote this partition."""


def topic_prefix(prefix: str, topic: str) -> str:
    return f"{prefix.strip('/')}/topic={topic}/" if prefix.strip("/") else f"topic={topic}/"


def write_batch(sink: Sink, prefix: str, batch: Batch, previous: Manifest | None) -> Manifest:
    """Write the batch's object, then its manifest (chained to `previous`); returns the manifest."""
    data = encode(batch.records)
    key = object_key(prefix, batch.topic, batch.partition, batch.records[0].offset,
                     object_time(batch.records, previous))
    made = manifest(key, data, batch.records, previous, batch.start, batch.end)
    _put_once(sink, key, data)
    _put_once(sink, manifest_key(key), made.to_json())
    return made


def _put_once(sink: Sink, key: str, data: bytes) -> None:
    try:
        sink.put(key, data)
    except ObjectExists:
        if sink.get(key) != data:
            raise TrailConflict(f"{key} exists with other contents") from None


@dataclass(frozen=True)
class PartitionEnd:
    """The newest object of a partition, and whether its manifest was written."""

    manifest: Manifest | None  # the last manifest written
    orphan: str | None  # an object written after it whose manifest was not (a crash in between)


def find_end(sink: Sink, prefix: str, topic: str, partition: int) -> PartitionEnd:
    """The last manifest of a partition, looking at the newest dt/hour folders first."""
    base = topic_prefix(prefix, topic)
    orphan = None
    for dt in reversed(sink.folders(base)):
        for hour in reversed(sink.folders(f"{base}{dt}/")):
            keys = list(sink.keys(f"{base}{dt}/{hour}/partition={partition}/"))
            objects = sorted((k for k in keys if k.endswith(OBJECT_SUFFIX)), key=offset_of)
            manifests = {k for k in keys if k.endswith(MANIFEST_SUFFIX)}
            for key in reversed(objects):
                if manifest_key(key) in manifests:
                    found = sink.get(manifest_key(key))
                    return PartitionEnd(Manifest.from_json(found), orphan)
                if orphan is None:
                    orphan = key  # only the newest object can lack its manifest: writes are sequential
    return PartitionEnd(None, orphan)


def resume(sink: Sink, prefix: str, topic: str, partition: int, log_start: int) -> Manifest | None:
    """The partition's last manifest, after writing the manifest of an object left without one.

    `log_start` is where the partition's coverage begins when it has no manifest yet (the
    first offset the broker still holds when the exporter first read it).
    """
    end = find_end(sink, prefix, topic, partition)
    if end.orphan is None:
        return end.manifest
    data = sink.get(end.orphan)
    records = decode(data)
    # Where its batch began is not in the object: after the previous object, unless retention had
    # already deleted what lay between (the exporter then started at the log start, leaving a gap).
    start = min(log_start, records[0].offset)
    if end.manifest is not None:
        start = max(end.manifest.end, start)
    adopted = manifest(end.orphan, data, records, end.manifest, start, records[-1].offset + 1)
    _put_once(sink, manifest_key(end.orphan), adopted.to_json())
    return adopted


def partitions(sink: Sink, prefix: str, topic: str) -> dict[int, list[str]]:
    """Every object key of a topic, per partition, in offset order (a full listing, for verify and export)."""
    found: dict[int, list[str]] = {}
    for key in sink.keys(topic_prefix(prefix, topic)):
        if key.endswith(OBJECT_SUFFIX) or key.endswith(MANIFEST_SUFFIX):
            part = next(p for p in key.split("/") if p.startswith("partition="))
            found.setdefault(int(part.removeprefix("partition=")), []).append(key)
    return {p: sorted(keys, key=lambda k: (offset_of(k), k.endswith(MANIFEST_SUFFIX))) for p, keys in found.items()}


def topics(sink: Sink, prefix: str) -> list[str]:
    """The topics a trail holds."""
    base = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
    return [name.removeprefix("topic=") for name in sink.folders(base) if name.startswith("topic=")]


def records(sink: Sink, keys: list[str]) -> Iterator:
    """The records of the given object keys, in order."""
    for key in keys:
        if key.endswith(OBJECT_SUFFIX):
            yield from decode(sink.get(key))
