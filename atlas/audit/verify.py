"""Verify an audit trail: per topic-partition, chain, hashes, coverage, and (given the broker's view) completeness.

Reads the sink (blocking); the checks themselves are `atlas.audit.format.check_chain`'s. With a
`BrokerView` per partition it also finds what is missing: offsets the exporter committed
but the trail lacks, records the broker still holds before the trail's start, and a trail
that runs past the topic's end (another incarnation of the topic).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from tqdm import tqdm

from atlas.audit import trail
from atlas.audit.format import Manifest, check_chain, manifest_key
from atlas.audit.sinks import Sink


@dataclass
class PartitionReport:
    topic: str
    partition: int
    objects: int = 0
    records: int = 0
    start: int | None = None  # offsets [start, end) the trail covers
    end: int | None = None
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class BrokerView:
    """What the broker says about one partition."""

    log_start: int
    head: int  # the offset after the last record (transaction markers after it are not records)
    committed: int | None  # the exporter group's committed offset


def verify_partition(sink: Sink, topic: str, partition: int, keys: list[str], broker: BrokerView | None,
                     progress: Any = None) -> PartitionReport:
    """Check one partition of the trail (and against the broker, when given)."""
    report = PartitionReport(topic, partition)
    objects = [k for k in keys if k.endswith(trail.OBJECT_SUFFIX)]
    manifest_keys = {k for k in keys if k.endswith(trail.MANIFEST_SUFFIX)}
    manifests, data = [], {}
    for n, key in enumerate(objects):
        if manifest_key(key) not in manifest_keys:
            if n == len(objects) - 1:
                report.notes.append(f"{key}: newest object has no manifest yet (the exporter writes it when it resumes)")
            else:
                report.problems.append(f"{key}: object without a manifest")
            continue
        found = _manifest(sink, manifest_key(key), key, report)
        if found is not None:
            manifests.append(found)
        data[key] = sink.get(key)
        if progress is not None:
            progress.update(1)
    for key in sorted(manifest_keys - {manifest_key(k) for k in objects}):
        found = _manifest(sink, key, key, report)  # check_chain reports its object missing
        if found is not None:
            manifests.append(found)
    manifests.sort(key=lambda m: (m.start, m.first_offset))
    report.problems += check_chain(manifests, data)
    report.objects, report.records = len(manifests), sum(m.records for m in manifests)
    if manifests:
        report.start, report.end = manifests[0].start, manifests[-1].end
    if broker is not None:
        end = report.end or 0
        if broker.committed is not None and end < broker.committed:
            report.problems.append(f"missing offsets {end}..{broker.committed - 1}: the exporter committed them "
                                   f"but the trail ends at {end}")
        if report.start is not None and report.start > broker.log_start:
            report.problems.append(f"gap at the start: the broker holds offsets from {broker.log_start}, "
                                   f"the trail starts at {report.start}")
        if report.start is None and broker.committed:
            report.problems.append(f"no objects, but the exporter committed offsets up to {broker.committed}")
        if broker.head > end:
            report.notes.append(f"exporter lag: {broker.head - end} offsets not in the trail yet")
        if end > broker.head:
            report.problems.append(f"the trail runs to offset {end}, past the topic's end at {broker.head}: "
                                   "it was written for another incarnation of the topic")
    return report


def _manifest(sink: Sink, key: str, label: str, report: PartitionReport) -> Manifest | None:
    try:
        return Manifest.from_json(sink.get(key) or b"")
    except (ValueError, TypeError) as exc:
        report.problems.append(f"{label}: its manifest is unreadable ({exc})")
        return None


Views = dict[tuple[str, int], BrokerView]


def verify(sink: Sink, prefix: str, broker: Views | Callable[[], Views] | None) -> list[PartitionReport]:
    """Every partition of the trail (and every partition the broker has for ATLAS topics).

    Given a callable, the broker is asked twice, around the listing of the trail, because on live
    topics the exporter keeps writing and committing: the committed offsets come from before
    (they never pass what is listed) and the topics' heads from after (the listing never passes them).
    """
    before = broker() if callable(broker) else broker
    layout = {topic: trail.partitions(sink, prefix, topic) for topic in trail.topics(sink, prefix)}
    if callable(broker):
        broker = {tp: replace(view, committed=before[tp].committed if tp in before else None)
                  for tp, view in broker().items()}
    wanted = set((t, p) for t, parts in layout.items() for p in parts) | set(broker or ())
    total = sum(len([k for k in keys if k.endswith(trail.OBJECT_SUFFIX)])
                for parts in layout.values() for keys in parts.values())
    reports = []
    with tqdm(total=total, unit="obj", desc="verify", disable=None, file=sys.stderr) as progress:
        for topic, partition in sorted(wanted):
            keys = layout.get(topic, {}).get(partition, [])
            view = broker.get((topic, partition)) if broker else None
            reports.append(verify_partition(sink, topic, partition, keys, view, progress))
    return reports
