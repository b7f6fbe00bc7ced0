"""What a benchmark run stands on: the broker, the accounts file, the processes under test, Kafka offsets."""
from __future__ import annotations

import asyncio
import hashlib
import json
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import psutil
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from atlas.infra.kafka.broker import BrokerError, LocalBroker, free_port
from atlas.launch import WorkerProcess
from atlas.runtime.kafka import sign_in_options

ROOT = Path(__file__).resolve().parent.parent
INTERNAL_TOPICS = ("__consumer_offsets", "__transaction_state")


def account_ids(count: int) -> list[str]:
    return [f"bench-{n:03d}" for n in range(count)]


def api_key(account_id: str) -> str:
    return f"{account_id}-key"


def write_accounts(path: Path, count: int) -> list[str]:
    """An accounts file of `count` bench accounts that no limit of ours will stop; returns their ids."""
    accounts = account_ids(count)
    held, cap = "1000000", "1000000000000"  # the position cap counts holdings plus open buys
    doc = {"accounts": [{
        "account_id": account, "api_key_sha256": hashlib.sha256(api_key(account).encode()).hexdigest(),
        "role": "trader", "balances": {"USD": "1000000000000", "BTC": held, "ETH": held, "SOL": held},
        "limits": {
            "max_order_notional": cap, "max_order_quantity": {"BTC-USD": "100"},
            "max_position": {"BTC": cap, "ETH": cap, "SOL": cap}, "price_collar_bps": 1000,
            "max_orders_per_second": 1_000_000, "max_open_orders": 100_000, "restricted_symbols": [],
        },
    } for account in accounts]}
    path.write_text(json.dumps(doc, indent=2))
    return accounts


def start_broker(data_dir: Path, attempts: int = 4) -> tuple[LocalBroker, int]:
    """A fresh local broker; returns it and how many starts it took.

    LocalBroker picks a random urlsafe-base64 cluster id, and one that starts with "-" is
    read by kafka-storage as an option (about 1 start in 64 fails so): then wipe and retry.
    """
    for attempt in range(1, attempts + 1):
        broker = LocalBroker(data_dir, port=free_port())
        try:
            broker.start()
            return broker, attempt
        except BrokerError as err:
            broker.wipe()
            if "--cluster-id" not in str(err) or attempt == attempts:
                raise
    raise AssertionError("unreachable")


