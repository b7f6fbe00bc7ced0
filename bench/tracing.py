"""What tracing costs the order path: tracing off, at 1% sampling and at 100%, side by side in one run.

    python -m bench.tracing [--rounds 3] [--backlog 3000] [--rate 40] [--duration 15] [--step-orders 4000]
                            [--instructions 600]

Three parts. First the `oms` agent's step in this process (`agents.oms.process` over an in-memory
table, as bench.oms_state drives it), each order's command and venue reports going through
`tracing.traced` as the agent sends them when tracing is on, spans exported over OTLP/HTTP
by the SDK's batching thread: CPU per order. Then the same step's instructions per order,
counted by valgrind's callgrind, which the machine's load does not move as it moves time.
Then the live pipeline: each round runs every mode in turn (the order rotating from round to round, so a slower
machine in one part of the run does not favour one mode): a fresh worker with its venue
drains a backlog of marketable orders to FILLED (orders/s, CPU), then another takes
marketable orders at a fixed rate (submit→FILLED latency). The orders come from Kafka
without a `traceparent`, so the worker starts each order's trace at the sampling ratio.
Spans go over OTLP/HTTP to a receiver process that only counts them. The section of
REPORT.md it writes gives medians over the rounds and each mode's ratio to tracing off.
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

from atlas.agents import oms as agent
from atlas.infra.kafka.broker import free_port
from atlas.runtime import tracing
from bench.oms_state import Account
from bench.load import make_marketable_orders
from bench.profile import render as render_profile
from bench.report import machine, markers, write_section
from bench.runs import AtlasTarget, latency_run, saturation_run
from bench.stack import ROOT, WorkerSpec, start_broker, warm_broker, write_accounts
from tests.otlp_receiver import Receiver
from tests.unit.agents.oms_harness import COMMANDS

MODES = {"off": None, "1%": "0.01", "100%": "1.0"}


def _spec(bootstrap: str, root: Path, endpoint: str, mode: str, name: str) -> WorkerSpec:
    ratio = MODES[mode]
    extra = (("ATLAS_OTEL_ENDPOINT", endpoint), ("ATLAS_OTEL_SAMPLE_RATIO", ratio)) if ratio else ()
    return WorkerSpec(bootstrap, name, "at_least_once", root / "accounts.json", root, venue=True, extra=extra)


def _provider(endpoint: str, ratio: str):
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased

    provider = TracerProvider(sampler=ParentBased(ALWAYS_ON))  # as tracing.configure makes it
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces")))
    return provider


def _step(mode: str, provider) -> Account:
    """An account whose inputs go through the `oms` agent's step, and through `tracing.traced` unless `mode` is off.

    A command comes without a `traceparent`, so its processing starts the order's trace at the ratio; its venue
    reports come with the context the command's processing put on the venue request, as the venue passes it on.
    """
    account = Account()
    worker = account.worker
    carried: list = [None]

    def through_the_agent(topic: str, offset: int, ts: int, value: bytes):
        message = SimpleNamespace(topic=topic, partition=worker.partition, offset=offset, timestamp=ts / 1000,
                                  key=account.account_id.encode(), value=value,
                                  headers=carried[0] if topic != COMMANDS else None)
        if not tracing.ENABLED:  # as agents.oms.handle calls it
            return agent._process(message)
        sends = tracing.traced("oms", message, agent._process, agent._order_of)
        if topic == COMMANDS:
            carried[0] = next((send.headers for send in sends if send.headers), None)
        return sends
    worker._process = through_the_agent
    ratio = MODES[mode]
    tracing.ENABLED = provider is not None
    tracing.install(provider, float(ratio) if ratio else 1.0)
    tracing._orders.clear()
    return account


def step_cpu(mode: str, orders: int, endpoint: str) -> float:
    """CPU µs per filled order of the `oms` agent's step in this process, with tracing as `mode` says."""
    ratio = MODES[mode]
    provider = _provider(endpoint, ratio) if ratio else None
    account = _step(mode, provider)
    try:
        for n in range(1, 501):  # warm-up
            account.order(n, fill=True)
        cpu = time.process_time()
        for n in range(501, 501 + orders):
            account.order(n, fill=True)
        account.done()
        if provider is not None:
            provider.force_flush()  # what the exporter thread still owes is part of the cost
        return (time.process_time() - cpu) / orders * 1e6
    finally:
        if provider is not None:
            provider.shutdown()
        tracing.install(None)
        tracing.ENABLED = False


