"""The audit trail's format: gzip JSONL objects, their names, and the manifests that chain them.

Pure (no I/O): `encode` turns a batch of one topic-partition's records into an object's bytes,
`object_key` names it from its first record, `manifest` describes it and links it to the
previous object of the same partition by hash, and `check_chain` finds what is wrong with a
partition's manifests. Sinks (`atlas.audit.sinks`) only move bytes.

The chain: each manifest holds the SHA-256 of its object and the `chain` hash of the previous
manifest; its own `chain` is SHA-256 over (previous chain, object hash, offsets, count). So
deleting, reordering or altering any object (or manifest) breaks every link after it.

Coverage: a manifest also says which offsets its object accounts for, `[start, end)`: where the
exporter's reading began and where it stopped. Offsets in that range without a record are not
data (transaction markers, aborted or compacted records), so consecutive objects must meet
exactly (`end` of one is `start` of the next) even where the records' offsets jump.
"""
from __future__ import annotations

import base64
import gzip
import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

GENESIS = "0" * 64  # the `previous` chain hash of a partition's first object
LATEST_MS = 253_402_300_799_000  # 9999-12-31T23:59:59Z, the last instant a dt= folder can name


@dataclass(frozen=True)
class AuditRecord:
    """One Kafka message as the audit keeps it. Key and value are text, or base64 when not UTF-8."""

    topic: str
    partition: int
    offset: int
    timestamp: int  # ms since the epoch, the record's own
    key: str | None
    value: str | None
    headers: tuple[tuple[str, str | None], ...] = ()  # values base64 (a header value may be null)
    encoding: str = "utf-8"  # or "base64", for key and value both

    @classmethod
    def of(cls, topic: str, partition: int, offset: int, timestamp: int, key: bytes | None, value: bytes | None,
           headers: list[tuple[str, bytes]] | tuple = ()) -> "AuditRecord":
        """From a consumed message's raw parts."""
        try:
            k = None if key is None else key.decode()
            v = None if value is None else value.decode()
            encoding = "utf-8"
        except UnicodeDecodeError:
            k = None if key is None else base64.b64encode(key).decode()
            v = None if value is None else base64.b64encode(value).decode()
            encoding = "base64"
        hdrs = tuple((name, None if raw is None else base64.b64encode(raw).decode()) for name, raw in headers)
        return cls(topic, partition, offset, timestamp, k, v, hdrs, encoding)

    def line(self) -> bytes:
        doc = {"topic": self.topic, "partition": self.partition, "offset": self.offset, "timestamp": self.timestamp,
               "key": self.key, "value": self.value, "headers": [list(h) for h in self.headers]}
        if self.encoding != "utf-8":
            doc["encoding"] = self.encoding
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def encode(records: list[AuditRecord]) -> bytes:
    """The object's bytes: gzip of one JSON line per record, in offset order (deterministic: no mtime)."""
    return gzip.compress(b"".join(r.line() for r in records), mtime=0)


def decode(data: bytes) -> list[AuditRecord]:
    """The records of an object."""
    records = []
    for raw in gzip.decompress(data).splitlines():
        doc = json.loads(raw)
        records.append(AuditRecord(doc["topic"], doc["partition"], doc["offset"], doc["timestamp"], doc["key"],
                                   doc["value"], tuple(tuple(h) for h in doc["headers"]),
                                   doc.get("encoding", "utf-8")))
    return records


def object_key(prefix: str, topic: str, partition: int, first_offset: int, timestamp: int) -> str:
    """Hive layout, dated by `timestamp` (ms, UTC): `<prefix>/topic=T/dt=D/hour=H/partition=P/<offset>.jsonl.gz`."""
    when = datetime.fromtimestamp(timestamp / 1000, tz=timezone.utc)
    path = (f"topic={topic}/dt={when:%Y-%m-%d}/hour={when:%H}/partition={partition}/"
            f"{first_offset:020d}.jsonl.gz")
    return f"{prefix.strip('/')}/{path}" if prefix.strip("/") else path


def object_time(records: list[AuditRecord], previous: "Manifest | None") -> int:
    """The time an object is filed under: its first record's, but never an hour before the previous object's.

    Producers' clocks differ, so a partition's record timestamps can step back. Filing each
    object no earlier than the one before keeps a partition's objects in order across the
    dt/hour folders, which is how the exporter finds the last one by looking at the newest folders.
    """
    # A producer may set any timestamp (-1 for none): keep it within what a date can name.
    first = min(max(records[0].timestamp, 0), LATEST_MS)
    return first if previous is None else max(first, hour_of(previous.key))


def hour_of(key: str) -> int:
    """The start of the hour (ms since the epoch, UTC) an object key is filed under."""
    parts = dict(part.split("=", 1) for part in key.split("/") if part.startswith(("dt=", "hour=")))
    when = datetime.strptime(f"{parts['dt']} {parts['hour']}", "%Y-%m-%d %H").replace(tzinfo=timezone.utc)
    return int(when.timestamp() * 1000)


def offset_of(key: str) -> int:
    """The first offset an object (or manifest) key names."""
    return int(key.rsplit("/", 1)[-1].split(".", 1)[0])


def manifest_key(key: str) -> str:
    """Where an object's manifest lives: beside it."""
    return key.removesuffix(".jsonl.gz") + ".manifest.json"


@dataclass(frozen=True)
class Manifest:
    """What one object holds, and its place in its partition's chain."""

    key: str
    topic: str
    partition: int
    first_offset: int
    last_offset: int
    records: int
    start: int  # offsets [start, end) are accounted for by this object
    end: int
    sha256: str
    previous: str  # the previous object's `chain`, GENESIS for the first
    chain: str

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=1, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> "Manifest":
        return cls(**json.loads(data))