def stop_process(proc: subprocess.Popen | None, timeout: float = 30.0) -> None:
    """SIGTERM, then SIGKILL after `timeout`; reaps the child."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@dataclass
class WorkerSpec:
    """How to run one ATLAS worker for one scenario."""

    bootstrap: str
    app_id: str
    guarantee: str
    accounts_file: Path
    root: Path
    commit_interval: float | None = None
    linger_ms: int | None = None
    venue: bool = False
    # The audit exporter: off in the order-flow runs (their figures stay comparable across
    # sessions); bench.audit turns it on, with a sink and its settings in `extra`.
    audit: bool = False
    extra: tuple[tuple[str, str], ...] = ()

    def env(self) -> dict[str, str]:
        env = {
            "ATLAS_KAFKA_BOOTSTRAP": self.bootstrap, "ATLAS_APP_ID": self.app_id, "ATLAS_TOPIC_PREFIX": self.app_id,
            "ATLAS_ACCOUNTS_FILE": str(self.accounts_file), "ATLAS_DATA_DIR": str(self.root / self.app_id),
            "ATLAS_WEB_PORT": str(free_port()), "ATLAS_PROCESSING_GUARANTEE": self.guarantee, "ATLAS_DEMO_MODE": "true",
            # Without the venue the OMS runs alone: nothing answers its venue requests.
            "ATLAS_VENUE_ENABLED": "true" if self.venue else "false",
            "ATLAS_AUDIT_ENABLED": "true" if self.audit else "false",
            "ATLAS_AUDIT_SINK": f"file://{self.root / self.app_id}-trail", **dict(self.extra),
        }
        if self.commit_interval is not None:
            env["ATLAS_COMMIT_INTERVAL"] = str(self.commit_interval)
        if self.linger_ms is not None:
            env["ATLAS_PRODUCER_LINGER_MS"] = str(self.linger_ms)
        return env

    def process(self) -> WorkerProcess:
        return WorkerProcess(self.env(), self.root / f"{self.app_id}.log", self.app_id)


class BareLoop:
    """`python -m bench.bare` in its own process: the consume→parse→produce baseline."""

    def __init__(self, bootstrap: str, prefix: str, root: Path, commit_interval: float, linger_ms: int, *,
                 source: str = "commands", sink: str = "executions", status: str = "PENDING_NEW", name: str = ""):
        self.root = root
        self.log_path = root / f"{prefix}{name}.log"
        self.ready_file = root / f"{prefix}{name}.ready"
        self.args = [sys.executable, "-m", "bench.bare", "--bootstrap", bootstrap,
                     "--source", f"{prefix}.{source}", "--sink", f"{prefix}.{sink}", "--group", f"{prefix}{name}",
                     "--commit-interval", str(commit_interval), "--linger-ms", str(linger_ms),
                     "--ready-file", str(self.ready_file), "--status", status]
        self.proc: subprocess.Popen | None = None

    def spawn(self) -> "BareLoop":
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready_file.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"bare loop exited with {self.proc.returncode}:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"bare loop not ready after {timeout}s:\n{self.tail()}")
            time.sleep(0.1)

    def stop(self) -> None:
        stop_process(self.proc)

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class CpuMeter:
    """CPU seconds of named processes (psutil user+system) and of the whole machine.

    Also the seconds their threads sat runnable but waiting for a CPU (/proc schedstat): on a
    shared machine that is how much other tenants slowed them down.
    """

    def __init__(self, pids: dict[str, Callable[[], int | None]]):
        self.pids = pids

    def sample(self) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for name, pid_of in self.pids.items():
            pid = pid_of()
            try:
                times = psutil.Process(pid).cpu_times() if pid else None
            except psutil.Error:
                times = None
            out[name] = None if times is None else times.user + times.system
            out[f"{name} wait"] = _runqueue_wait(pid) if pid else None
        busy = psutil.cpu_times()
        out["machine"] = busy.user + busy.nice + busy.system + busy.irq + busy.softirq + busy.steal
        return out

    @staticmethod
    def delta(before: dict[str, float | None], after: dict[str, float | None]) -> dict[str, float | None]:
        """After minus before, plus `others`: machine CPU not used by the named processes."""
        out = {name: (None if before.get(name) is None or after[name] is None else after[name] - before[name])
               for name in after}
        mine = [out.get(name) for name in out if not name.endswith(" wait") and name != "machine"]
        # Machine-wide and per-process counters are sampled apart and do not add up exactly: a
        # difference below zero means "nothing measurable", not negative use.
        out["others"] = None if out.get("machine") is None else max(0.0, out["machine"] - sum(v for v in mine if v))
        return out


def _runqueue_wait(pid: int) -> float | None:
    """Seconds the process's threads have spent runnable on a run queue, not running."""
    total = 0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                total += int((task / "schedstat").read_text().split()[1])
            except (OSError, IndexError, ValueError):
                continue  # a thread that just ended
    except OSError:
        return None
    return total / 1e9


# -- Kafka ---------------------------------------------------------------------------


async def create_topics(bootstrap: str, names: list[str], partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **sign_in_options(), client_id="atlas-bench-admin")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [NewTopic(name, partitions, 1) for name in names if name not in existing]
        if wanted:
            try:
                await admin.create_topics(wanted)
            except TopicAlreadyExistsError:
                pass
    finally:
        await admin.close()
    await wait_for_topics(bootstrap, names)


async def _cluster(consumer: AIOKafkaConsumer):
    """Fresh metadata of every topic (the consumer's own only tracks topics it reads)."""
    return await consumer._client.fetch_all_metadata()


