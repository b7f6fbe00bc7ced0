"""`python -m atlas audit verify|replay|export`: check, use and copy out the audit trail.

- `verify`: per topic-partition, the chain and coverage of the manifests, every object's hash and
  records, and (with the broker) that the trail holds everything up to the exporter's committed
  offsets and from the first offset the broker still has (`atlas.audit.verify`). Exit 1 and a list of
  problems otherwise.
- `replay`: rebuild every account's orders and balances from the trail alone (`atlas.audit.replay`)
  and compare them with the live OMS table, read from its changelog topic. Exit 1 on a difference.
- `export DEST`: the trail's records as plain JSONL, one file per topic-partition, to read or grep.
- `order ORDER_ID`: one order's execution reports from the trail, oldest first, one JSON object a line
  (how to read an order the OMS has archived). Exit 1 when the trail has none.
- `sql "SELECT ..."`: SQL over the trail with DuckDB, through the views Athena runs (`atlas.audit.sql`,
  `infra/athena/views.sql`); `sql --athena` prints the Athena table and views for an S3 sink. Exit 1
  when the query fails.
Exit 2 when the sink cannot be read at all.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any, Iterable

from tqdm import tqdm

from atlas.audit import sql as audit_sql
from atlas.audit import trail
from atlas.audit.broker import broker_views, read_table
from atlas.audit.format import AuditRecord, decode
from atlas.audit.sinks import Sink, open_sink
from atlas.audit.verify import PartitionReport, verify
from atlas.runtime.kafka import client_options
from atlas.settings import settings


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


def trail_records(sink: Sink, prefix: str, topic: str, desc: str) -> Iterable[AuditRecord]:
    """Every record of one topic in the trail, partition by partition, in offset order."""
    parts = trail.partitions(sink, prefix, topic)
    objects = [k for p in sorted(parts) for k in parts[p] if k.endswith(trail.OBJECT_SUFFIX)]
    for key in tqdm(objects, unit="obj", desc=desc, disable=None, file=sys.stderr):
        yield from decode(sink.get(key))


def replay(sink: Sink, prefix: str, table: dict[bytes, bytes]) -> tuple[int, int, list[str]]:
    """Rebuild from the trail, compare with the live table; returns (accounts, orders, problems)."""
    from atlas.audit.replay import compare, live_book, rebuild
    from atlas.core.values import STORED
    from atlas.oms.state import AccountState, StoredOrder
    from atlas.runtime.reference import directory, instruments

    reports = (r for r in (_report(r.value) for r in trail_records(sink, prefix, settings.topic("executions"),
                                                                      "executions")) if r is not None)
    requests = [_venue_request(r.value) for r in trail_records(sink, prefix, settings.topic("venue.orders"), "venue orders")]
    openings = {a.account_id: dict(a.balances) for a in directory().accounts.values()}
    accounts = {k.decode()[2:]: AccountState.model_validate_json(v, context=STORED) for k, v in table.items()
                if k.startswith(b"a/")}
    # An account the OMS stored with no order of its own (its first event was, say, a cancel of an
    # unknown order) is rebuilt too: as its opening balances.
    rebuilt = rebuild(reports, [r for r in requests if r is not None], openings, instruments(), accounts)
    orders: dict[str, list] = {}
    for k, v in table.items():
        if k.startswith(b"o/"):
            account_id = k.decode().split("/", 2)[1]
            account = accounts.get(account_id)
            order = StoredOrder.model_validate_json(v, context=STORED).version(account) if account is not None else None
            if order is not None:
                orders.setdefault(account_id, []).append(order)
    live = {a: live_book(acc, orders.get(a, [])) for a, acc in accounts.items()}
    # Accounts with no event at all are in neither: nothing to compare.
    problems = compare(rebuilt, live)
    return len(live), sum(len(o) for o in orders.values()), problems


def order_story(sink: Sink, prefix: str, order_id: str) -> list:
    """The order's execution reports in the trail, in the order the OMS sent them, each once (a repeat has the
    same exec_id). That is the trail's offset order: an account's reports share a partition. Not by seq: the
    refusals past an order's cap are sent with seq 0 (they are not stored), between its other reports."""
    found: dict[str, Any] = {}
    for record in trail_records(sink, prefix, settings.topic("executions"), "executions"):
        if order_id not in (record.value or ""):
            continue  # most records are other orders': skip them before parsing
        report = _report(record.value)
        if report is not None and report.order_id == order_id:
            found.setdefault(report.exec_id, report)
    return list(found.values())


def _report(value: str | None) -> Any:
    """The execution report in an executions record (None for anything else a producer put there)."""
    from pydantic import ValidationError

    from atlas.core.events import ExecutionReport
    from atlas.core.values import STORED

    try:
        return ExecutionReport.model_validate_json(value or "", context=STORED)
    except ValidationError:
        return None


def _venue_request(value: str | None) -> Any:
    """The OMS's venue request in a venue.orders record (None for ticks, parameter changes and bad input)."""
    from pydantic import ValidationError

    from atlas.core.events import VENUE_INPUT, VenueRequest
    from atlas.core.values import STORED

    try:
        message = VENUE_INPUT.validate_json(value or "", context=STORED)
    except ValidationError:
        return None
    return message if isinstance(message, VenueRequest) else None


