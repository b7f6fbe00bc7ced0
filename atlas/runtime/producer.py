"""The gateway's own Kafka producer for commands.

Views produce with a plain idempotent aiokafka producer and wait for the broker's ack, so a
`202` means the command is durably in `atlas.commands`; a broker that cannot be reached
within `timeout` turns into a 503 and nothing half-accepted. It does not take part in the
worker's transactions, so views behave the same under either processing guarantee.
"""
from __future__ import annotations

import asyncio
from typing import NamedTuple

import mode
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from atlas.runtime import tracing
from atlas.runtime.kafka import client_options
from atlas.settings import settings


class BrokerUnavailable(Exception):
    """The command could not be written to Kafka in time."""


class Written(NamedTuple):
    """Where Kafka put a message."""

    partition: int
    offset: int


class CommandProducer(mode.Service):
    """Produces commands and control messages for the web views."""

    # The started instance, for the views (Faust instantiates services itself).
    current: "CommandProducer | None" = None

    def __init__(self, *args, timeout: float = 5.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.timeout = timeout
        self._producer: AIOKafkaProducer | None = None

    async def on_start(self) -> None:
        self._producer = AIOKafkaProducer(
            **client_options(), acks="all", enable_idempotence=True,
            linger_ms=0, request_timeout_ms=int(self.timeout * 1000), client_id=f"{settings.app_id}-gateway",
        )
        await self._producer.start()
        CommandProducer.current = self

    async def on_stop(self) -> None:
        CommandProducer.current = None
        if self._producer is not None:
            await self._producer.stop()

    async def send(self, topic: str, key: str, value: bytes) -> Written:
        """Write one message and wait until the broker has it; returns where it was put.

        Inside a traced request the message carries the request's trace in a `traceparent` header.
        """
        if self._producer is None:
            raise BrokerUnavailable("the producer is not started")
        if tracing.ENABLED and tracing.active():
            with tracing.producing(topic, key) as span:
                written = await self._send(topic, key, value, list(tracing.context_headers(span)))
                span.set_attribute("messaging.destination.partition.id", str(written.partition))
                span.set_attribute("messaging.kafka.offset", written.offset)
                return written
        return await self._send(topic, key, value, None)

    async def _send(self, topic: str, key: str, value: bytes, headers: list | None) -> Written:
        try:
            written = await asyncio.wait_for(
                self._producer.send_and_wait(topic, value=value, key=key.encode(), headers=headers), self.timeout)
            return Written(written.partition, written.offset)
        except (KafkaError, asyncio.TimeoutError) as exc:
            raise BrokerUnavailable(f"Kafka did not accept the message: {exc!r}") from exc

    async def broker_reachable(self) -> bool:
        """True when the cluster answers a metadata request."""
        if self._producer is None:
            return False
        try:
            await asyncio.wait_for(self._producer.client.fetch_all_metadata(), 2.0)
        except (KafkaError, asyncio.TimeoutError, OSError):
            return False
        return True