async def wait_for_topics(bootstrap: str, names: list[str], timeout: float = 30.0) -> None:
    """Wait until every partition of the topics has a leader (it takes a moment after creation)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, **sign_in_options())
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout
        while True:
            cluster = await _cluster(consumer)
            waiting = [name for name in names if not cluster.partitions_for_topic(name) or any(
                cluster.leader_for_partition(TopicPartition(name, p)) in (None, -1)
                for p in cluster.partitions_for_topic(name))]
            if not waiting:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"topics without leaders after {timeout}s: {waiting}")
            await asyncio.sleep(0.2)
    finally:
        await consumer.stop()


async def high_watermarks(bootstrap: str, wanted: Callable[[str], bool]) -> dict[TopicPartition, int]:
    """End offsets (high watermarks, so transaction markers included) of every partition of the wanted topics."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, **sign_in_options(), isolation_level="read_uncommitted")
    await consumer.start()
    try:
        cluster = await _cluster(consumer)
        partitions = [TopicPartition(t, p) for t in cluster.topics(exclude_internal_topics=False) if wanted(t)
                      for p in cluster.partitions_for_topic(t) or ()]
        return await consumer.end_offsets(partitions) if partitions else {}
    finally:
        await consumer.stop()


def record_kind(topic: str, key: bytes | None) -> str:
    """What a record is, for the census: a changelog record by its key's prefix (`a/`, `o/`, ...), others by topic."""
    if topic.endswith("-changelog") and key:
        text = key.decode(errors="replace").strip('"')
        return f"{topic} {text[:2]}" if text[1:2] == "/" else topic
    return topic


async def count_records(bootstrap: str, before: dict[TopicPartition, int], after: dict[TopicPartition, int],
                        timeout: float = 120.0,
                        kinds: dict[str, list[int]] | None = None) -> dict[str, tuple[int, int]]:
    """Data records and their key+value bytes between two offset snapshots, per topic.

    Transaction markers are not records; data of aborted transactions is (it was written).
    With `kinds`, also counts them by `record_kind` there: kind -> [records, bytes].
    """
    ranges = {tp: (before.get(tp, 0), end) for tp, end in after.items() if end > before.get(tp, 0)}
    counts: dict[str, int] = {tp.topic: 0 for tp in ranges}
    sizes: dict[str, int] = {tp.topic: 0 for tp in ranges}
    if not ranges:
        return {}
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, **sign_in_options(), isolation_level="read_uncommitted",
                                enable_auto_commit=False, max_partition_fetch_bytes=4 << 20)
    await consumer.start()
    try:
        consumer.assign(list(ranges))
        for tp, (start, _) in ranges.items():
            consumer.seek(tp, start)
        deadline = time.monotonic() + timeout
        open_tps = set(ranges)
        while open_tps and time.monotonic() < deadline:
            batch = await consumer.getmany(*open_tps, timeout_ms=200, max_records=10_000)
            for tp, records in batch.items():
                for record in records:
                    if record.offset < ranges[tp][1]:
                        size = len(record.key or b"") + len(record.value or b"")
                        counts[tp.topic] += 1
                        sizes[tp.topic] += size
                        if kinds is not None:
                            tally = kinds.setdefault(record_kind(tp.topic, record.key), [0, 0])
                            tally[0] += 1
                            tally[1] += size
            for tp in list(open_tps):
                if await consumer.position(tp) >= ranges[tp][1]:
                    open_tps.discard(tp)
        if open_tps:
            raise TimeoutError(f"could not read to the end of {sorted(str(tp) for tp in open_tps)}")
    finally:
        await consumer.stop()
    return {topic: (counts[topic], sizes[topic]) for topic in counts}


def per_topic(offsets: dict[TopicPartition, int]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for tp, offset in offsets.items():
        totals[tp.topic] = totals.get(tp.topic, 0) + offset
    return totals


async def warm_broker(bootstrap: str, payloads: list[tuple[bytes, bytes]], topic: str = "bench-warmup") -> None:
    """Push messages through the broker and read them back, so its JIT warm-up is not in the first scenario."""
    await create_topics(bootstrap, [topic], 8)
    before = await high_watermarks(bootstrap, lambda t: t == topic)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **sign_in_options(), acks="all", linger_ms=5)
    await producer.start()
    try:
        for key, value in payloads:
            await producer.send(topic, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()
    await count_records(bootstrap, before, await high_watermarks(bootstrap, lambda t: t == topic))
