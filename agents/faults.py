"""Fault injection for the kill tests: the worker SIGKILLs itself at a named point of a batch.

`ATLAS_FAULT_KILL_AT=<point>:<n>` (never set outside tests) kills the worker at `point` of the
batch holding the agent's n-th event, once everything it has written so far is in Kafka, so a
test can stop it exactly between two steps that a kill from outside would hit only by chance:

- `oms-state-written`: the batch's state is in the changelog, none of its outputs is sent;
- `oms-outputs-sent`: its outputs are in Kafka too, its input offsets are not committed.
"""
from __future__ import annotations

import logging
import os
import signal
from collections import Counter

from atlas.app import app
from atlas.settings import settings

log = logging.getLogger(__name__)
_reached: Counter[str] = Counter()


async def checkpoint(point: str, events: int) -> None:
    """Kill the worker here, at the end of a batch of `events`, if the settings say so (a no-op otherwise)."""
    if settings.fault_kill_at is None:
        return
    wanted, _, nth = settings.fault_kill_at.partition(":")
    if wanted != point:
        return
    _reached[point] += events
    if _reached[point] < int(nth):
        return
    await app.producer.buffer.flush()  # every write so far delivered (see faust_fixes)
    await app.producer.flush()
    log.warning("fault injection: SIGKILL at %s of the batch with event %s", point, nth)
    os.kill(os.getpid(), signal.SIGKILL)
