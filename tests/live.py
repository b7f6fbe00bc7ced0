"""Helpers for tests against the live broker: a worker cluster, an HTTP client, a Kafka tool."""
from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from decimal import Decimal as D
from pathlib import Path
from typing import Any, Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from atlas.core.values import order_id_for
from atlas.infra.kafka.broker import free_port
from atlas.launch import WorkerProcess

ROOT = Path(__file__).resolve().parents[1]
DEMO_KEYS = {"alice": "alice-demo-key", "bob": "bob-demo-key", "admin": "admin-demo-key"}


def write_accounts(path: Path, traders: int = 40) -> dict[str, str]:
    """The demo accounts plus `trader-NN` accounts (key `trader-NN-key`); returns account -> clear key."""
    doc = json.loads((ROOT / "config" / "accounts.demo.json").read_text())
    limits = doc["accounts"][0]["limits"]
    keys = dict(DEMO_KEYS)
    for n in range(traders):
        account = f"trader-{n:02d}"
        keys[account] = f"{account}-key"
        doc["accounts"].append({
            "account_id": account, "api_key_sha256": hashlib.sha256(keys[account].encode()).hexdigest(),
            "role": "trader", "balances": {"USD": "1000000", "BTC": "10", "ETH": "100", "SOL": "1000"},
            "limits": {**limits, "max_orders_per_second": 1000},
        })
    path.write_text(json.dumps(doc, indent=2))
    return keys


@dataclass
class Cluster:
    """ATLAS workers sharing one app id, topic prefix and accounts file on the test broker."""

    bootstrap: str
    root: Path
    app_id: str
    guarantee: str = "at_least_once"
    # Off for the tests that play the venue themselves on `venue.orders`.
    venue: bool = False
    # Off except for the audit tests: an exporter per test worker would only cost CPU.
    audit: bool = False
    audit_sink: str | None = None  # by default a folder in `root`
    audit_max_age: float = 1.0
    extra_env: dict[str, str] | None = None  # e.g. the AWS settings of an S3 sink
    # How the test's own clients sign in (aiokafka options), when the broker wants it; the workers
    # get theirs as ATLAS_KAFKA_* settings in `extra_env`.
    kafka_auth: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        self.accounts_file = self.root / "accounts.json"
        self.audit_sink = self.audit_sink or f"file://{self.root / 'audit'}"
        self.keys = write_accounts(self.accounts_file)
        self.workers: list[WorkerProcess] = []

    def env(self, name: str, port: int) -> dict[str, str]:
        return {
            "ATLAS_KAFKA_BOOTSTRAP": self.bootstrap, "ATLAS_APP_ID": self.app_id, "ATLAS_TOPIC_PREFIX": self.app_id,
            "ATLAS_DATA_DIR": str(self.root / name), "ATLAS_WEB_PORT": str(port),
            "ATLAS_PROCESSING_GUARANTEE": self.guarantee, "ATLAS_ACCOUNTS_FILE": str(self.accounts_file),
            "ATLAS_DEMO_MODE": "true",  # the test accounts carry demo keys (unsalted digests)
            "ATLAS_COMMIT_INTERVAL": "0.5", "ATLAS_VENUE_ENABLED": "true" if self.venue else "false",
            "ATLAS_AUDIT_ENABLED": "true" if self.audit else "false", "ATLAS_AUDIT_SINK": self.audit_sink,
            "ATLAS_AUDIT_MAX_AGE": str(self.audit_max_age), **(self.extra_env or {}),
        }

    def start_worker(self, name: str | None = None, port: int | None = None) -> WorkerProcess:
        name = name or f"w{len(self.workers)}"
        worker = WorkerProcess(self.env(name, port or free_port()), self.root / f"{name}.log", name)
        self.workers.append(worker)
        return worker.start()

    def topic(self, name: str) -> str:
        return f"{self.app_id}.{name}"

    @property
    def kafka(self) -> dict[str, Any]:
        """aiokafka options of the test's own clients: the broker and how to sign in."""
        return {"bootstrap_servers": [self.bootstrap], **(self.kafka_auth or {})}

    def trader(self, n: int) -> "Api":
        """A client for account `trader-NN` on the first worker."""
        api = Api(self.workers[0].url, self.keys[f"trader-{n:02d}"])
        api.account_id = f"trader-{n:02d}"
        return api

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: Any

    @property
    def json(self) -> Any:
        return self.body


