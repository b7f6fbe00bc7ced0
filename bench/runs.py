"""The two kinds of run: an open-loop latency run at a fixed rate, and a saturation run that drains a backlog."""
from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

from bench.profile import Profiler
from bench.load import (
    BenchOrder, Percentiles, Schedule, Tracker, post_http, produce_all, progress_bar, send_kafka,
)
from bench.stack import (
    INTERNAL_TOPICS, BareLoop, CpuMeter, WorkerSpec, count_records, create_topics, high_watermarks, per_topic,
)


START_TIMEOUT = 45.0  # a worker is normally ready in under 5 s


class StartFailed(Exception):
    """The target never became ready, or never answered an order once it said it was: worth a retry."""


class Target(Protocol):
    """A process under test: reads `<prefix>.commands`, writes reports to `<prefix>.executions`."""

    prefix: str
    label: str
    partitions: int

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def pid(self) -> int | None: ...
    def log_tail(self, lines: int = 30) -> str: ...
    def start_problem(self) -> str | None: ...


class AtlasTarget:
    """One ATLAS worker with its own app id and topics."""

    def __init__(self, spec: WorkerSpec, label: str, partitions: int):
        self.spec, self.label, self.prefix, self.partitions = spec, label, spec.app_id, partitions
        self.worker = spec.process()

    @property
    def url(self) -> str:
        return self.worker.url

    def start(self) -> None:
        """Spawn the worker and wait for /readyz, giving up early once its log shows it never will be."""
        deadline = time.monotonic() + START_TIMEOUT
        try:
            self.worker.start(timeout=2)
            return
        except TimeoutError:
            pass
        while True:
            problem = self.start_problem()
            if problem:
                raise StartFailed(problem)
            try:
                self.worker.wait_ready(timeout=1)
                return
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise

    def stop(self) -> None:
        self.worker.stop()

    def pid(self) -> int | None:
        return self.worker.proc.pid if self.worker.proc else None

    def log_tail(self, lines: int = 30) -> str:
        return self.worker.tail(lines)

    def start_problem(self) -> str | None:
        """Why this worker will never process an order, when its log already says so."""
        try:
            log = self.worker.log_path.read_text(errors="replace")
        except OSError:
            return None
        if "Ignoring missing topic" in log:
            return (f"{self.label} started without a changelog topic: Faust's partition assignor logged "
                    "'Ignoring missing topic' for a topic it had just created")
        return None


class BareTarget:
    """The bare aiokafka loop (or a chain of them, one per hop), on topics it does not create itself."""

    def __init__(self, loop: BareLoop | list[BareLoop], prefix: str, label: str, partitions: int,
                 topics: tuple[str, ...] = ("commands", "executions")):
        self.loops = loop if isinstance(loop, list) else [loop]
        self.prefix, self.label, self.partitions = prefix, label, partitions
        self.topics = [f"{prefix}.{t}" for t in topics]

    def start(self) -> None:
        for loop in self.loops:
            loop.spawn()
        for loop in self.loops:
            loop.wait_ready(timeout=START_TIMEOUT)

    def stop(self) -> None:
        for loop in self.loops:
            loop.stop()

    def pid(self) -> int | None:
        # One process per hop in a chain: its CPU is not one process's, so it is not metered.
        loop = self.loops[0]
        return loop.proc.pid if len(self.loops) == 1 and loop.proc else None

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(loop.tail(lines) for loop in self.loops)

    def start_problem(self) -> str | None:
        return None


@dataclass
class LatencyRun:
    """Orders sent open-loop at a fixed rate; latency from due time to the first execution report."""

    label: str
    via: str
    offered_rate: float
    measured: int
    answered: int
    elapsed_s: float
    latency: Percentiles | None
    max_send_lag_ms: float
    cpu_pct: dict[str, float | None]
    rejected: Counter = field(default_factory=Counter)
    http: Percentiles | None = None
    http_statuses: dict[str, int] = field(default_factory=dict)
    p50_first_quarter: float | None = None
    p50_last_quarter: float | None = None

    @property
    def achieved_rate(self) -> float:
        return self.answered / self.elapsed_s if self.elapsed_s > 0 else 0.0


