"""How long a worker takes to be ready again after `kill -9`, beside an account's history of closed orders.

    python -m bench.restart [--closed 100000] [--out bench/REPORT.md]

For each history (none, and `closed` filled orders of one account, of which the retention keeps the
newest 10,000 and archives the rest with tombstones), a fresh worker creates its topics and stops.
The history is restored two ways: right after it is written (the log cleaner has barely begun), and
compacted: the bench rolls the changelog's segment and waits until the broker's log cleaner stops
shrinking it (a broker of its own: it reads the partition's size on disk); the deletes stay for
`ATLAS_CHANGELOG_TOMBSTONE_MS` after that. The history is made by the `oms` agent's own step in this
process (over an in-memory table, as `bench.oms_state` does) and every write it made, deletes as
tombstones, is produced to the worker's OMS changelog, as the worker would have written it. The
worker then starts (it reads the history into its local store), answers a read of the newest order,
is killed with SIGKILL and started again: without a clean stop it wipes its local tables and
restores them from the changelog. The figures are the seconds from each start to `/readyz` answering
ready, and the records (and deletes) the partition holds when the worker starts, beside the live
keys. It measures; it asserts nothing.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from atlas.runtime.kafka import sign_in_options
from atlas.runtime.partitioning import partition_for
from atlas.settings import Settings
from bench.oms_state import Account
from bench.report import machine, markers, write_section
from bench.stack import WorkerSpec, api_key, high_watermarks, start_broker, write_accounts
from tests.unit.agents.oms_harness import MemoryTable

ACCOUNT = "bench-000"


class RecordingTable(MemoryTable):
    """The in-memory OMS table, keeping every write in order (a delete as None): the changelog it makes."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[tuple[bytes, bytes | None]] = []

    def __setitem__(self, key, value: bytes) -> None:
        super().__setitem__(key, value)
        self.log.append((self.writes[-1][0], value))

    def __delitem__(self, key) -> None:
        super().__delitem__(key)
        self.log.append((self.writes[-1][0], None))


def history(closed: int) -> RecordingTable:
    """The OMS table's writes for `closed` orders of ACCOUNT that filled."""
    table = RecordingTable()
    account = Account(ACCOUNT, table)
    for n in range(1, closed + 1):
        account.order(n, fill=True)
        if n % 10_000 == 0:
            print(f"  history: {n:,} orders", file=sys.stderr, flush=True)
    account.done()
    return table


async def produce(bootstrap: str, topic: str, partition: int, log: list[tuple[bytes, bytes | None]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **sign_in_options(), acks="all", linger_ms=20, max_batch_size=1 << 20,
                                max_request_size=8 << 20)
    await producer.start()
    try:
        deliveries = []
        for n, (key, value) in enumerate(log):
            deliveries.append(await producer.send(topic, value, key=key, partition=partition))
            if n % 50_000 == 0:
                await producer.flush()
                await asyncio.gather(*deliveries)  # a lost write would make the history another one
                deliveries = []
        await producer.flush()
        await asyncio.gather(*deliveries)
    finally:
        await producer.stop()


def _newest_order(worker) -> dict | None:
    request = urllib.request.Request(f"{worker.url}/api/v1/orders?limit=1", headers={"X-API-Key": api_key(ACCOUNT)})
    with urllib.request.urlopen(request, timeout=10) as response:
        orders = json.load(response)["orders"]
    return orders[0] if orders else None


# How each history's changelog is left before the worker reads it: label -> (segment ms, tombstone ms); None: the
# worker's defaults, and the bench waits for no compaction (the cleaner may have begun on segments rolled by size).
COMPACTION = {"not waited for": None, "compacted": (5_000, 86_400_000)}
ROLL_KEY = b"z/segment-roll"  # a delete of a key no table uses: an append that rolls the changelog's segment


def log_bytes(storage: Path, topic: str, partition: int) -> int:
    """The size on disk of a partition's log segments."""
    return sum(f.stat().st_size for f in (storage / f"{topic}-{partition}").glob("*.log"))


async def count_records(bootstrap: str, topic: str, partition: int) -> tuple[int, int]:
    """The records a restore of the partition reads now, and how many of them are deletes (a full read of it)."""
    tp = TopicPartition(topic, partition)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, **sign_in_options(), enable_auto_commit=False, max_partition_fetch_bytes=8 << 20)
    await consumer.start()
    try:
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        records = deletes = 0
        while await consumer.position(tp) < end:
            for batch in (await consumer.getmany(tp, timeout_ms=1000, max_records=50_000)).values():
                records += len(batch)
                deletes += sum(1 for record in batch if record.value is None)
        return records, deletes
    finally:
        await consumer.stop()


def wait_compacted(bootstrap: str, storage: Path, topic: str, partition: int, segment_ms: int) -> None:
    """Roll the partition's segment, then wait until the log cleaner has stopped shrinking it (10 minutes at most)."""
    time.sleep(segment_ms / 1000 + 1)
    asyncio.run(produce(bootstrap, topic, partition, [(ROLL_KEY, None)]))
    deadline, last, steady_since = time.monotonic() + 600, log_bytes(storage, topic, partition), time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - steady_since < 45:
        time.sleep(3)
        size = log_bytes(storage, topic, partition)
        if size != last:
            last, steady_since = size, time.monotonic()


