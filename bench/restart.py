"""How long a worker takes to be ready again after `kill -9`, beside an account's history of closed orders.

    python -m bench.restart [--closed 100000] [--out bench/REPORT.md]

For each history (none, and `closed` filled orders of one account, of which the retention
keeps the newest 10,000 and archives the rest with tombstones), a fresh worker creates its
topics and stops. The history is made by the `oms` agent's own step in this process (over an
in-memory table, as `bench.oms_state` does) and every write it made, deletes as tombstones, is
produced to the worker's OMS changelog, as the worker would have written it. The worker then
starts (it reads the history into its local store), answers a read of the newest order, is killed with SIGKILL and
started again: without a clean stop it wipes its local tables and restores them from the
changelog. The figures are the seconds from each start to `/readyz` answering ready, and the
changelog's records beside the keys compaction would leave. It measures; it asserts nothing.
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

from aiokafka import AIOKafkaProducer

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
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20, max_batch_size=1 << 20,
                                max_request_size=8 << 20)
    await producer.start()
    try:
        for n, (key, value) in enumerate(log):
            await producer.send(topic, value, key=key, partition=partition)
            if n % 50_000 == 0:
                await producer.flush()
        await producer.flush()
    finally:
        await producer.stop()


def _newest_order(worker) -> dict | None:
    request = urllib.request.Request(f"{worker.url}/api/v1/orders?limit=1", headers={"X-API-Key": api_key(ACCOUNT)})
    with urllib.request.urlopen(request, timeout=10) as response:
        orders = json.load(response)["orders"]
    return orders[0] if orders else None


def measure(bootstrap: str, root: Path, closed: int) -> dict:
    spec = WorkerSpec(bootstrap, f"bench-restart-{uuid.uuid4().hex[:6]}-{closed}", "at_least_once",
                      root / "accounts.json", root)
    worker = spec.process()
    worker.start(timeout=180)
    worker.stop()  # its topics exist now
    changelog = f"{spec.app_id}-oms-changelog"
    table = history(closed) if closed else RecordingTable()
    asyncio.run(produce(bootstrap, changelog, partition_for(ACCOUNT.encode()), table.log))
    records = sum(asyncio.run(high_watermarks(bootstrap, lambda t: t == changelog)).values())
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
    return {"closed": closed, "records": records, "bytes": sum(len(k) + len(v or b"") for k, v in table.log),
            "live_keys": len(table), "first_start_s": first_start, "restart_s": restart,
            "state_back": newest == again and (newest or {}).get("client_order_id") == expected}


def render(results: list[dict]) -> str:
    start, end = markers("restart")
    base = results[0]
    lines = [start, "## Restart after `kill -9` beside a history of closed orders (`python -m bench.restart`)", "",
             "One account's history written to its worker's OMS changelog as the worker writes it (the retention "
             "keeps the newest 10,000 closed orders and deletes the rest); the worker reads it, takes no traffic, is "
             "killed with SIGKILL and restarts, wiping its local tables and restoring them from the changelog. "
             "The broker compacts nothing in this run (the segment is still active), so the restore reads every "
             "record: the worst case; compaction would leave the live keys. Both restarts also wait out the killed "
             "member's session timeout (ATLAS_SESSION_TIMEOUT) before the group gives its partitions back; the first "
             "start follows a clean stop and does not.", "",
             "| closed orders | changelog records | changelog MB | live keys (what compaction leaves) | "
             "first start, s | restart after kill -9, s | vs none | state back |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['closed']:,} | {r['records']:,} | {r['bytes'] / 1e6:,.1f} | {r['live_keys']:,} | "
                     f"{r['first_start_s']:.1f} | {r['restart_s']:.1f} | {r['restart_s'] / base['restart_s']:.1f}x | "
                     f"{'yes' if r['state_back'] else 'NO'} |")
    info = machine("n/a")
    lines += ["", f"Machine: {info['CPUs (nproc)']} CPUs, {info['CPU model']}, Python {info['Python']}.", end]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.restart", description=__doc__.splitlines()[0])
    parser.add_argument("--closed", type=int, nargs="+", default=[100_000])
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("REPORT.md"))
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="atlas-restart-"))
    broker = None
    settings = Settings()
    try:
        if "kafka_bootstrap" in settings.model_fields_set:
            bootstrap = settings.kafka_bootstrap
        else:
            broker, _ = start_broker(root / "kafka")
            bootstrap = broker.bootstrap
        write_accounts(root / "accounts.json", 1)
        results = []
        for closed in [0, *args.closed]:
            results.append(measure(bootstrap, root, closed))
            r = results[-1]
            print(f"{closed:>7,} closed orders: {r['records']:,} changelog records, first start {r['first_start_s']:.1f} s, "
                  f"restart after kill -9 {r['restart_s']:.1f} s, state back: {r['state_back']}", flush=True)
    finally:
        if broker is not None:
            broker.stop()
        shutil.rmtree(root, ignore_errors=True)
    write_section(args.out, render(results), name="restart")
    print(json.dumps({"written": str(args.out)}))


if __name__ == "__main__":
    main()
