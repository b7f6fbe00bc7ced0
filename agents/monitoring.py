"""The worker watching itself: how late its event loop runs what is due (`atlas_event_loop_lag_seconds`)."""
from __future__ import annotations

import asyncio

from atlas.app import app
from atlas.runtime import metrics

LOOP_PROBE_S = 0.25


@app.task
async def event_loop_lag() -> None:
    """Sleep a quarter second, again and again, and record how much longer each sleep took."""
    loop = asyncio.get_running_loop()
    while True:
        asked = loop.time()
        await asyncio.sleep(LOOP_PROBE_S)
        metrics.LOOP_LAG.observe(max(0.0, loop.time() - asked - LOOP_PROBE_S))
