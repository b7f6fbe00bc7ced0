"""`python -m atlas audit verify|replay|export`: check, use and copy out the audit trail.

- `verify`: per topic-partition, the chain and coverage of the manifests, every object's hash and
  records, and (with the broker) that the trail holds everything up to the exporter's committed
  offsets and from the first offset the broker still has. Exit 1 and a list of problems otherwise.
- `replay`: rebuild every account's orders and balances from the trail alone (`atlas.replay`)
  and compare them with the live OMS table, read from its changelog topic. Exit 1 on a difference.
- `export DEST`: the trail's records as plain JSONL, one file per topic-partition, to read or grep.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from tqdm import tqdm

from atlas import trail
from atlas.audit import AuditRecord, Manifest, check_chain, decode, manifest_key
from atlas.settings import settings
from atlas.sinks import Sink, open_sink


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


# -- verify ------------------------------------------------------------------------------------


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
    return report


def _manifest(sink: Sink, key: str, label: str, report: PartitionReport) -> Manifest | None:
    try:
        return Manifest.from_json(sink.get(key) or b"")
    except (ValueError, TypeError) as exc:
        report.problems.append(f"{label}: its manifest is unreadable ({exc})")
        return None


def verify(sink: Sink, prefix: str, broker: dict[tuple[str, int], BrokerView] | None) -> list[PartitionReport]:
    """Every partition of the trail (and every partition the broker has for ATLAS topics)."""
    layout = {topic: trail.partitions(sink, prefix, topic) for topic in trail.topics(sink, prefix)}
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


def _print_verify(reports: list[PartitionReport]) -> int:
    bad = [r for r in reports if r.problems]
    width = max((len(r.topic) for r in reports), default=5)
    print(f"{'topic':<{width}} part  objects  records  offsets            result")
    for r in reports:
        span = f"[{r.start}, {r.end})" if r.start is not None else "-"
        print(f"{r.topic:<{width}} {r.partition:>4}  {r.objects:>7}  {r.records:>7}  {span:<18} "
              f"{'PROBLEM' if r.problems else 'ok'}")
        for line in r.problems:
            print(f"    problem: {line}")
        for line in r.notes:
            print(f"    note: {line}")
    complete = len(reports) - len(bad)
    print(f"{complete} of {len(reports)} partitions complete, {sum(len(r.problems) for r in reports)} problems")
    return 1 if bad else 0


# -- the broker ------------------------------------------------------------------------------


async def broker_views(bootstrap: list[str], topic_prefix: str, group: str) -> dict[tuple[str, int], BrokerView]:
    """Log start, head and the exporter's committed offset of every partition of every ATLAS topic."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka.admin import AIOKafkaAdminClient

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed", enable_auto_commit=False)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await consumer.start()
    await admin.start()
    try:
        tps = await _partitions(admin, lambda t: t.startswith(f"{topic_prefix}."))
        starts = await consumer.beginning_offsets(tps)
        heads = await _record_heads(consumer, tps, starts)
        committed = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
        await consumer.stop()
    return {(tp.topic, tp.partition): BrokerView(starts[tp], heads[tp],
                                                  committed[tp].offset if tp in committed else None) for tp in tps}


async def _record_heads(consumer: Any, tps: list, starts: dict, window: int = 64) -> dict:
    """Per partition, the offset after its last committed record.

    The end offset is not it when transactions are used: a commit marker takes an offset after
    each transaction's records. So read the last few offsets (markers are not returned).
    """
    ends = await consumer.end_offsets(tps)
    heads = {tp: starts[tp] for tp in tps}
    todo = [tp for tp in tps if ends[tp] > starts[tp]]
    consumer.assign(todo)
    for tp in todo:
        consumer.seek(tp, max(starts[tp], ends[tp] - window))
    deadline = time.monotonic() + 30
    while todo and time.monotonic() < deadline:
        for tp, messages in (await consumer.getmany(*todo, timeout_ms=200)).items():
            heads[tp] = max(heads[tp], messages[-1].offset + 1)
        todo = [tp for tp in todo if await consumer.position(tp) < ends[tp]]
    return heads


