"""Audit exporter benchmark: how fast it drains a backlog into each sink, and how far it lags under order flow.

    python -m bench.audit [--records 200000] [--rate 300] [--duration 20] [--pairs 2] [--out bench/REPORT.md]

1. Drain: `--records` messages (execution-report sized) are put on the deadletter topic of a
   fresh app (nothing but the exporter reads it), then a worker with its exporter starts and the
   run times its consumer group's committed offsets from the worker's readiness to the end. Once
   with the folder sink, once with moto's S3 server (a Python process on this machine, so a much
   slower store than a real S3), beside a bare aiokafka consumer draining the same topic.
2. Lag: the order-flow benchmark's load (Kafka input at `--rate` orders/s to the OMS) on a worker
   with its exporter, sampling the exporter's lag (records behind the end of every ATLAS topic)
   every 0.5 s; and, alternating with it, the same load on a worker without the exporter, to show
   what the exporter costs the OMS.

Writes its section of `bench/REPORT.md` (between the audit markers; the rest is bench.orderflow's).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import boto3
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from bench.load import make_orders
from bench.orderflow import _code_version
from bench.report import AUDIT_END, AUDIT_START, write_section
from bench.runs import AtlasTarget, LatencyRun, latency_run
from bench.stack import ROOT, CpuMeter, WorkerSpec, api_key, start_broker, warm_broker, write_accounts
from atlas.infra.s3 import MotoServer
from atlas.runtime.kafka import sign_in_options

PARTITIONS = 8


@dataclass
class Drain:
    sink: str
    records: int
    seconds: float
    cpu_pct: float | None = None
    objects: int | None = None

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0


@dataclass
class Lag:
    samples: list[int] = field(default_factory=list)  # records behind, summed over every partition
    records_per_s: float = 0.0  # records written to ATLAS topics per second during the run


def report_value(n: int) -> bytes:
    """An execution report's JSON, as big as the OMS writes them."""
    return json.dumps({
        "exec_id": f"O{n:024x}-3", "seq": 3, "cause_id": f"bench-{n}-venue/{n}", "order_id": f"O{n:024x}",
        "client_order_id": f"bench-{n}", "account_id": f"bench-{n % 50:03d}", "symbol": "BTC-USD", "side": "BUY",
        "type": "LIMIT", "time_in_force": "GTC", "exec_type": "TRADE", "status": "FILLED", "quantity": "0.0040",
        "price": "65012.34", "last_qty": "0.0040", "last_px": "65000.01", "cum_qty": "0.0040", "leaves_qty": "0",
        "avg_px": "65000.01", "reason": None, "ts": 1795577644182 + n}).encode()


async def produce_backlog(bootstrap: str, topic: str, count: int) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **sign_in_options(), acks="all", linger_ms=20, max_batch_size=256 * 1024)
    await producer.start()
    try:
        # Spread evenly: with `count` a multiple of 8 × the batch size every batch is cut full, and
        # none waits out its age (which would time the age, not the exporter).
        futures = [await producer.send(topic, report_value(n), key=f"bench-{n % 50:03d}".encode(),
                                       partition=n % PARTITIONS) for n in range(count)]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def create_topic(bootstrap: str, topic: str) -> None:
    from aiokafka.admin import NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **sign_in_options())
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    finally:
        await admin.close()


async def committed(bootstrap: str, group: str, topics: set[str] | None = None) -> int:
    """The sum of a group's committed offsets (over `topics`, or all)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **sign_in_options())
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return sum(o.offset for tp, o in offsets.items() if topics is None or tp.topic in topics)


async def exporter_drain(spec: WorkerSpec, bootstrap: str, records: int, label: str) -> Drain:
    """Start a worker over a ready backlog; time its exporter from readiness to the end of the backlog."""
    topic = f"{spec.app_id}.deadletter"
    await create_topic(bootstrap, topic)
    await produce_backlog(bootstrap, topic, records)
    target = AtlasTarget(spec, f"ATLAS exporter to {label}", PARTITIONS)
    await asyncio.to_thread(target.start)
    try:
        meter = CpuMeter({"worker": target.pid})
        before, started = meter.sample(), time.monotonic()
        done_at_start = await committed(bootstrap, f"{spec.app_id}-audit", {topic})
        while (done := await committed(bootstrap, f"{spec.app_id}-audit", {topic})) < records:
            if time.monotonic() - started > 600:
                raise TimeoutError(f"{label}: the exporter wrote {done} of {records} records in 600 s")
            await asyncio.sleep(0.2)
        seconds = time.monotonic() - started
        cpu = CpuMeter.delta(before, meter.sample())["worker"]
    finally:
        target.stop()
    return Drain(label, records - done_at_start, seconds, None if cpu is None else 100 * cpu / seconds)


async def bare_drain(bootstrap: str, topic: str, records: int) -> Drain:
    """A bare aiokafka consumer reading the same backlog (read_committed, committing as it goes)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, **sign_in_options(), group_id=f"bare-{uuid.uuid4().hex[:6]}",
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                isolation_level="read_committed")
    await consumer.start()
    try:
        seen, started = 0, None
        while seen < records:
            batch = await consumer.getmany(timeout_ms=1000, max_records=5000)
            if started is None and batch:
                started = time.monotonic()
            seen += sum(len(m) for m in batch.values())
            if batch:
                await consumer.commit()
        return Drain("bare aiokafka consumer (no sink)", seen, time.monotonic() - started)
    finally:
        await consumer.stop()