@dataclass
class SaturationRun:
    """A backlog produced before the target starts, drained as fast as the target can."""

    label: str
    orders: int
    produce_s: float
    answered: int
    window_orders: int
    window_s: float
    cpu_s: dict[str, float | None]
    offsets: dict[str, int]
    records: dict[str, int]
    record_bytes: dict[str, int]
    internal: dict[str, int]
    kinds: dict[str, tuple[int, int]] = field(default_factory=dict)  # record kind -> (records, bytes)
    rejected: Counter = field(default_factory=Counter)

    @property
    def rate(self) -> float:
        return self.window_orders / self.window_s if self.window_s > 0 else 0.0

    def cpu_per_1000(self, name: str) -> float | None:
        seconds = self.cpu_s.get(name)
        return None if seconds is None or not self.window_orders else seconds / self.window_orders * 1000

    @property
    def ceiling(self) -> float | None:
        """Orders/s the target would drain with a core to itself, if CPU is what bounds it."""
        per_1000 = self.cpu_per_1000("target")
        return 1000 / per_1000 if per_1000 else None

    def markers(self, topic: str) -> int:
        """Offsets that hold no data record: transaction markers."""
        return self.offsets.get(topic, 0) - self.records.get(topic, 0)

    def cpu_pct(self, name: str) -> float | None:
        """CPU (or run-queue wait) of `name` over the drain window, in % of one core."""
        seconds = self.cpu_s.get(name)
        return None if seconds is None or self.window_s <= 0 else 100 * seconds / self.window_s

    @property
    def records_per_order(self) -> float:
        return sum(self.records.values()) / self.answered if self.answered else 0.0

    @property
    def bytes_per_order(self) -> float:
        return sum(self.record_bytes.values()) / self.answered if self.answered else 0.0

    @property
    def offsets_per_order(self) -> float:
        return sum(self.offsets.values()) / self.answered if self.answered else 0.0


async def _start(target: Target) -> None:
    try:
        await asyncio.to_thread(target.start)
    except (TimeoutError, RuntimeError) as err:
        raise StartFailed(f"{target.label} did not start: {str(err).splitlines()[0]}") from err


def _check_start(target: Target) -> Callable[[], None]:
    def check() -> None:
        problem = target.start_problem()
        if problem:
            raise StartFailed(problem)
    return check


async def _probe(target: Target, bootstrap: str, order: BenchOrder, timeout: float = 30.0,
                 status: str | None = None) -> None:
    """One order end to end, so the run starts on a target known to answer (and warmed up)."""
    tracker = Tracker(bootstrap, f"{target.prefix}.executions", order.tag, 1, status=status)
    await tracker.start(from_end=True)
    try:
        await produce_all(bootstrap, f"{target.prefix}.commands", [order])
        if not await tracker.wait_for(1, idle_timeout=timeout, check_start=_check_start(target)):
            raise StartFailed(f"{target.label} was ready but answered no order within {timeout:g} s")
    finally:
        await tracker.stop()