async def wait_caught_up(topic: str, timeout: float) -> bool:
    """Wait until the exporter has committed everything the topic holds now (the trail is current)."""
    deadline = time.monotonic() + timeout
    while True:
        views = await broker_views(client_options(), settings.topic_prefix, settings.audit_group)
        behind = [v for (t, _), v in views.items() if t == topic and (v.committed or 0) < v.head]
        if not behind or time.monotonic() > deadline:
            return not behind
        await asyncio.sleep(0.5)


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


def _unreadable(sink: Sink, prefix: str) -> str | None:
    """Why the sink cannot be read at all (a missing folder or bucket, no access), or None."""
    try:
        sink.folders(f"{prefix.strip('/')}/" if prefix.strip("/") else "")
    except Exception as exc:  # boto's errors, OSError: all mean the same here
        return f"cannot list the sink: {exc}"
    root = getattr(sink, "root", None)
    if root is not None and not root.is_dir():
        return "no such folder"
    return None


def _sql(args: argparse.Namespace) -> int:
    if args.athena:
        try:
            print(audit_sql.athena_ddl(args.sink, args.prefix, settings.topic_prefix,
                                       [settings.topic(t) for t in audit_sql.TOPICS], settings.partitions,
                                       args.first_day), end="")
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return 0
    if not args.query:
        print("error: give a query, or --athena", file=sys.stderr)
        return 2
    try:
        columns, rows = audit_sql.query(args.sink, args.prefix, settings.topic_prefix, args.query)
    except audit_sql.TrailQueryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(audit_sql.render(columns, rows, args.format), end="")
    return 0


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
    story = commands.add_parser("order", help="one order's execution reports from the trail, as JSON lines")
    story.add_argument("order_id")
    sql = commands.add_parser("sql", help="SQL over the trail with DuckDB, through the views Athena runs",
                              description="Views: atlas_execution_reports (each exec_id once), "
                                          "atlas_execution_reports_all, atlas_fills, atlas_commands (each command_id "
                                          "once), atlas_commands_all, and atlas_audit_trail (one row per record).")
    sql.add_argument("query", nargs="?", help="one SQL statement")
    sql.add_argument("--format", choices=("table", "csv", "json"), default="table", help="how rows are printed")
    sql.add_argument("--athena", action="store_true", help="print the Athena DDL (table and views) for the sink")
    sql.add_argument("--first-day", type=date.fromisoformat, default=date(2026, 1, 1),
                     help="with --athena: the first dt the table's partition projection names (YYYY-MM-DD)")
    args = parser.parse_args(argv)
    if args.command == "sql":
        return _sql(args)
    sink = open_sink(args.sink)
    problem = _unreadable(sink, args.prefix)
    if problem:
        print(f"error: {args.sink}: {problem}", file=sys.stderr)
        return 2

    try:
        return _run(args, sink)
    except BrokerUnreachable as exc:
        print(f"error: the broker ({', '.join(settings.bootstrap_servers)}) did not answer: {exc}", file=sys.stderr)
        return 2


class BrokerUnreachable(Exception):
    """Kafka did not answer a question the command asks it."""


def _ask_broker(question: Any, *args: Any) -> Any:
    """Run one async question to the broker; its failure (not connected, timed out) as BrokerUnreachable."""
    from aiokafka.errors import KafkaError

    try:
        return asyncio.run(question(*args))
    except (KafkaError, OSError, TimeoutError) as exc:
        raise BrokerUnreachable(f"{type(exc).__name__}: {exc}"[:300]) from None


def _run(args: argparse.Namespace, sink: Sink) -> int:
    if args.command == "verify":
        def broker() -> dict:
            return _ask_broker(broker_views, client_options(), settings.topic_prefix, settings.audit_group)

        reports = verify(sink, args.prefix, None if args.offline else broker)
        if not reports:
            print(f"no audit trail under {args.sink} (prefix {args.prefix!r}) and no ATLAS topics to compare with")
            return 1
        if args.json:
            print(json.dumps([r.__dict__ for r in reports], indent=1))
            return 1 if any(r.problems for r in reports) else 0
        return _print_verify(reports)
    if args.command == "replay":
        if not _ask_broker(wait_caught_up, settings.topic("executions"), args.wait):
            print(f"warning: the exporter is still behind the executions topic after {args.wait}s; "
                  "differences below may be reports not exported yet")
        table = _ask_broker(read_table, client_options(), settings.oms_changelog)
        accounts, orders, problems = replay(sink, args.prefix, table)
        for line in problems:
            print(f"difference: {line}")
        print(f"replayed the trail: {accounts} accounts and {orders} orders compared with the live table, "
              f"{len(problems)} differences")
        return 1 if problems else 0
    if args.command == "order":
        found = order_story(sink, args.prefix, args.order_id)
        for report in found:
            print(report.model_dump_json())
        if not found:
            print(f"no execution report of order {args.order_id} in the trail", file=sys.stderr)
        return 0 if found else 1
    count = export(sink, args.prefix, args.dest)
    print(f"exported {count} records to {args.dest}")
    return 0