class Api:
    """A small synchronous HTTP client for the gateway."""

    def __init__(self, base_url: str, key: str | None = None, tls: ssl.SSLContext | None = None):
        self.base_url, self.key, self.tls = base_url, key, tls

    def as_key(self, key: str | None) -> "Api":
        return Api(self.base_url, key, self.tls)

    def request(self, method: str, path: str, body: Any = None, *, raw: bytes | None = None,
                headers: dict[str, str] | None = None) -> Response:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        request = urllib.request.Request(self.base_url + path, data=data, method=method)
        if self.key:
            request.add_header("X-API-Key", self.key)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=30, context=self.tls) as response:
                return _response(response.status, response.headers, response.read())
        except urllib.error.HTTPError as error:
            return _response(error.code, error.headers, error.read())

    def get(self, path: str, **kw) -> Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw) -> Response:
        return self.request("POST", path, body, **kw)

    def order(self, **overrides) -> Response:
        """Place an order (BTC-USD BUY LIMIT 0.01 @ 64000 unless overridden)."""
        body = {"client_order_id": f"t-{uuid.uuid4().hex[:16]}", "symbol": "BTC-USD", "side": "BUY",
                "type": "LIMIT", "quantity": "0.01", "price": "64000.00", "time_in_force": "GTC", **overrides}
        return self.post("/api/v1/orders", body)

    def all_orders(self, query: str = "") -> Response:
        """`GET /api/v1/orders?<query>` page after page: one response whose `orders` holds every page's
        (or the first response that was not a 200)."""
        orders: list = []
        cursor = None
        while True:
            response = self.get(f"/api/v1/orders?limit=1000{'&' + query if query else ''}"
                                + (f"&cursor={cursor}" if cursor else ""))
            if response.status != 200:
                return response
            orders.extend(response.body["orders"])
            cursor = response.body["next_cursor"]
            if cursor is None:
                return Response(200, response.headers, {"orders": orders, "next_cursor": None})

    def wait_for(self, path: str, predicate: Callable[[Any], bool], timeout: float = 20.0) -> Any:
        """GET `path` until `predicate(json)` holds; returns that json."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = self.get(path)
            if last.status == 200 and predicate(last.body):
                return last.body
            time.sleep(0.1)
        raise AssertionError(f"GET {path} never satisfied the condition; last: {last}")


def mid(api: Api, symbol: str = "BTC-USD") -> D:
    """The venue's current mid of a symbol, through the API (once it has one)."""
    return D(api.wait_for(f"/api/v1/marketdata/{symbol}", lambda b: b.get("mid") is not None)["mid"])


def _response(status: int, headers: Any, payload: bytes) -> Response:
    try:
        body = json.loads(payload) if payload else None
    except ValueError:
        body = payload.decode(errors="replace")
    return Response(status, {k.lower(): v for k, v in headers.items()}, body)


class Kafka:
    """Produce and consume raw messages on the test broker."""

    def __init__(self, bootstrap: str, **auth: Any):
        self.bootstrap = bootstrap
        self.auth = auth  # aiokafka sign-in options (security_protocol, sasl_*, ssl_context)

    def produce(self, topic: str, messages: list[tuple[bytes | None, bytes]], partition: int | None = None,
                headers: list[tuple[str, bytes]] | None = None) -> None:
        async def run() -> None:
            producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all", **self.auth)
            await producer.start()
            try:
                for key, value in messages:
                    await producer.send_and_wait(topic, value, key=key, partition=partition, headers=headers)
            finally:
                await producer.stop()

        asyncio.run(run())

    def consume(self, topic: str, until: Callable[[list[dict]], bool], timeout: float = 20.0) -> list[dict]:
        """Read `topic` from the start until `until(records)` holds; records are dicts with key/value/partition."""
        async def run() -> list[dict]:
            consumer = AIOKafkaConsumer(topic, bootstrap_servers=self.bootstrap, auto_offset_reset="earliest",
                                        enable_auto_commit=False, group_id=None, isolation_level="read_committed",
                                        **self.auth)
            await consumer.start()
            records: list[dict] = []
            try:
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline:
                    batch = await consumer.getmany(timeout_ms=200)
                    for messages in batch.values():
                        for m in messages:
                            records.append({"key": m.key, "value": _maybe_json(m.value), "partition": m.partition,
                                            "offset": m.offset, "headers": dict(m.headers or ())})
                    if until(records):
                        return records
                raise AssertionError(f"{topic}: condition not met after {timeout}s with {len(records)} records")
            finally:
                await consumer.stop()

        return asyncio.run(run())