def _step_child(mode: str, orders: int) -> None:
    """Run `orders` orders through the step (what `step_instructions` counts under callgrind); spans kept in memory."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased

    random.seed(7)  # the same orders sampled in every run
    provider = None
    if MODES[mode]:
        provider = TracerProvider(sampler=ParentBased(ALWAYS_ON))
        provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    account = _step(mode, provider)
    for n in range(1, 101):  # warm-up, in both runs
        account.order(n, fill=True)
    # The collector off: its full collections, which one run crosses and the other not, would outweigh what an
    # order costs (their share of the time is in the CPU and live parts).
    gc.collect()
    gc.disable()
    for n in range(101, 101 + orders):
        account.order(n, fill=True)
    account.done()


def step_instructions(mode: str, few: int, many: int) -> float:
    """Instructions per filled order of the step with tracing as `mode` says, counted by valgrind's callgrind.

    Two runs, `few` and `many` orders; the difference per order leaves out the interpreter's start and imports.
    A count does not move with the machine's load, as time does.
    """
    with tempfile.TemporaryDirectory(prefix="atlas-callgrind-") as folder:
        outs = [Path(folder) / f"{orders}.out" for orders in (few, many)]
        runs = [subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, "-m",
                                  "bench.tracing", "--step-child", mode, str(orders)], cwd=ROOT,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                for out, orders in zip(outs, (few, many))]  # side by side: a count does not mind
        if any([run.wait() != 0 for run in runs]):  # both waited for
            raise RuntimeError(f"callgrind's run of the step ({mode}) failed")
        counted = [int(next(line for line in out.read_text().splitlines() if line.startswith("summary:")).split()[1])
                   for out in outs]
    return (counted[1] - counted[0]) / (many - few)


def measure(args: argparse.Namespace) -> dict:
    root = Path(tempfile.mkdtemp(prefix="atlas-bench-tracing-"))
    broker, _ = start_broker(root / "kafka")
    receiver = Receiver(root, free_port(), count_only=True)
    run_id = uuid.uuid4().hex[:6]
    results: dict[str, dict[str, list]] = {mode: {"drain": [], "cpu": [], "p50": [], "p99": [], "step": []}
                                            for mode in MODES}
    instructions = {}
    for mode in MODES if args.instructions else ():
        instructions[mode] = step_instructions(mode, args.instructions // 3, args.instructions)
        print(f"step tracing {mode}: {instructions[mode]:,.0f} instructions per order", file=sys.stderr, flush=True)
    profile_path = root / "drain-100.txt" if args.profile else None
    try:
        modes = list(MODES)
        for round_no in range(args.rounds):
            for mode in modes[round_no % len(modes):] + modes[:round_no % len(modes)]:
                results[mode]["step"].append(step_cpu(mode, args.step_orders, receiver.endpoint))
                print(f"step round {round_no + 1} tracing {mode}: {results[mode]['step'][-1]:,.0f} µs CPU per order",
                      file=sys.stderr, flush=True)
        bootstrap = broker.bootstrap
        accounts = write_accounts(root / "accounts.json", args.accounts)
        asyncio.run(warm_broker(bootstrap, [(o.account_id.encode(), o.command())
                                            for o in make_marketable_orders("warm", 5_000, accounts)]))
        for round_no in range(0 if args.no_live else args.rounds):
            order = modes[round_no % len(modes):] + modes[:round_no % len(modes)]
            for mode in order:
                tag = f"{mode.replace('%', 'p')}-{round_no}"
                # 1. drain a backlog of marketable orders to FILLED
                target = AtlasTarget(_spec(bootstrap, root, receiver.endpoint, mode, f"bt-{run_id}-sat-{tag}"),
                                     f"tracing {mode}", 8)
                orders = make_marketable_orders(f"sat-{tag}", args.backlog, accounts, seed=13 + round_no)
                profile = profile_path if (profile_path and mode == "100%" and round_no == 0) else None
                try:
                    drained = asyncio.run(saturation_run(target, bootstrap, broker.read_pid(), orders, settle_s=1.0,
                                                         status="FILLED", profile=profile))
                finally:
                    target.stop()
                results[mode]["drain"].append(drained.rate)
                results[mode]["cpu"].append(drained.cpu_per_1000("target"))
                # 2. marketable orders at a fixed rate: submit -> FILLED
                target = AtlasTarget(_spec(bootstrap, root, receiver.endpoint, mode, f"bt-{run_id}-lat-{tag}"),
                                     f"tracing {mode}", 8)
                warmup = int(args.rate * 2)
                orders = make_marketable_orders(f"lat-{tag}", warmup + int(args.rate * args.duration), accounts)
                probe = make_marketable_orders(f"probe-{tag}", 1, accounts)[0]
                try:
                    timed = asyncio.run(latency_run(target, bootstrap, broker.read_pid(), orders, args.rate, warmup,
                                                    probe=probe, status="FILLED", drain_timeout=60.0))
                finally:
                    target.stop()
                results[mode]["p50"].append(timed.latency.p50 if timed.latency else None)
                results[mode]["p99"].append(timed.latency.p99 if timed.latency else None)
                print(f"round {round_no + 1} tracing {mode}: drained {drained.rate:,.0f} orders/s "
                      f"({drained.cpu_per_1000('target') or 0:.2f} CPU-s/1000), at {args.rate:g}/s p50 "
                      f"{results[mode]['p50'][-1]:.1f} ms p99 {results[mode]['p99'][-1]:.1f} ms; spans received "
                      f"so far {receiver.count():,}", file=sys.stderr, flush=True)
        spans = receiver.count()
    finally:
        receiver.stop()
        broker.stop()
    profile_text = render_profile("The drain at 100% sampling, top frames", profile_path) \
        if profile_path and profile_path.exists() else None
    shutil.rmtree(root, ignore_errors=True)
    return {"results": results, "spans": spans, "profile": profile_text, "instructions": instructions}


def _median(values: list) -> float | None:
    found = [v for v in values if v is not None]
    return statistics.median(found) if found else None


def render(measured: dict, args: argparse.Namespace, command: str) -> str:
    start, end = markers("tracing")
    results = measured["results"]
    base = {k: _median(results["off"][k]) for k in ("drain", "cpu", "p50", "p99", "step")}
    lines = [start, "## Tracing overhead (`python -m bench.tracing`)", "",
             f"Command: `{command}`, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.", "",
             f"**The `oms` agent's step, in process** ({args.step_orders:,} orders submitted, acknowledged and "
             "filled per mode and round, through `tracing.traced` when tracing is on, the reports carrying the context the command's step sent on; spans exported over "
             "OTLP/HTTP by the SDK's thread, whose CPU counts; medians over the rounds):", "",
             "| tracing | CPU µs per order | vs off | each round |", "|---|---|---|---|"]
    for mode in MODES:
        step = _median(results[mode]["step"])
        lines.append(f"| {mode} | {step:,.0f} | {step / base['step']:.3f} | "
                     f"{', '.join(f'{v:,.0f}' for v in results[mode]['step'])} |")
    if measured["instructions"]:
        counted = measured["instructions"]
        lines += ["", f"**The same step, counted by callgrind** (valgrind's instruction count of {args.instructions:,} "
                      f"orders less that of {args.instructions // 3:,}, per order, after 100 orders of warm-up; the garbage "
                      "collector off, since its full collections fall in one run and not the other; spans kept in "
                      "memory, so the OTLP encoding and post the live part pays are left out; the ratio's draws "
                      "seeded): a count the machine's load does not move.", "",
                  "| tracing | instructions per order | vs off |", "|---|---|---|"]
        for mode in MODES:
            lines.append(f"| {mode} | {counted[mode]:,.0f} | {counted[mode] / counted['off']:.3f} |")
    if args.no_live:
        return "\n".join(lines + ["", "(The live part was skipped: --no-live.)", end]) + "\n"
    lines += ["", f"**The live pipeline.** {args.rounds} rounds; in each, every mode on fresh workers with their "
                  f"venue (at_least_once): a backlog of {args.backlog:,} marketable orders drained to FILLED, then marketable orders at {args.rate:g}/s for "
             f"{args.duration:g} s (submit→FILLED). Orders come from Kafka without a `traceparent`, so the worker starts "
             "each trace at the ratio; spans go over OTLP/HTTP to a receiver process on the same machine that only "
             "counts them. Medians over the rounds; ratios against tracing off, same run.", "",
             "| tracing | drain orders/s | vs off | worker CPU-s per 1000 orders | vs off | p50 ms | p99 ms | "
             "p99 vs off | each round's drain orders/s |", "|---|---|---|---|---|---|---|---|---|"]
    for mode in MODES:
        m = {k: _median(results[mode][k]) for k in ("drain", "cpu", "p50", "p99")}

        def ratio(key: str) -> str:
            return f"{m[key] / base[key]:.2f}" if m[key] and base[key] else "n/a"
        rounds = ", ".join(f"{v:,.0f}" for v in results[mode]["drain"])
        lines.append(f"| {mode} | {m['drain']:,.0f} | {ratio('drain')} | {m['cpu'] or 0:.2f} | {ratio('cpu')} | "
                     f"{m['p50'] or 0:.1f} | {m['p99'] or 0:.1f} | {ratio('p99')} | {rounds} |")
    info = machine("n/a")
    lines += ["", f"Spans the receiver got over the whole run: {measured['spans']:,}. Machine: {info['CPUs (nproc)']} "
                  f"CPUs, {info['CPU model']}, Python {info['Python']}."]
    if measured["profile"]:
        lines += ["", measured["profile"].rstrip()]
    lines.append(end)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tracing", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backlog", type=int, default=3_000, help="marketable orders drained per run")
    parser.add_argument("--rate", type=float, default=40, help="orders/s of the latency runs")
    parser.add_argument("--step-orders", type=int, default=4_000, help="orders per mode and round of the in-process part")
    parser.add_argument("--duration", type=float, default=15, help="measured seconds of each latency run")
    parser.add_argument("--accounts", type=int, default=50)
    parser.add_argument("--instructions", type=int, default=450, metavar="ORDERS",
                        help="count the step's instructions under callgrind with this many orders (0: not at all)")
    parser.add_argument("--step-child", nargs=2, metavar=("MODE", "ORDERS"), help=argparse.SUPPRESS)
    parser.add_argument("--no-live", action="store_true", help="the in-process part only")
    parser.add_argument("--profile", action="store_true", help="py-spy the first 100%% drain; top frames in the report")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("REPORT.md"))
    args = parser.parse_args(argv)
    if args.step_child:
        _step_child(args.step_child[0], int(args.step_child[1]))
        return 0
    command = "python -m bench.tracing " + " ".join(argv if argv is not None else sys.argv[1:])
    measured = measure(args)
    write_section(args.out, render(measured, args, command.strip()), name="tracing")
    print(json.dumps({"written": str(args.out)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