async def sample_lag(bootstrap: str, prefix: str, group: str, lag: Lag, stop: asyncio.Event) -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, **sign_in_options(), enable_auto_commit=False)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **sign_in_options())
    await consumer.start()
    await admin.start()
    try:
        topics = [t for t in await admin.list_topics() if t.startswith(f"{prefix}.")]
        tps = [TopicPartition(t, p) for t in topics for p in range(PARTITIONS)]
        first_ends, first_t = None, time.monotonic()
        while not stop.is_set():
            ends = await consumer.end_offsets(tps)
            offsets = await admin.list_consumer_group_offsets(group)
            lag.samples.append(sum(max(0, ends[tp] - (offsets[tp].offset if tp in offsets else 0)) for tp in tps))
            if first_ends is None:
                first_ends, first_t = sum(ends.values()), time.monotonic()
            else:
                lag.records_per_s = (sum(ends.values()) - first_ends) / (time.monotonic() - first_t)
            try:
                await asyncio.wait_for(stop.wait(), 0.5)
            except asyncio.TimeoutError:
                pass
    finally:
        await admin.close()
        await consumer.stop()


async def loaded(spec: WorkerSpec, bootstrap: str, accounts: list[str], rate: float, duration: float,
                 with_lag: bool) -> tuple[LatencyRun, Lag]:
    """The order-flow latency run (Kafka input to the OMS) on this worker, sampling the exporter's lag."""
    target = AtlasTarget(spec, "ATLAS at_least_once" + (" with its exporter" if spec.audit else ""), PARTITIONS)
    warmup = int(rate * 2)
    orders = make_orders(f"audit-{spec.app_id}", warmup + int(rate * duration), accounts)
    probe = make_orders(f"probe-{spec.app_id}", 1, accounts)[0]
    lag, stop = Lag(), asyncio.Event()

    async def run() -> LatencyRun:
        try:
            return await latency_run(target, bootstrap, None, orders, rate, warmup, probe=probe,
                                     keys={a: api_key(a) for a in accounts})
        finally:
            stop.set()

    try:
        tasks = [run()]
        if with_lag:
            async def sampler() -> None:
                while not target.worker.ready() and not stop.is_set():
                    await asyncio.sleep(0.2)
                await sample_lag(bootstrap, spec.app_id, f"{spec.app_id}-audit", lag, stop)
            tasks.append(sampler())
        result, *_ = await asyncio.gather(*tasks)
    finally:
        target.stop()
    return result, lag