async def read_table(changelog: str) -> dict[bytes, bytes]:
    """A table's contents: its changelog topic read to the end, the last value of each key."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka.admin import AIOKafkaAdminClient

    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers, isolation_level="read_committed",
                                enable_auto_commit=False, auto_offset_reset="earliest")
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await consumer.start()
    await admin.start()
    table: dict[bytes, bytes] = {}
    try:
        tps = await _partitions(admin, lambda t: t == changelog)
        if not tps:
            return table
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        todo = [tp for tp in tps if ends[tp] > 0]
        while todo:
            for messages in (await consumer.getmany(timeout_ms=500)).values():
                for m in messages:
                    if m.value is None:
                        table.pop(m.key, None)
                    else:
                        table[m.key] = m.value
            todo = [tp for tp in todo if await consumer.position(tp) < ends[tp]]
    finally:
        await admin.close()
        await consumer.stop()
    return table


async def _partitions(admin: Any, wanted: Any) -> list:
    """Every partition of the topics `wanted(name)` accepts."""
    from aiokafka import TopicPartition

    topics = sorted(t for t in await admin.list_topics() if wanted(t))
    if not topics:
        return []
    described = await admin.describe_topics(topics)
    return [TopicPartition(d["topic"], p["partition"]) for d in described for p in d["partitions"]]


# -- replay ----------------------------------------------------------------------------------


def trail_records(sink: Sink, prefix: str, topic: str, desc: str) -> Iterable[AuditRecord]:
    """Every record of one topic in the trail, partition by partition, in offset order."""
    parts = trail.partitions(sink, prefix, topic)
    objects = [k for p in sorted(parts) for k in parts[p] if k.endswith(trail.OBJECT_SUFFIX)]
    for key in tqdm(objects, unit="obj", desc=desc, disable=None, file=sys.stderr):
        yield from decode(sink.get(key))


def replay(sink: Sink, prefix: str, table: dict[bytes, bytes]) -> tuple[int, int, list[str]]:
    """Rebuild from the trail, compare with the live table; returns (accounts, orders, problems)."""
    from atlas.reference import directory, instruments
    from atlas.replay import compare, live_book, rebuild
    from atlas.state import AccountState, StoredOrder

    reports = (r for r in (_report(r.value) for r in trail_records(sink, prefix, settings.topic("executions"),
                                                                      "executions")) if r is not None)
    requests = [_venue_request(r.value) for r in trail_records(sink, prefix, settings.topic("venue.orders"), "venue orders")]
    openings = {a.account_id: dict(a.balances) for a in directory().accounts.values()}
    accounts = {k.decode()[2:]: AccountState.model_validate_json(v) for k, v in table.items() if k.startswith(b"a/")}
    # An account the OMS stored with no order of its own (its first event was, say, a cancel of an
    # unknown order) is rebuilt too: as its opening balances.
    rebuilt = rebuild(reports, [r for r in requests if r is not None], openings, instruments(), accounts)
    orders: dict[str, list] = {}
    for k, v in table.items():
        if k.startswith(b"o/"):
            account_id = k.decode().split("/", 2)[1]
            account = accounts.get(account_id)
            order = StoredOrder.model_validate_json(v).version(account) if account is not None else None
            if order is not None:
                orders.setdefault(account_id, []).append(order)
    live = {a: live_book(acc, orders.get(a, [])) for a, acc in accounts.items()}
    # Accounts with no event at all are in neither: nothing to compare.
    problems = compare(rebuilt, live)
    return len(live), sum(len(o) for o in orders.values()), problems


def _report(value: str | None) -> Any:
    """The execution report in an executions record (None for anything else a producer put there)."""
    from pydantic import ValidationError

    from atlas.events import ExecutionReport

    try:
        return ExecutionReport.model_validate_json(value or "")
    except ValidationError:
        return None


def _venue_request(value: str | None) -> Any:
    """The OMS's venue request in a venue.orders record (None for ticks, parameter changes and bad input)."""
    from pydantic import ValidationError

    from atlas.events import VENUE_INPUT, VenueRequest

    try:
        message = VENUE_INPUT.validate_json(value or "")
    except ValidationError:
        return None
    return message if isinstance(message, VenueRequest) else None


async def wait_caught_up(topic: str, timeout: float) -> bool:
    """Wait until the exporter has committed everything the topic holds now (the trail is current)."""
    deadline = time.monotonic() + timeout
    while True:
        views = await broker_views(settings.bootstrap_servers, settings.topic_prefix, settings.audit_group)
        behind = [v for (t, _), v in views.items() if t == topic and (v.committed or 0) < v.head]
        if not behind or time.monotonic() > deadline:
            return not behind
        await asyncio.sleep(0.5)


# -- export ----------------------------------------------------------------------------------


def export(sink: Sink, prefix: str, dest: Path) -> int:
    """Write each topic-partition's records to `dest/<topic>/partition=<p>.jsonl`; returns the record count."""
    count = 0
    for topic in trail.topics(sink, prefix):
        folder = dest / topic
        folder.mkdir(parents=True, exist_ok=True)
        for partition, keys in sorted(trail.partitions(sink, prefix, topic).items()):
            with open(folder / f"partition={partition}.jsonl", "wb") as out:
                for record in trail.records(sink, keys):
                    out.write(record.line())
                    count += 1
    return count


# -- command line ----------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m atlas audit", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sink", default=settings.audit_sink, help="file://PATH or s3://bucket[/prefix]")
    parser.add_argument("--prefix", default=settings.audit_prefix, help="key prefix of the trail in the sink")
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("verify", help="check completeness, order and the hash chain")
    check.add_argument("--offline", action="store_true", help="do not compare with the broker's offsets")
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    again = commands.add_parser("replay", help="rebuild orders and balances from the trail; compare with live")
    again.add_argument("--wait", type=float, default=30.0,
                       help="seconds to wait for the exporter to catch up with the executions topic first")
    out = commands.add_parser("export", help="copy the trail's records to a folder as plain JSONL")
    out.add_argument("dest", type=Path)
    args = parser.parse_args(argv)
    sink = open_sink(args.sink)

    if args.command == "verify":
        broker = None if args.offline else asyncio.run(broker_views(settings.bootstrap_servers, settings.topic_prefix, settings.audit_group))
        reports = verify(sink, args.prefix, broker)
        if args.json:
            print(json.dumps([r.__dict__ for r in reports], indent=1))
            return 1 if any(r.problems for r in reports) else 0
        return _print_verify(reports)
    if args.command == "replay":
        if not asyncio.run(wait_caught_up(settings.topic("executions"), args.wait)):
            print(f"warning: the exporter is still behind the executions topic after {args.wait}s; "
                  "differences below may be reports not exported yet")
        table = asyncio.run(read_table(f"{settings.app_id}-oms-changelog"))
        accounts, orders, problems = replay(sink, args.prefix, table)
        for line in problems:
            print(f"difference: {line}")
        print(f"replayed the trail: {accounts} accounts and {orders} orders compared with the live table, "
              f"{len(problems)} differences")
        return 1 if problems else 0
    count = export(sink, args.prefix, args.dest)
    print(f"exported {count} records to {args.dest}")
    return 0