def _maybe_json(value: bytes) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value.decode(errors="replace")


async def send_commands(producer: AIOKafkaProducer, topic: str, commands: list[dict], per_pause: int) -> None:
    """Produce commands keyed by account, pausing 50 ms after every `per_pause` of them (a steady rate); raises if
    one was not delivered."""
    deliveries = []
    for n, cmd in enumerate(commands):
        deliveries.append(await producer.send(topic, json.dumps(cmd).encode(), key=cmd["account_id"].encode()))
        if n % per_pause == 0:
            await asyncio.sleep(0.05)
    await producer.flush()
    await asyncio.gather(*deliveries)


async def kill_and_restart(worker: WorkerProcess, after: float) -> None:
    """SIGKILL the worker `after` seconds from now, and start it again a second later."""
    loop = asyncio.get_running_loop()
    await asyncio.sleep(after)
    await loop.run_in_executor(None, worker.kill, signal.SIGKILL)
    await asyncio.sleep(1.0)
    await loop.run_in_executor(None, worker.start)


def audit_cli(cluster: Cluster, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run `python -m atlas audit ARGS` configured like the cluster's workers; returns the finished process."""
    env = {**os.environ, **cluster.env("cli", 1)}
    return subprocess.run([sys.executable, "-m", "atlas", "audit", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def wait_exported(cluster: Cluster, topics: tuple[str, ...], timeout: float = 60.0) -> None:
    """Wait until the exporter has committed every record the given topics hold now (the trail has them all)."""
    from atlas.audit.broker import broker_views

    wanted = {cluster.topic(t) for t in topics}
    deadline = time.monotonic() + timeout
    while True:
        views = asyncio.run(broker_views(cluster.kafka, cluster.app_id, f"{cluster.app_id}-audit"))
        behind = {tp: v for tp, v in views.items() if tp[0] in wanted and (v.committed or 0) < v.head}
        if not behind:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"the exporter is behind after {timeout}s: {behind}")
        time.sleep(0.3)


async def current_mid(cluster: Cluster) -> D:
    consumer = AIOKafkaConsumer(cluster.topic("marketdata"), bootstrap_servers=cluster.bootstrap,
                                auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    doc = json.loads(record.value)
                    if doc.get("type") == "mid" and doc["symbol"] == "BTC-USD":
                        return D(doc["mid"])
        raise AssertionError("the venue published no mid")
    finally:
        await consumer.stop()


def settle(api: Api, account: str, commands: list[dict]) -> None:
    """Wait until every marketable order is FILLED and every resting one NEW."""
    wanted = {order_id_for(account, c["client_order_id"]): "FILLED" if c["client_order_id"].startswith("mkt") else "NEW"
              for c in commands}

    def behind(response: Response) -> list[str]:
        if response.status != 200:  # e.g. a 503 while the account's partition moves
            return [f"GET /api/v1/orders answered {response.status}: {response.body}"]
        status = {o["order_id"]: o["status"] for o in response.body["orders"]}
        return [f"{oid}: {status.get(oid, 'missing')} (want {want})" for oid, want in wanted.items()
                if status.get(oid) != want]

    deadline = time.monotonic() + 90
    while (late := behind(api.all_orders())) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not late, f"{account}: {len(late)} orders did not settle: {late[:5]}"


def trading_plan(mid: D, traders: list[str], rounds: int, rest_every: int, tag: str,
                 quantity: D = D("0.0010")) -> list[dict]:
    """Per round and trader a marketable BTC-USD order (2% through the mid), and every `rest_every`
    rounds a resting buy 5% under it; client order ids `mkt-<round>` and `rest-<round>`."""
    lift, hit, rest = [(mid * D(f)).quantize(D("0.01")) for f in ("1.02", "0.98", "0.95")]

    def submit(account: str, client_order_id: str, side: str, price: D) -> dict:
        return {"command": "SubmitOrder", "command_id": f"{tag}-{account}-{client_order_id}", "account_id": account,
                "client_order_id": client_order_id, "symbol": "BTC-USD", "side": side, "type": "LIMIT",
                "quantity": str(quantity), "price": str(price), "time_in_force": "GTC"}

    commands = []
    for i in range(rounds):
        for account in traders:
            side = "BUY" if (i + len(account)) % 2 == 0 else "SELL"
            commands.append(submit(account, f"mkt-{i}", side, lift if side == "BUY" else hit))
            if i % rest_every == 0:
                commands.append(submit(account, f"rest-{i}", "BUY", rest))
    return commands