def render(drains: list[Drain], pairs: list[tuple[LatencyRun, LatencyRun]], lag: Lag, args: argparse.Namespace,
           took: float) -> str:
    bare = next(d for d in drains if d.sink.startswith("bare"))
    lines = [AUDIT_START, "## Audit exporter", "",
             f"Command: `python -m bench.audit --records {args.records} --rate {args.rate:g} --duration {args.duration:g} "
             f"--pairs {args.pairs}`  ",
             f"Started: {args.started}; took {took:.0f} s; ATLAS code: {_code_version()}. Batches: at most "
             f"{args.max_records} records or {args.max_age:g} s (ATLAS_AUDIT_MAX_RECORDS / ATLAS_AUDIT_MAX_AGE).", "",
             f"### Draining a backlog of {args.records} execution-report-sized messages (8 partitions)", "",
             "| reader | records/s | vs bare consumer | worker CPU % |", "|---|---|---|---|"]
    for d in drains:
        ratio = f"{d.rate / bare.rate:.2f}" if bare.rate else "-"
        cpu = f"{d.cpu_pct:.0f}" if d.cpu_pct is not None else "-"
        lines.append(f"| {d.sink} | {d.rate:,.0f} | {ratio} | {cpu} |")
    lines += ["", "The S3 figure is moto's server, a single Python process on this same 2-core machine; a real "
              "S3 bucket is slower per request but parallel, so it says little about AWS.", ""]
    lines += [f"### Lag under the order-flow load ({args.rate:g} orders/s, Kafka input, the OMS alone)", "",
              f"Command line as above, each run {args.duration:g} s measured after 2 s of warm-up; the lag is sampled "
              "in the runs with the exporter.", ""]
    if lag.samples:
        per_s = lag.records_per_s
        p50, p95, peak = (statistics.median(lag.samples), sorted(lag.samples)[int(0.95 * (len(lag.samples) - 1))],
                          max(lag.samples))
        secs = (lambda n: f"{n / per_s:.1f} s" if per_s else "-")
        lines += ["| exporter lag, records behind the topics' ends | p50 | p95 | max |", "|---|---|---|---|",
                  f"| records | {p50:,.0f} | {p95:,.0f} | {peak:,.0f} |",
                  f"| as time at the run's {per_s:,.0f} records/s | {secs(p50)} | {secs(p95)} | {secs(peak)} |", "",
                  f"{len(lag.samples)} samples, every 0.5 s. The lag includes the records of each partition's open "
                  f"batch, which waits up to {args.max_age:g} s by design.", ""]
    lines += ["| OMS submit → first report, same load | p50 ms | p99 ms | orders/s | worker CPU % | with / without p50 | "
              "with / without p99 |", "|---|---|---|---|---|---|---|"]
    for n, (without, with_) in enumerate(pairs, 1):
        for name, run in ((f"pair {n}: without the exporter", without), (f"pair {n}: with the exporter", with_)):
            if run.latency is None:
                lines.append(f"| {name} | - | - | - | - | | |")
                continue
            cpu = run.cpu_pct.get("target")
            ratio = (f"{with_.latency.p50 / without.latency.p50:.2f} | {with_.latency.p99 / without.latency.p99:.2f}"
                     if run is with_ and with_.latency and without.latency else " | ")
            lines.append(f"| {name} | {run.latency.p50:.1f} | {run.latency.p99:.1f} | {run.achieved_rate:,.0f} | "
                         f"{'-' if cpu is None else f'{cpu:.0f}'} | {ratio} |")
    lines.append("")
    lines.append(AUDIT_END)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.audit", description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000,
                        help="backlog of each drain run (a multiple of 8 × --max-records, so every batch is full)")
    parser.add_argument("--rate", type=float, default=300,
                        help="orders/s of the lag runs (default 300: below what one worker takes on this machine, "
                             "so the runs show the exporter's cost, not a backlog)")
    parser.add_argument("--pairs", type=int, default=2, help="runs without and with the exporter, alternating")
    parser.add_argument("--duration", type=float, default=20, help="measured seconds of the lag run")
    parser.add_argument("--max-records", type=int, default=5000, help="ATLAS_AUDIT_MAX_RECORDS of the workers")
    parser.add_argument("--max-age", type=float, default=5.0, help="ATLAS_AUDIT_MAX_AGE of the workers")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "REPORT.md")
    args = parser.parse_args(argv)
    args.started = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    root = Path(tempfile.mkdtemp(prefix="atlas-audit-bench-"))
    run_id, began = uuid.uuid4().hex[:6], time.monotonic()
    broker, _ = start_broker(root / "kafka")
    moto = MotoServer(root / "moto.log").start()
    try:
        bootstrap = broker.bootstrap
        accounts = write_accounts(root / "accounts.json", 50)
        warmup = [(o.account_id.encode(), o.command()) for o in make_orders("warm", 20_000, accounts)]
        asyncio.run(warm_broker(bootstrap, warmup))
        audit = (("ATLAS_AUDIT_MAX_RECORDS", str(args.max_records)), ("ATLAS_AUDIT_MAX_AGE", str(args.max_age)))

        def spec(name: str, exporter: bool = True, extra: tuple = ()) -> WorkerSpec:
            return WorkerSpec(bootstrap, f"ab-{run_id}-{name}", "at_least_once", root / "accounts.json", root,
                              audit=exporter, extra=audit + extra)

        s3 = boto3.client("s3", endpoint_url=moto.url, aws_access_key_id="test", aws_secret_access_key="test",
                          region_name="us-east-1")
        s3.create_bucket(Bucket="bench")
        s3_env = tuple(moto.env().items()) + (("ATLAS_AUDIT_SINK", "s3://bench"),)
        drains = []
        print("--- exporter drain to a folder", file=sys.stderr)
        folder = spec("file")
        drains.append(asyncio.run(exporter_drain(folder, bootstrap, args.records, "folder (file://)")))
        print("--- bare consumer drain", file=sys.stderr)
        drains.append(asyncio.run(bare_drain(bootstrap, f"{folder.app_id}.deadletter", args.records)))
        print("--- exporter drain to S3 (moto)", file=sys.stderr)
        drains.append(asyncio.run(exporter_drain(spec("s3", extra=s3_env), bootstrap, args.records, "S3 (moto server)")))
        # Pairs, alternating: this shared machine's speed drifts over minutes, more than the exporter costs.
        pairs: list[tuple[LatencyRun, LatencyRun]] = []
        lag = Lag()
        for n in range(args.pairs):
            print(f"--- order flow without the exporter ({n + 1})", file=sys.stderr)
            without, _ = asyncio.run(loaded(spec(f"plain{n}", exporter=False), bootstrap, accounts, args.rate,
                                            args.duration, with_lag=False))
            print(f"--- order flow with the exporter ({n + 1})", file=sys.stderr)
            with_, sampled = asyncio.run(loaded(spec(f"lag{n}"), bootstrap, accounts, args.rate, args.duration,
                                                with_lag=True))
            pairs.append((without, with_))
            lag.samples += sampled.samples
            lag.records_per_s = max(lag.records_per_s, sampled.records_per_s)
        section = render(drains, pairs, lag, args, time.monotonic() - began)
    finally:
        moto.stop()
        broker.stop()
        shutil.rmtree(root, ignore_errors=True)
    write_section(args.out, section)
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