def _median_ms(latencies_ns: list[int]) -> float | None:
    return sorted(latencies_ns)[len(latencies_ns) // 2] / 1e6 if latencies_ns else None


def _meter(target: Target, broker_pid: int | None) -> CpuMeter:
    return CpuMeter({"target": target.pid, "broker": lambda: broker_pid, "bench": os.getpid})


async def latency_run(target: Target, bootstrap: str, broker_pid: int | None, orders: list[BenchOrder], rate: float,
                      warmup: int, via: str = "kafka", keys: dict[str, str] | None = None,
                      drain_timeout: float = 30.0, probe: BenchOrder | None = None,
                      status: str | None = None) -> LatencyRun:
    """Start the target, then send `orders` at `rate`; the first `warmup` orders are not measured.

    Latency runs to each order's first execution report, or to its first with `status` (e.g. FILLED).
    """
    if isinstance(target, BareTarget):
        await create_topics(bootstrap, target.topics, target.partitions)
    await _start(target)
    if probe is not None:
        await _probe(target, bootstrap, probe, status=status)
    tracker = Tracker(bootstrap, f"{target.prefix}.executions", orders[0].tag, len(orders), status=status)
    await tracker.start(from_end=True)
    schedule = Schedule(rate, len(orders))
    meter = _meter(target, broker_pid)
    bar = asyncio.create_task(progress_bar(f"{target.label} {via} {rate:g}/s", len(orders), tracker, lambda: schedule.sent))
    http_done: list[int] = []
    statuses: Counter = Counter()
    try:
        cpu_before, wall_before = meter.sample(), time.monotonic()
        if via == "http":
            outcome = await post_http(target.url, orders, keys or {}, schedule)
            http_done, statuses = outcome.done_ns, outcome.statuses + Counter({f"error {k}": v for k, v in outcome.errors.items()})
        else:
            await send_kafka(bootstrap, f"{target.prefix}.commands", orders, schedule)
        await tracker.wait_for(len(orders), idle_timeout=drain_timeout)
        cpu_after, wall = meter.sample(), time.monotonic() - wall_before
    finally:
        bar.cancel()
        await asyncio.gather(bar, return_exceptions=True)
        await tracker.stop()
    answered = sum(1 for n, t in enumerate(tracker.received_ns) if n >= warmup and t)
    last = max(tracker.received_ns[warmup:], default=0)
    latencies = schedule.latencies(tracker.received_ns, skip=warmup)  # in due order
    quarter = len(latencies) // 4
    return LatencyRun(
        label=target.label, via=via, offered_rate=rate, measured=len(orders) - warmup, answered=answered,
        elapsed_s=(last - schedule.due_ns(warmup)) / 1e9 if last else 0.0,
        latency=Percentiles.of(latencies),
        p50_first_quarter=_median_ms(latencies[:quarter]), p50_last_quarter=_median_ms(latencies[-quarter:]) if quarter else None,
        max_send_lag_ms=schedule.max_lag_ns / 1e6,
        cpu_pct={k: None if v is None else 100 * v / wall for k, v in CpuMeter.delta(cpu_before, cpu_after).items()},
        rejected=tracker.reject_reasons,
        http=Percentiles.of(schedule.latencies(http_done, skip=warmup)) if via == "http" else None,
        http_statuses={str(k): v for k, v in sorted(statuses.items(), key=str)},
    )


async def saturation_run(target: Target, bootstrap: str, broker_pid: int | None, orders: list[BenchOrder],
                         settle_s: float, start_timeout: float = 2 * START_TIMEOUT,
                         drain_timeout: float = 60.0, status: str | None = None,
                         profile: Path | None = None) -> SaturationRun:
    """Produce every order first, then start the target and time it from its first report to its last.

    With `profile`, py-spy samples the target over the same window and writes its stacks there.
    """
    prefix = target.prefix
    mine = lambda topic: topic.startswith(f"{prefix}.") or topic.startswith(f"{prefix}-")  # noqa: E731
    ours = lambda topic: mine(topic) or topic in INTERNAL_TOPICS  # noqa: E731
    # 1. the backlog, on topics created the way the worker would create them
    topics = target.topics if isinstance(target, BareTarget) else [f"{prefix}.commands", f"{prefix}.executions"]
    await create_topics(bootstrap, topics, target.partitions)
    produce_s = await produce_all(bootstrap, f"{prefix}.commands", orders)
    before = await high_watermarks(bootstrap, ours)
    # 2. the target starts and drains it; the window opens at its first report
    meter = _meter(target, broker_pid)
    cpu_first: dict[str, float | None] = {}
    profiler: Profiler | None = None

    def window_opens() -> None:
        nonlocal profiler
        cpu_first.update(meter.sample())
        if profile is not None and (pid := target.pid()) is not None:
            profiler = Profiler(pid, profile)
            profiler.start()

    tracker = Tracker(bootstrap, f"{prefix}.executions", orders[0].tag, len(orders),
                      on_first_report=window_opens, status=status)
    await tracker.start(from_end=False)
    bar = asyncio.create_task(progress_bar(f"{target.label} saturation", len(orders), tracker, lambda: len(orders)))
    starting = asyncio.create_task(_start(target))
    try:
        complete = await tracker.wait_for(len(orders), idle_timeout=drain_timeout, first_timeout=start_timeout,
                                          check_start=_check_start(target))
        cpu_last = meter.sample()
        if profiler is not None:
            await profiler.stop()
        await starting
        if tracker.first_ns is None:
            raise StartFailed(f"{target.label} was ready but answered no order within {start_timeout:g} s")
    finally:
        bar.cancel()
        await asyncio.gather(bar, return_exceptions=True)
        await tracker.stop()
        if not starting.done():
            await asyncio.gather(starting, return_exceptions=True)
    if not complete:
        raise RuntimeError(f"only {tracker.seen} of {len(orders)} orders got a report:\n{target.log_tail()}")
    # 3. what it wrote, once its last writes and offset commits have landed
    await asyncio.sleep(settle_s)
    after = await high_watermarks(bootstrap, ours)
    mine_before = {tp: o for tp, o in before.items() if mine(tp.topic)}
    mine_after = {tp: o for tp, o in after.items() if mine(tp.topic)}
    offsets = {t: n - per_topic(mine_before).get(t, 0) for t, n in per_topic(mine_after).items()}
    internal = {t: n - per_topic(before).get(t, 0) for t, n in per_topic(after).items() if t in INTERNAL_TOPICS}
    kinds: dict[str, list[int]] = {}
    written = await count_records(bootstrap, mine_before, mine_after, kinds=kinds)
    return SaturationRun(
        label=target.label, orders=len(orders), produce_s=produce_s, answered=tracker.seen,
        window_orders=tracker.seen - tracker.first_batch, window_s=(tracker.last_ns - tracker.first_ns) / 1e9,
        cpu_s=CpuMeter.delta(cpu_first, cpu_last), offsets={t: n for t, n in offsets.items() if n},
        records={t: n for t, (n, _) in written.items()}, record_bytes={t: b for t, (_, b) in written.items()},
        internal=internal, kinds={k[len(prefix):].lstrip(".-"): (n, b) for k, (n, b) in kinds.items()},
        rejected=tracker.reject_reasons,
    )