def _chain(previous: str, digest: str, start: int, end: int, first: int, last: int, count: int) -> str:
    return hashlib.sha256(f"{previous}:{digest}:{start}:{end}:{first}:{last}:{count}".encode()).hexdigest()


def manifest(key: str, data: bytes, records: list[AuditRecord], previous: Manifest | None,
             start: int | None = None, end: int | None = None) -> Manifest:
    """The manifest of an object covering offsets [start, end) (by default just its records'), chained to `previous`."""
    digest = hashlib.sha256(data).hexdigest()
    prev = previous.chain if previous is not None else GENESIS
    first, last = records[0].offset, records[-1].offset
    start = first if start is None else start
    end = last + 1 if end is None else end
    if not start <= first <= last < end:
        raise ValueError(f"records {first}..{last} lie outside the range [{start}, {end})")
    chain = _chain(prev, digest, start, end, first, last, len(records))
    return Manifest(key, records[0].topic, records[0].partition, first, last, len(records), start, end, digest, prev,
                    chain)


def check_chain(manifests: list[Manifest], objects: dict[str, bytes] | None = None) -> list[str]:
    """Problems with one partition's manifests (in offset order), and with the objects when given.

    Checks: each link to the previous chain hash, each chain hash recomputed, coverage
    (each object starts where the previous ended: no gap, no overlap), and, with the objects,
    each SHA-256 and the records' offsets (inside the range, increasing, as many as stated).
    """
    problems = []
    previous_chain, expected_start = GENESIS, None
    for m in manifests:
        if m.previous != previous_chain:
            problems.append(f"{m.key}: chain broken (links to {m.previous[:12]}, previous is {previous_chain[:12]})")
        if _chain(m.previous, m.sha256, m.start, m.end, m.first_offset, m.last_offset, m.records) != m.chain:
            problems.append(f"{m.key}: manifest altered (its chain hash does not match its contents)")
        if expected_start is not None and m.start != expected_start:
            kind = "gap" if m.start > expected_start else "overlap"
            problems.append(f"{m.key}: {kind}: covers offsets from {m.start}, the previous object ended at {expected_start}")
        if objects is not None:
            problems += _check_object(m, objects.get(m.key))
        previous_chain, expected_start = m.chain, m.end
    return problems


def _check_object(m: Manifest, data: bytes | None) -> list[str]:
    if data is None:
        return [f"{m.key}: object missing"]
    if hashlib.sha256(data).hexdigest() != m.sha256:
        return [f"{m.key}: object altered (SHA-256 differs from its manifest)"]
    offsets = [r.offset for r in decode(data)]
    if len(offsets) != m.records or offsets != sorted(set(offsets)) or not offsets \
            or offsets[0] != m.first_offset or offsets[-1] != m.last_offset:
        return [f"{m.key}: its records do not match its manifest"]
    return []


@dataclass
class Batch:
    """The records of one topic-partition waiting to become an object, and the offsets they account for."""

    topic: str
    partition: int
    start: int  # the first offset this batch accounts for (the previous object's end)
    opened_ms: int  # when its first record arrived (the caller's clock)
    records: list[AuditRecord]

    @property
    def end(self) -> int:
        return self.records[-1].offset + 1


class Batcher:
    """Cuts each topic-partition's records into objects by count and by age.

    Pure: time comes in with each call. `resume` sets where a partition's coverage starts
    (the end of the last object written for it); records below that were written already
    and are dropped, so a restart that reads some records again writes nothing twice.
    """

    def __init__(self, max_records: int, max_age_ms: int):
        if max_records < 1 or max_age_ms < 0:
            raise ValueError("max_records must be at least 1 and max_age_ms not negative")
        self.max_records, self.max_age_ms = max_records, max_age_ms
        self._open: dict[tuple[str, int], Batch] = {}
        self._next: dict[tuple[str, int], int] = {}

    def resume(self, topic: str, partition: int, start: int) -> None:
        """The partition's next object covers offsets from `start`."""
        self._next[(topic, partition)] = start
        self._open.pop((topic, partition), None)

    def forget(self, topic: str, partition: int) -> None:
        """Drop the partition (it moved to another exporter): its open batch is not written."""
        self._next.pop((topic, partition), None)
        self._open.pop((topic, partition), None)

    def drain(self) -> list[Batch]:
        """Every open batch, to write before stopping."""
        return [self._cut(tp) for tp in list(self._open)]

    def add(self, record: AuditRecord, now_ms: int) -> Batch | None:
        """Take one record; returns a full batch to write, if this record completed one."""
        tp = (record.topic, record.partition)
        start = self._next.get(tp, record.offset)
        if record.offset < start:
            return None  # already in a written object
        batch = self._open.get(tp)
        if batch is None:
            batch = self._open[tp] = Batch(record.topic, record.partition, start, now_ms, [])
        elif record.offset <= batch.records[-1].offset:
            return None  # delivered twice
        batch.records.append(record)
        if len(batch.records) >= self.max_records:
            return self._cut(tp)
        return None

    def oldest_opened_ms(self) -> int | None:
        """When the oldest open batch got its first record (the caller's clock), or None when none is open."""
        return min((batch.opened_ms for batch in self._open.values()), default=None)

    def due(self, now_ms: int) -> list[Batch]:
        """Batches older than the maximum age, to write now."""
        return [self._cut(tp) for tp, batch in list(self._open.items()) if now_ms - batch.opened_ms >= self.max_age_ms]

    def _cut(self, tp: tuple[str, int]) -> Batch:
        batch = self._open.pop(tp)
        self._next[tp] = batch.end
        return batch
