"""The worker watching itself: how late its event loop runs what is due, and where its partitions end.

`atlas_event_loop_lag_seconds` comes from a sleep that should take a quarter second. The end
offsets are asked of the broker every few seconds for `/metrics`' consumer lag: the ends the
consumers see as they fetch stop moving when they stop fetching (a partition paused because its
agent is stuck), which is when the lag matters most.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from atlas.agents.audit import AuditExporter
from atlas.app import app
from atlas.runtime import metrics

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
