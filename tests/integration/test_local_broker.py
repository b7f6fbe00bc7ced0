"""LocalBroker starts a real Kafka broker that aiokafka can produce to and consume from."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

REPO_ROOT = Path(__file__).resolve().parents[2]
BROKER_PY = REPO_ROOT / "infra" / "kafka" / "broker.py"


def _load_broker_module():
    # Loaded by path: the infra folder is not an installed package yet.
    name = "atlas_infra_kafka_broker"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, BROKER_PY)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


broker_mod = _load_broker_module()


async def _produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value, key=b"same-key")
    finally:
        await producer.stop()


async def _consume(bootstrap: str, topic: str, count: int, timeout: float = 30) -> list[bytes]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id="test-local-broker",
        auto_offset_reset="earliest",
    )
    await consumer.start()
    received: list[bytes] = []
    try:
        async with asyncio.timeout(timeout):
            async for message in consumer:
                received.append(message.value)
                if len(received) == count:
                    break
    finally:
        await consumer.stop()
    return received


async def _roundtrip(bootstrap: str, topic: str, values: list[bytes]) -> list[bytes]:
    await _produce(bootstrap, topic, values)
    return await _consume(bootstrap, topic, len(values))


def test_local_broker_roundtrip(tmp_path: Path) -> None:
    port = broker_mod.free_port()
    broker = broker_mod.LocalBroker(tmp_path / "kafka", port=port)
    values = [b"first", b"second", b"third"]
    try:
        broker.start()
        assert broker.is_running()
        assert broker.bootstrap == f"127.0.0.1:{port}"

        received = asyncio.run(_roundtrip(broker.bootstrap, "atlas-test-roundtrip", values))

        assert received == values
    finally:
        broker.stop()
    assert not broker.is_running()
    assert not broker.pid_file.exists()
