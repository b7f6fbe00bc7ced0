"""The worker watching itself: how late its event loop runs what is due, where its partitions end, and
(with `ATLAS_READ_MODEL=dynamodb`) how far the read model's projector is behind.

`atlas_event_loop_lag_seconds` comes from a sleep that should take a quarter second. The end
offsets are asked of the broker every few seconds for `/metrics`' consumer lag: the ends the
consumers see as they fetch stop moving when they stop fetching (a partition paused because its
agent is stuck), which is when the lag matters most.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from atlas.agents.audit import AuditExporter
from atlas.audit.broker import group_lag
from atlas.app import app
from atlas.runtime import metrics
from atlas.runtime.kafka import client_options
from atlas.settings import settings

log = logging.getLogger(__name__)
LOOP_PROBE_S = 0.25
END_OFFSETS_EVERY_S = 5.0
CHANGELOG_SUFFIX = "-changelog"
END_OFFSETS: dict[Any, int] = {}  # TopicPartition -> end offset, as the broker last said


@app.task
async def event_loop_lag() -> None:
    """Sleep a quarter second, again and again, and record how much longer each sleep took."""
    loop = asyncio.get_running_loop()
    while True:
        asked = loop.time()
        await asyncio.sleep(LOOP_PROBE_S)
        metrics.LOOP_LAG.observe(max(0.0, loop.time() - asked - LOOP_PROBE_S))


@app.timer(END_OFFSETS_EVERY_S)
async def refresh_end_offsets() -> None:
    """Ask the broker where each partition the agents and the exporter consume ends."""
    found: dict[Any, int] = {}
    try:
        if app.consumer is not None:
            wanted = [tp for tp in app.consumer.assignment() if not tp.topic.endswith(CHANGELOG_SUFFIX)]
            if wanted:
                found.update(await app.consumer.highwaters(*wanted))
        exporter = AuditExporter.current
        if exporter is not None:
            found.update(await exporter.end_offsets())
    except Exception as exc:  # a rebalance or the broker away: the fetched ends stand in until the next round
        log.debug("end offsets not refreshed: %r", exc)
        return
    END_OFFSETS.clear()
    END_OFFSETS.update({tp: offset for tp, offset in found.items() if offset is not None})


class Projection:
    """The projector's lag, as the broker has it: per partition of the executions topic and the OMS changelog, the
    end offset less what its group (`<app id>-projector`) has committed. Asked every few seconds when the gateway
    reads the DynamoDB read model; `/metrics` and `/readyz` report it."""

    group = settings.projector_group
    topics = (settings.topic("executions"), settings.oms_changelog)
    lag: dict[tuple[str, int], int] = {}  # (topic, partition) -> records not projected yet
    checked_at: float | None = None  # time.time() of the last answer
    error: str | None = None
    _clients: Any = None

    @classmethod
    async def refresh(cls) -> None:
        from aiokafka import AIOKafkaConsumer
        from aiokafka.admin import AIOKafkaAdminClient

        if cls._clients is None:
            admin, consumer = AIOKafkaAdminClient(**client_options()), AIOKafkaConsumer(**client_options())
            await admin.start()
            await consumer.start()
            cls._clients = admin, consumer
        cls.lag = await group_lag(*cls._clients, cls.topics, cls.group)
        cls.checked_at, cls.error = time.time(), None

    @classmethod
    def status(cls) -> dict:
        """`/readyz`'s entry: the read model, and how many records its projector has still to apply."""
        return {"mode": settings.read_model, "projector_group": cls.group,
                "lag": sum(cls.lag.values()) if cls.checked_at is not None else None,
                "checked_at": cls.checked_at, "error": cls.error}


@app.timer(END_OFFSETS_EVERY_S)
async def refresh_projection_lag() -> None:
    """How far the projector is behind (only when the gateway reads the DynamoDB read model)."""
    if settings.read_model != "dynamodb":
        return
    try:
        await Projection.refresh()
    except Exception as exc:  # the broker away or a topic not made yet: reported, tried again next round
        Projection.error = f"{type(exc).__name__}: {exc}"[:300]
        Projection.lag, Projection.checked_at = {}, None  # not known now: no stale figure on /metrics
