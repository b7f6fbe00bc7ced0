"""Open-loop order load and the execution reports that answer it.

Every order has a scheduled send time `t0 + i / rate`; latency runs from that time, not from
when the send really happened, so a sender that falls behind shows up as latency instead of
quietly sending less (coordinated omission).
"""
from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Awaitable, Callable

import aiohttp
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from atlas.runtime.kafka import sign_in_options
from hdrh.histogram import HdrHistogram
from tqdm import tqdm

REFERENCE_CENTS = 6_500_000   # BTC-USD reference price 65000.00, in ticks of 0.01
PRICE_SPREAD_CENTS = 325_000  # ±5%: well inside the ±10% collar
MAX_LOTS = 100                # quantity 0.0001 .. 0.0100 BTC, in lots of 0.0001
HIGHEST_US = 3_600_000_000    # an hour: anything slower is clamped


@dataclass(frozen=True)
class BenchOrder:
    """The terms of one benchmark order (decimals already as wire strings)."""

    account_id: str
    client_order_id: str
    side: str
    quantity: str
    price: str

    @property
    def tag(self) -> str:
        """The run tag of the client order id `<tag>-<n>`."""
        return self.client_order_id.rsplit("-", 1)[0]

    def terms(self) -> dict:
        return {"client_order_id": self.client_order_id, "symbol": "BTC-USD", "side": self.side, "type": "LIMIT",
                "quantity": self.quantity, "price": self.price, "time_in_force": "GTC"}

    def command(self) -> bytes:
        """The SubmitOrder command as the OMS reads it from `<prefix>.commands`."""
        return json.dumps({"command": "SubmitOrder", "command_id": f"bench-{self.client_order_id}",
                           "account_id": self.account_id, **self.terms()}).encode()

    def http_body(self) -> bytes:
        return json.dumps(self.terms()).encode()


def make_orders(tag: str, count: int, accounts: list[str], seed: int = 7) -> list[BenchOrder]:
    """`count` limit orders on BTC-USD, round-robin over the accounts, client order ids `<tag>-<n>`."""
    rng = random.Random(seed)
    orders = []
    for n in range(count):
        cents = REFERENCE_CENTS + rng.randint(-PRICE_SPREAD_CENTS, PRICE_SPREAD_CENTS)
        lots = rng.randint(1, MAX_LOTS)
        orders.append(BenchOrder(account_id=accounts[n % len(accounts)], client_order_id=f"{tag}-{n}",
                                 side=rng.choice(("BUY", "SELL")), quantity=f"0.{lots:04d}",
                                 price=f"{cents // 100}.{cents % 100:02d}"))
    return orders


def make_marketable_orders(tag: str, count: int, accounts: list[str], seed: int = 7) -> list[BenchOrder]:
    """`count` small BTC-USD orders priced 2% through the reference, so the venue's maker fills them at once."""
    rng = random.Random(seed)
    orders = []
    for n in range(count):
        side = rng.choice(("BUY", "SELL"))
        cents = REFERENCE_CENTS * (102 if side == "BUY" else 98) // 100
        orders.append(BenchOrder(account_id=accounts[n % len(accounts)], client_order_id=f"{tag}-{n}", side=side,
                                 quantity=f"0.{rng.randint(1, 10):04d}", price=f"{cents // 100}.{cents % 100:02d}"))
    return orders