def measure(bootstrap: str, storage: Path | None, root: Path, closed: int, compaction: str,
            table: RecordingTable) -> dict:
    configured = COMPACTION[compaction]
    extra = () if configured is None else (("ATLAS_CHANGELOG_SEGMENT_MS", str(configured[0])),
                                           ("ATLAS_CHANGELOG_TOMBSTONE_MS", str(configured[1])))
    spec = WorkerSpec(bootstrap, f"bench-restart-{uuid.uuid4().hex[:6]}-{closed}", "at_least_once",
                      root / "accounts.json", root, extra=extra)
    worker = spec.process()
    worker.start(timeout=180)
    worker.stop()  # its topics exist now
    changelog = f"{spec.app_id}-oms-changelog"
    partition = partition_for(ACCOUNT.encode())
    asyncio.run(produce(bootstrap, changelog, partition, table.log))
    records = sum(asyncio.run(high_watermarks(bootstrap, lambda t: t == changelog)).values())
    if configured is not None:
        wait_compacted(bootstrap, storage, changelog, partition, configured[0])
    on_disk = log_bytes(storage, changelog, partition) if storage is not None else None
    present, deletes = asyncio.run(count_records(bootstrap, changelog, partition))
    started = time.monotonic()
    worker.start(timeout=1800)
    first_start = time.monotonic() - started
    newest = _newest_order(worker)
    worker.kill()
    started = time.monotonic()
    worker.start(timeout=1800)
    restart = time.monotonic() - started
    again = _newest_order(worker)
    worker.stop()
    # The newest order is the history's last (its last `o/` write may be a retention tombstone of an old one).
    expected = f"c{closed}" if closed else None
    return {"closed": closed, "compaction": compaction, "records": records, "on_disk": on_disk,
            "present": present, "deletes": deletes,
            "bytes": sum(len(k) + len(v or b"") for k, v in table.log),
            "live_keys": len(table), "first_start_s": first_start, "restart_s": restart,
            "state_back": newest == again and (newest or {}).get("client_order_id") == expected}


def render(results: list[dict]) -> str:
    start, end = markers("restart")
    base = results[0]
    lines = [start, "## Restart after `kill -9` beside a history of closed orders (`python -m bench.restart`)", "",
             "One account's history written to its worker's OMS changelog as the worker writes it (the retention "
             "keeps the newest 10,000 closed orders and deletes the rest); the worker reads it, takes no traffic, is "
             "killed with SIGKILL and restarts, wiping its local tables and restoring them from the changelog. "
             "Compaction \"not waited for\": the restore starts right after the history is written, with the "
             "worker's default changelog settings; the cleaner may have begun on the segments that rolled at 64 MB. "
             "\"compacted\": the bench rolled the segment (the worker's changelog made with a 5 s "
             "`ATLAS_CHANGELOG_SEGMENT_MS`) and waited until the log cleaner stopped shrinking it; the deletes stay "
             "for `ATLAS_CHANGELOG_TOMBSTONE_MS` (a day) after that, so the restore still reads the archived orders' "
             "deletes. \"read at restore\" counts the records (and deletes) in the partition when the worker starts. Both restarts also wait out the killed "
             "member's session timeout (ATLAS_SESSION_TIMEOUT) before the group gives its partitions back; the first "
             "start follows a clean stop and does not.", "",
             "| closed orders | compaction | records written | read at restore (deletes) | on disk, MB | live keys | "
             "first start, s | restart after kill -9, s | vs none | state back |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        disk = "n/a" if r["on_disk"] is None else f"{r['on_disk'] / 1e6:,.1f}"
        lines.append(f"| {r['closed']:,} | {r['compaction']} | {r['records']:,} | {r['present']:,} ({r['deletes']:,}) | "
                     f"{disk} | {r['live_keys']:,} | "
                     f"{r['first_start_s']:.1f} | {r['restart_s']:.1f} | {r['restart_s'] / base['restart_s']:.1f}x | "
                     f"{'yes' if r['state_back'] else 'NO'} |")
    info = machine("n/a")
    lines += ["", f"Machine: {info['CPUs (nproc)']} CPUs, {info['CPU model']}, Python {info['Python']}.", end]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.restart", description=__doc__.splitlines()[0])
    parser.add_argument("--closed", type=int, nargs="+", default=[100_000])
    parser.add_argument("--compaction", nargs="+", choices=list(COMPACTION), default=list(COMPACTION),
                        help="how each history's changelog is left before the restore (compacted: a broker of its own)")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("REPORT.md"))
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="atlas-restart-"))
    broker = None
    settings = Settings()
    try:
        storage = None
        if "kafka_bootstrap" in settings.model_fields_set:
            bootstrap = settings.kafka_bootstrap
            compactions = ["not waited for"]  # the cleaner's progress is read on the broker's disk
        else:
            broker, _ = start_broker(root / "kafka")
            bootstrap, storage, compactions = broker.bootstrap, broker.storage_dir, args.compaction
        write_accounts(root / "accounts.json", 1)
        results = [measure(bootstrap, storage, root, 0, "not waited for", RecordingTable())]
        for closed in args.closed:
            table = history(closed)
            results += [measure(bootstrap, storage, root, closed, compaction, table) for compaction in compactions]
        for r in results:
            print(f"{r['closed']:>7,} closed orders, compaction {r['compaction']}: {r['records']:,} changelog records, "
                  f"first start {r['first_start_s']:.1f} s, restart after kill -9 {r['restart_s']:.1f} s, "
                  f"state back: {r['state_back']}", flush=True)
    finally:
        if broker is not None:
            broker.stop()
        shutil.rmtree(root, ignore_errors=True)
    write_section(args.out, render(results), name="restart")
    print(json.dumps({"written": str(args.out)}))


if __name__ == "__main__":
    main()
