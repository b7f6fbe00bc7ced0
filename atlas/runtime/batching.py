"""Batches of the events a Faust consumer has delivered: a poll's worth under load, one event at a trickle.

Faust's `Stream.take_events(max, within)` waits `within` seconds for each batch, however few
events come: a long wait costs every order its latency at a trickle, a short one leaves the
batches small under load (with 2 ms, an OMS batch held about two events while a backlog
drained). `ready_batches` waits for nothing but the first event: it then takes every event
already delivered to the stream's queue, up to `max_events`, and hands them over as one batch.
Like `take_events`, it turns the stream's own acks off and acks a batch's events only once the
agent has processed the batch, so no offset is committed before the batch's state and outputs.
"""
from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any


async def ready_batches(stream: Any, max_events: int,
                        keep: Callable[[list[Any]], list[Any]] = lambda events: events) -> AsyncIterator[list[Any]]:
    """Yield lists of the stream's events: each the first to come plus those already waiting, at most `max_events`.

    `keep` picks the events still to process once a batch is complete: one whose partition
    moved to another worker while the batch waited for more is left out, and not acked (it
    belongs to the next owner).
    """
    stream.enable_acks = False
    waiting = stream.channel.queue
    events = stream.events().__aiter__()
    while True:
        taken = [await events.__anext__()]
        while len(taken) < max_events and not waiting.empty():
            taken.append(await events.__anext__())
        batch = keep(taken)
        if not batch:
            continue
        yield batch
        for event in batch:
            await stream.ack(event)
