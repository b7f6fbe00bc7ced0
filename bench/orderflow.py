"""Order-flow benchmark of ATLAS: latency at a fixed rate, saturation throughput, and a bare-Kafka baseline.

    python -m bench.orderflow [--rate 500] [--duration 20] [--accounts 50] [--http-rate 200] [--out bench/REPORT.md]

Starts its own Kafka broker (or uses ATLAS_KAFKA_BOOTSTRAP), one fresh worker per scenario, and
writes a Markdown report. It measures; it asserts nothing about speed.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Awaitable, Callable

from atlas.settings import Settings
from bench import engine
from bench.load import make_marketable_orders, make_orders
from bench.profile import render as render_profile
from bench.report import Results, machine, markers, render, summary, write_section
from bench.runs import AtlasTarget, BareTarget, StartFailed, Target, latency_run, saturation_run
from bench.stack import ROOT, BareLoop, WorkerSpec, api_key, start_broker, warm_broker, write_accounts

GUARANTEES = {"alo": "at_least_once", "eos": "exactly_once"}
BARE = "bare aiokafka loop"
BARE_BACKLOG_FACTOR = 3


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.orderflow", description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=500, help="orders/s of the latency runs (default 500)")
    parser.add_argument("--duration", type=float, help="measured seconds of each latency run (default 20, quick 3; "
                                                        "the light-rate runs take half)")
    parser.add_argument("--warmup", type=float, help="unmeasured seconds before each latency run (default 2, quick 1)")
    parser.add_argument("--accounts", type=int, default=50, help="bench accounts the orders are spread over")
    parser.add_argument("--low-rate", type=float,
                        help="orders/s of a second, light-load latency run per guarantee (0: skip; default 100, "
                             "quick 0)")
    parser.add_argument("--http-rate", type=float, default=200, help="orders/s of the HTTP run (default 200)")
    parser.add_argument("--saturation", type=int, help="backlog of each saturation run (default 20000, quick 2000)")
    parser.add_argument("--commit-interval", type=float, help="ATLAS_COMMIT_INTERVAL for the workers and the bare loop "
                                                               "(default: the worker's own default)")
    parser.add_argument("--linger-ms", type=int, help="ATLAS_PRODUCER_LINGER_MS for the workers and the bare loop")
    parser.add_argument("--engine-ops", type=int, help="operations per mix of the matching-engine run (default 300000, "
                                                       "quick 50000)")
    parser.add_argument("--fills-rate", type=float, default=100, help="orders/s of the submit→FILLED runs (default 100: "
                                                                     "about a third of what the worker drains to FILLED)")
    parser.add_argument("--fills-saturation", type=int, help="backlog of marketable orders drained to FILLED "
                                                              "(default 5000, quick 1000)")
    parser.add_argument("--fills-high-rate", type=float, help="orders/s of one more submit→FILLED run at_least_once, "
                                                               "for half the duration (issue 13's p99 target is at "
                                                               "1000; default 1000, quick 0: skip)")
    parser.add_argument("--profile", metavar="LABEL",
                        help="profile the ATLAS worker with py-spy while it drains marketable orders to FILLED, and "
                             "write its top frames to the report's `profile-LABEL` section (e.g. before, after)")
    parser.add_argument("--only", nargs="+", choices=["engine", "bare", "alo", "eos", "http", "fills"],
                        help="run only these targets (default: all)")
    parser.add_argument("--quick", action="store_true", help="short runs, no light-rate runs (about 1.5 minutes)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (broker data, worker logs)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "REPORT.md", help="report path")
    args = parser.parse_args(argv)
    args.duration = args.duration if args.duration is not None else (3 if args.quick else 20)
    args.low_rate = args.low_rate if args.low_rate is not None else (0 if args.quick else 100)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    args.saturation = args.saturation if args.saturation is not None else (2000 if args.quick else 20_000)
    args.engine_ops = args.engine_ops if args.engine_ops is not None else (50_000 if args.quick else 300_000)
    args.fills_saturation = args.fills_saturation if args.fills_saturation is not None else \
        (1000 if args.quick else 5000)
    args.fills_high_rate = args.fills_high_rate if args.fills_high_rate is not None else (0 if args.quick else 1000)
    args.only = set(args.only or ["engine", "bare", "alo", "eos", "http", "fills"])
    return args


@dataclass(frozen=True)
class Maker:
    """Makes a fresh target for each attempt at a scenario."""

    label: str
    make: Callable[[int], Target]


class Bench:
    """The broker, the accounts and every process a run starts; leaving the `with` stops them all."""

    def __init__(self, args: argparse.Namespace, results: Results):
        self.args, self.results = args, results
        self.profiles: dict[str, tuple[Path, object]] = {}  # label -> (py-spy stacks, the drain they sampled)
        self.settings = Settings()  # what the workers get from this environment, unless overridden
        # For the bare loop and the waits; each worker takes its guarantee's own default unless --commit-interval.
        self.commit_interval = args.commit_interval if args.commit_interval is not None else \
            self.settings.model_copy(update={"processing_guarantee": "at_least_once"}).commit_seconds
        self.linger_ms = args.linger_ms if args.linger_ms is not None else self.settings.producer_linger_ms
        self.root = Path(tempfile.mkdtemp(prefix="atlas-bench-"))
        self.run_id = uuid.uuid4().hex[:6]
        self.broker = None
        self.broker_pid: int | None = None
        self.targets: list[Target] = []
        self.keep = args.keep

    def __enter__(self) -> "Bench":
        try:
            if "kafka_bootstrap" in self.settings.model_fields_set:
                self.bootstrap, kafka = self.settings.kafka_bootstrap, "external broker (ATLAS_KAFKA_BOOTSTRAP)"
                self.results.notes.append("broker CPU is not measured on an external broker")
            else:
                print(f"starting a Kafka broker in {self.root / 'kafka'} ...", file=sys.stderr)
                self.broker, attempts = start_broker(self.root / "kafka")
                if attempts > 1:
                    self.results.notes.append(
                        f"the local broker took {attempts} starts: LocalBroker's random cluster id began with '-', "
                        "which kafka-storage reads as an option (infra/kafka/broker.py `_new_cluster_id`)")
                self.bootstrap, self.broker_pid, kafka = self.broker.bootstrap, self.broker.read_pid(), self.broker.version
            self.accounts = write_accounts(self.root / "accounts.json", self.args.accounts)
            warmup = [(o.account_id.encode(), o.command()) for o in make_orders("warm", 20_000, self.accounts)]
            asyncio.run(warm_broker(self.bootstrap, warmup))
        except BaseException:
            self.__exit__()
            raise
        self.results.machine = {"ATLAS code": _code_version(), **machine(kafka)}
        return self

    def __exit__(self, *exc: object) -> None:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
        try:
            for target in reversed(self.targets):
                try:
                    target.stop()
                except Exception as err:  # keep stopping the others
                    print(f"could not stop {target.label}: {err}", file=sys.stderr)
            if self.broker is not None:
                self.broker.stop()
            if self.keep:
                print(f"kept {self.root}", file=sys.stderr)
            else:
                shutil.rmtree(self.root, ignore_errors=True)
        finally:
            signal.signal(signal.SIGINT, previous)

    # targets

    def worker(self, key: str, kind: str, venue: bool = False) -> Maker:
        """Fresh ATLAS workers (own app id, topics and state) for one scenario."""
        label = f"ATLAS {GUARANTEES[key]}" + (" with its venue" if venue else "")

        def make(attempt: int) -> Target:
            spec = WorkerSpec(self.bootstrap, f"bench-{self.run_id}-{key}-{kind}-{attempt}", GUARANTEES[key],
                              self.root / "accounts.json", self.root, self.args.commit_interval, self.args.linger_ms,
                              venue=venue)
            return AtlasTarget(spec, label, self.settings.partitions)
        return Maker(label, make)

    def bare(self, kind: str) -> Maker:
        def make(attempt: int) -> Target:
            prefix = f"bench-{self.run_id}-bare-{kind}-{attempt}"
            loop = BareLoop(self.bootstrap, prefix, self.root, self.commit_interval, self.linger_ms)
            return BareTarget(loop, prefix, BARE, self.settings.partitions)
        return Maker(BARE, make)

    def bare_chain(self, kind: str) -> Maker:
        """Three bare loops in a row: the hops of an order that fills (oms → venue → oms)."""
        label = f"{BARE}, 3 hops"

        def make(attempt: int) -> Target:
            prefix = f"bench-{self.run_id}-chain-{kind}-{attempt}"
            hops = [("commands", "hop1", "PENDING_NEW"), ("hop1", "hop2", "PENDING_NEW"), ("hop2", "executions", "FILLED")]
            loops = [BareLoop(self.bootstrap, prefix, self.root, self.commit_interval, self.linger_ms, source=source,
                              sink=sink, status=status, name=f"-{n}") for n, (source, sink, status) in enumerate(hops)]
            return BareTarget(loops, prefix, label, self.settings.partitions,
                              topics=("commands", "hop1", "hop2", "executions"))
        return Maker(label, make)

    def scenario(self, name: str, maker: Maker, run: Callable[[Target], Awaitable], attempts: int = 3):
        """Run one scenario on a fresh target; a target that does not start is replaced, a failure recorded."""
        for attempt in range(1, attempts + 1):
            target = maker.make(attempt)
            self.targets.append(target)
            self.results.target_starts += 1
            started = time.monotonic()
            print(f"--- {name}" + (f" (attempt {attempt})" if attempt > 1 else ""), file=sys.stderr)
            try:
                result = asyncio.run(run(target))
                print(f"    done in {time.monotonic() - started:.0f} s", file=sys.stderr)
                return result
            except StartFailed as err:
                self.results.start_failures.append(f"{name}, attempt {attempt}: {err}")
                self.keep = True
                print(f"    {err}", file=sys.stderr)
            except Exception as err:
                self.keep = True
                first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                self.results.failures.append(f"{name}: {type(err).__name__}: {first} (logs kept in {self.root})")
                print(f"    FAILED: {err!r}\n{target.log_tail()}", file=sys.stderr)
                return None
            finally:
                target.stop()
        self.results.failures.append(f"{name}: no target started in {attempts} attempts (logs kept in {self.root})")
        return None

    # scenarios

    def latency(self, key: str, maker: Maker, via: str = "kafka", rate: float | None = None,
                duration: float | None = None) -> None:
        rate = rate or (self.args.http_rate if via == "http" else self.args.rate)
        warmup = int(rate * self.args.warmup)
        orders = make_orders(f"{key}-{via}", warmup + int(rate * (duration or self.args.duration)), self.accounts)
        keys = {a: api_key(a) for a in self.accounts}
        drain = max(30.0, 4 * self.commit_interval)
        probe = make_orders("probe", 1, self.accounts)[0]
        run = partial(latency_run, bootstrap=self.bootstrap, broker_pid=self.broker_pid, orders=orders, rate=rate,
                      warmup=warmup, via=via, keys=keys, drain_timeout=drain, probe=probe)
        label = maker.label
        result = self.scenario(f"{label}, {via} at {rate:g}/s", maker, run)
        if result is not None:
            self.results.latency[key] = result
            if result.answered < result.measured:
                self.results.failures.append(f"{label} {via} at {rate:g}/s: {result.measured - result.answered} of "
                                             f"{result.measured} measured orders got no execution report")

    def fills_latency(self, key: str, maker: Maker, rate: float, duration: float) -> None:
        """Marketable orders at `rate`, timed from due time to the FILLED report."""
        warmup = int(rate * self.args.warmup)
        orders = make_marketable_orders(f"{key}-fills", warmup + int(rate * duration), self.accounts)
        probe = make_marketable_orders("probe-fill", 1, self.accounts)[0]
        run = partial(latency_run, bootstrap=self.bootstrap, broker_pid=self.broker_pid, orders=orders, rate=rate,
                      warmup=warmup, drain_timeout=max(30.0, 4 * self.commit_interval), probe=probe, status="FILLED")
        result = self.scenario(f"{maker.label}, submit→FILLED at {rate:g}/s", maker, run)
        if result is not None:
            self.results.fills[key] = result
            if result.answered < result.measured:
                self.results.failures.append(f"{maker.label} at {rate:g}/s: {result.measured - result.answered} of "
                                             f"{result.measured} marketable orders were not FILLED")

    def fills(self, key: str, maker: Maker, drainer: Maker) -> None:
        """Marketable orders at --fills-rate, timed from due time to the FILLED report; then a backlog of them."""
        self.fills_latency(key, maker, self.args.fills_rate, self.args.duration)
        backlog = self.args.fills_saturation
        profile = None
        if self.args.profile and key == "alo":
            profile = Path(tempfile.mkdtemp(prefix="atlas-profile-")) / "fills-drain.txt"
        sat = partial(saturation_run, bootstrap=self.bootstrap, broker_pid=self.broker_pid, status="FILLED",
                      orders=make_marketable_orders(f"{key}-fsat", backlog, self.accounts, seed=13),
                      settle_s=self.commit_interval + 1.0, profile=profile)
        drained = self.scenario(f"{maker.label}, {backlog} marketable orders to FILLED", drainer, sat)
        if drained is not None:
            self.results.fills_saturation[key] = drained
            if profile is not None and profile.exists():
                self.profiles[self.args.profile] = (profile, drained)

    def saturation(self, key: str, maker: Maker) -> None:
        # The bare loop drains 20,000 orders in under a second: give it more, for a window worth timing.
        backlog = self.args.saturation * (BARE_BACKLOG_FACTOR if key == "bare" else 1)
        orders = make_orders(f"{key}-sat", backlog, self.accounts, seed=11)
        run = partial(saturation_run, bootstrap=self.bootstrap, broker_pid=self.broker_pid, orders=orders,
                      settle_s=self.commit_interval + 1.0)
        result = self.scenario(f"{maker.label}, saturation of {len(orders)} orders", maker, run)
        if result is not None:
            self.results.saturation[key] = result

    def run(self) -> None:
        args, only = self.args, self.args.only
        eos_commit = self.settings.model_copy(update={"processing_guarantee": "exactly_once"}).commit_seconds
        self.results.settings = {
            "commit interval (ATLAS_COMMIT_INTERVAL; the bare loop commits as often as at_least_once)":
                f"{self.commit_interval:g} s" if args.commit_interval is not None else
                f"{self.commit_interval:g} s under at_least_once, {eos_commit:g} s under exactly_once (the defaults)",
            "worker producer linger (ATLAS_PRODUCER_LINGER_MS; the bare loop's too)": f"{self.linger_ms} ms",
            "partitions per topic": str(self.settings.partitions),
            "accounts": f"{args.accounts} (orders round-robin over them)",
        }
        self.results.load = [
            f"latency runs: {args.warmup:g} s warm-up + {args.duration:g} s measured at {args.rate:g} orders/s"
            + (f" (and {args.duration / 2:g} s at {args.low_rate:g} orders/s)" if args.low_rate else "")
            + f" (HTTP: {args.http_rate:g} orders/s); SubmitOrder LIMIT BTC-USD within ±5% of 65000, 0.0001-0.01 BTC",
            "Kafka input: one aiokafka producer (acks=all, linger 0), key = account id; "
            "HTTP input: one aiohttp session, at most 64 requests in flight",
            f"saturation runs: {args.saturation} orders ({BARE_BACKLOG_FACTOR * args.saturation} for the bare loop) "
            "pre-produced (acks=all, linger 20 ms), then the target starts",
        ]
        if "engine" in only:
            print(f"--- matching engine alone, {args.engine_ops} operations per mix")
            self.results.engine = engine.measure(args.engine_ops, seed=7)
        if "bare" in only:
            self.latency("bare", self.bare("lat"))
        for key in ("alo", "eos"):
            if key in only:
                self.latency(key, self.worker(key, "lat"))
        for key in ("bare", "alo", "eos"):
            if key in only and args.low_rate:
                maker = self.bare("low") if key == "bare" else self.worker(key, "low")
                self.latency(f"{key}-low", maker, rate=args.low_rate, duration=args.duration / 2)
        if "http" in only:
            self.latency("alo-http", self.worker("alo", "http"), via="http")
        if "bare" in only:
            self.saturation("bare", self.bare("sat"))
        for key in ("alo", "eos"):
            if key in only:
                self.saturation(key, self.worker(key, "sat"))
        if "fills" in only:
            self.fills("bare-chain", self.bare_chain("fills"), self.bare_chain("fsat"))
            self.fills("alo", self.worker("alo", "fills", venue=True), self.worker("alo", "fsat", venue=True))
            self.fills("eos", self.worker("eos", "fills", venue=True), self.worker("eos", "fsat", venue=True))
            if args.fills_high_rate:
                self.fills_latency("alo-high", self.worker("alo", "fhigh", venue=True), args.fills_high_rate,
                                   args.duration / 2)


def _code_version() -> str:
    """The commit measured, and whether the code (bench/ aside) differed from it."""
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return done.stdout if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD").strip()
    if not commit:
        return "unknown (not a git checkout)"
    changed = [line for line in git("status", "--porcelain", "--untracked-files=no").splitlines()
               if not line[3:].startswith("bench/")]
    return f"commit {commit}" + (f", with local changes in {len(changed)} file(s)" if changed else "")


def _terminate(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # aiokafka warns on every retried produce (e.g. NotLeaderForPartition on a topic created a moment ago)
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    signal.signal(signal.SIGTERM, _terminate)
    command = shlex.join(["python", "-m", "bench.orderflow", *(sys.argv[1:] if argv is None else argv)])
    results = Results(command=command, started=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"))
    started = time.monotonic()
    try:
        with Bench(args, results) as bench:
            bench.run()
            results.machine["load average at end (1/5/15 min)"] = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except KeyboardInterrupt:
        print("interrupted: every process this run started has been stopped", file=sys.stderr)
        return 130
    results.wall_s = time.monotonic() - started
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.profile:
        # A profiling run writes its own section only: the sampler costs the worker CPU, so its
        # figures are not the report's.
        for label, (path, drained) in bench.profiles.items():
            start, end = markers(f"profile-{label}")
            title = (f"CPU profile of the fills drain, {label} ({results.machine.get('ATLAS code', '')}): "
                     f"{drained.window_orders} orders in {drained.window_s:.2f} s under the sampler")
            write_section(args.out, f"{start}\n{render_profile(title, path)}{end}\n", name=f"profile-{label}")
    else:
        write_section(args.out, main=render(results))  # keeps bench.audit's section
    print(summary(results))
    print(f"report written to {args.out}")
    return 1 if results.failures else 0


if __name__ == "__main__":
    sys.exit(main())