@dataclass(frozen=True)
class Percentiles:
    """Latency percentiles in milliseconds, from an HdrHistogram in microseconds."""

    count: int
    p50: float
    p99: float
    p999: float
    max: float
    mean: float

    @classmethod
    def of(cls, latencies_ns: list[int]) -> "Percentiles | None":
        if not latencies_ns:
            return None
        hist = HdrHistogram(1, HIGHEST_US, 3)
        for ns in latencies_ns:
            hist.record_value(min(HIGHEST_US, max(1, ns // 1000)))
        ms = lambda us: us / 1000  # noqa: E731
        return cls(hist.get_total_count(), ms(hist.get_value_at_percentile(50)), ms(hist.get_value_at_percentile(99)),
                   ms(hist.get_value_at_percentile(99.9)), ms(hist.get_max_value()), ms(hist.get_mean_value()))


@dataclass
class Tracker:
    """Reads `<prefix>.executions` and notes when the first report of each benchmark order arrived."""

    bootstrap: str
    topic: str
    tag: str
    count: int
    on_first_report: Callable[[], None] | None = None
    # Count only reports with this status (e.g. FILLED); None: an order's first report of any kind.
    status: str | None = None
    received_ns: list[int] = field(init=False)
    first_ns: int | None = None
    first_batch: int = 0
    last_ns: int | None = None
    seen: int = 0
    reject_reasons: Counter = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.received_ns = [0] * self.count
        self._prefix = f"{self.tag}-"
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task | None = None
        self._progress = asyncio.Event()

    async def start(self, from_end: bool = True) -> None:
        """Assign every partition and start at the end (or the beginning) before anything is sent."""
        self._consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, **sign_in_options(), isolation_level="read_committed",
                                          enable_auto_commit=False, fetch_max_wait_ms=100)
        await self._consumer.start()
        await self._consumer._client.force_metadata_update()
        partitions = [TopicPartition(self.topic, p) for p in sorted(self._consumer.partitions_for_topic(self.topic) or ())]
        if not partitions:
            raise RuntimeError(f"topic {self.topic} does not exist")
        self._consumer.assign(partitions)
        starts = await (self._consumer.end_offsets(partitions) if from_end else self._consumer.beginning_offsets(partitions))
        for tp, offset in starts.items():
            self._consumer.seek(tp, offset)
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            batch = await self._consumer.getmany(timeout_ms=100, max_records=5_000)
            now = time.monotonic_ns()
            before = self.seen
            for records in batch.values():
                for record in records:
                    self._note(json.loads(record.value), now)
            if self.seen > before:
                if self.first_ns is None:
                    self.first_ns, self.first_batch = now, self.seen
                    if self.on_first_report is not None:
                        self.on_first_report()
                self.last_ns = now
                self._progress.set()

    def _note(self, report: dict, now: int) -> None:
        client_order_id = report.get("client_order_id") or ""
        suffix = client_order_id[len(self._prefix):]
        if not client_order_id.startswith(self._prefix) or not suffix.isdigit():
            return
        n = int(suffix)
        if n >= self.count or self.received_ns[n]:
            return
        if self.status is not None and report.get("status") != self.status:
            return
        self.received_ns[n] = now
        self.seen += 1
        if report.get("exec_type") == "REJECTED":
            self.reject_reasons[(report.get("reason") or "?").split(":")[0]] += 1

    async def wait_for(self, expected: int, idle_timeout: float, first_timeout: float | None = None,
                       check_start: Callable[[], None] | None = None) -> bool:
        """Wait until `expected` orders have a report; False once nothing new came for `idle_timeout` s
        (`first_timeout` s before the first report). Until that first report, `check_start()` runs every
        second and may raise to give up early."""
        seen, changed = self.seen, time.monotonic()
        while self.seen < expected:
            if self._task.done():
                self._task.result()  # the consumer loop died: raise what killed it
                raise RuntimeError("the execution-report consumer stopped")
            if check_start is not None and self.first_ns is None:
                check_start()
            self._progress.clear()
            try:
                await asyncio.wait_for(self._progress.wait(), 1.0)
            except asyncio.TimeoutError:
                pass
            now = time.monotonic()
            if self.seen != seen:
                seen, changed = self.seen, now
            elif now - changed > (first_timeout if self.first_ns is None and first_timeout else idle_timeout):
                return self.seen >= expected
        return True

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._consumer is not None:
            await self._consumer.stop()


async def progress_bar(desc: str, total: int, tracker: Tracker, sent: Callable[[], int]) -> None:
    """A tqdm bar of reports received (sent orders in the postfix) until cancelled."""
    bar = tqdm(total=total, desc=desc, unit="ord", mininterval=0.5, leave=False, dynamic_ncols=True)
    try:
        while True:
            bar.update(min(total, tracker.seen) - bar.n)
            bar.set_postfix(sent=sent(), refresh=False)
            await asyncio.sleep(0.25)
    finally:
        bar.close()


@dataclass
class Schedule:
    """Open-loop send times: order n is due at `t0_ns + n * interval`."""

    rate: float
    count: int
    t0_ns: int = 0
    sent: int = 0
    max_lag_ns: int = 0

    def due_ns(self, n: int) -> int:
        return self.t0_ns + int(n * 1e9 / self.rate)

    async def run(self, send: Callable[[int], Awaitable[None]]) -> None:
        """Call `send(n)` for each order at (or, when behind, as soon as possible after) its due time."""
        self.t0_ns = time.monotonic_ns()
        while self.sent < self.count:
            now = time.monotonic_ns()
            while self.sent < self.count and self.due_ns(self.sent) <= now:
                await send(self.sent)
                self.max_lag_ns = max(self.max_lag_ns, time.monotonic_ns() - self.due_ns(self.sent))
                self.sent += 1
            if self.sent < self.count:
                await asyncio.sleep(max(0.0, (self.due_ns(self.sent) - time.monotonic_ns()) / 1e9))

    def latencies(self, done_ns: list[int], skip: int = 0) -> list[int]:
        """Due time → `done_ns[n]` for every order from `skip` on that got an answer."""
        return [done - self.due_ns(n) for n, done in enumerate(done_ns) if n >= skip and done]


def command_producer(bootstrap: str, linger_ms: int = 0) -> AIOKafkaProducer:
    """A client's producer: acks from all replicas, like the gateway's."""
    return AIOKafkaProducer(bootstrap_servers=bootstrap, **sign_in_options(), acks="all", linger_ms=linger_ms,
                            max_batch_size=256 * 1024 if linger_ms else 16 * 1024)


async def send_kafka(bootstrap: str, topic: str, orders: list[BenchOrder], schedule: Schedule) -> None:
    """Produce each order's SubmitOrder on schedule (key = account id), without waiting for acks in between."""
    payloads = [(o.account_id.encode(), o.command()) for o in orders]
    producer = command_producer(bootstrap)
    await producer.start()
    try:
        async def send(n: int) -> None:
            key, value = payloads[n]
            await producer.send(topic, value, key=key)  # enqueues; the ack is not awaited (open loop)

        await schedule.run(send)
        await producer.flush()
    finally:
        await producer.stop()


async def produce_all(bootstrap: str, topic: str, orders: list[BenchOrder]) -> float:
    """Produce every order as fast as the client can (batched); returns the seconds it took."""
    payloads = [(o.account_id.encode(), o.command()) for o in orders]
    producer = command_producer(bootstrap, linger_ms=20)
    await producer.start()
    try:
        started = time.monotonic()
        for key, value in payloads:
            await producer.send(topic, value, key=key)
        await producer.flush()
        return time.monotonic() - started
    finally:
        await producer.stop()


@dataclass
class HttpOutcome:
    done_ns: list[int]
    statuses: Counter
    errors: Counter


async def post_http(base_url: str, orders: list[BenchOrder], keys: dict[str, str], schedule: Schedule,
                    concurrency: int = 64) -> HttpOutcome:
    """POST each order to `/api/v1/orders` on schedule, at most `concurrency` requests in flight."""
    outcome = HttpOutcome([0] * len(orders), Counter(), Counter())
    bodies = [o.http_body() for o in orders]
    url = f"{base_url}/api/v1/orders"
    slots = asyncio.Semaphore(concurrency)
    tasks: set[asyncio.Task] = set()
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        async def post(n: int) -> None:
            headers = {"X-API-Key": keys[orders[n].account_id], "Content-Type": "application/json"}
            async with slots:
                try:
                    async with session.post(url, data=bodies[n], headers=headers) as response:
                        await response.read()
                        outcome.statuses[response.status] += 1
                except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                    outcome.errors[type(exc).__name__] += 1
                    return
            outcome.done_ns[n] = time.monotonic_ns()

        async def send(n: int) -> None:
            task = asyncio.create_task(post(n))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        await schedule.run(send)
        if tasks:
            await asyncio.gather(*tasks)
    return outcome
