"""Corrections to Faust's producer path: a flush that waits for delivery, a transaction that holds its writes.

Also one shortcut on the hot path (`Topic._get_producer`).
"""
from __future__ import annotations

import asyncio

from faust.topics import Topic
from faust.transport.consumer import TransactionManager
from faust.transport.producer import ProducerBuffer

_send_pending = ProducerBuffer._send_pending


async def _send_pending_tracked(self: ProducerBuffer, fut) -> None:
    # The buffer's task takes a message off the queue before sending it: remember it, so
    # that a flush can wait for it too.
    # A message the producer refused is not handed: whoever waits for it is told, and so is
    # every later `handed_over` (the buffer's task dies with the error, and the worker with it).
    self.atlas_in_flight = fut
    try:
        await _send_pending(self, fut)
    except BaseException as exc:
        self.atlas_failed = exc
        for _, waiter in getattr(self, "atlas_handed_waiters", ()):
            if not waiter.done():
                waiter.set_exception(RuntimeError(f"the producer buffer failed to hand over a message: {exc!r}"))
        self.atlas_handed_waiters = []
        raise
    self.atlas_handed = getattr(self, "atlas_handed", 0) + 1
    if getattr(self, "atlas_handed_waiters", None):
        _wake_handed(self)


_put = ProducerBuffer.put


def _put_counted(self: ProducerBuffer, fut) -> None:
    self.atlas_put = getattr(self, "atlas_put", 0) + 1
    _put(self, fut)


async def handed_over(buffer: ProducerBuffer) -> None:
    """Return once every message put in the buffer so far has been handed to the Kafka producer.

    Handed, not delivered: in the producer's hands a message belongs to the transaction open
    then, and a message sent after it cannot belong to an earlier one. Under exactly_once an
    agent's outputs go straight to the transaction of their input; they wait for this first, so
    that a commit can never take an output without the changelog writes its event made before it.
    """
    failed = getattr(buffer, "atlas_failed", None)
    if failed is not None:
        raise RuntimeError(f"the producer buffer failed to hand over a message: {failed!r}")
    target = getattr(buffer, "atlas_put", 0)
    if getattr(buffer, "atlas_handed", 0) >= target:
        return
    waiter = asyncio.get_running_loop().create_future()
    buffer.__dict__.setdefault("atlas_handed_waiters", []).append((target, waiter))
    await waiter


def _wake_handed(buffer: ProducerBuffer) -> None:
    handed, still = buffer.atlas_handed, []
    for target, waiter in buffer.atlas_handed_waiters:
        if handed >= target:
            if not waiter.done():
                waiter.set_result(None)
        else:
            still.append((target, waiter))
    buffer.atlas_handed_waiters = still


async def _flush_until_delivered(self: ProducerBuffer) -> None:
    """Return only once every message buffered now has been delivered to Kafka.

    Table changelog writes go through this buffer (`send_soon`), and Faust flushes it
    before committing source offsets. Its own `flush` returns as soon as no message went
    out for 0.1 s, or once the queue is empty while the last message is still being
    handed to the Kafka client: in both cases the offsets get committed with changelog
    writes still pending, and after a `kill -9` those events are neither in the changelog
    nor read again (seen in tests/faults/test_kill_restart.py). Awaiting each message's
    own delivery future closes both gaps; a failed delivery raises, so nothing is committed.
    """
    waiting = list(self.pending._queue)
    in_flight = getattr(self, "atlas_in_flight", None)
    if in_flight is not None:
        waiting.insert(0, in_flight)
    for fut in waiting:
        await fut


_commit_transaction = TransactionManager.commit


async def _commit_transaction_after_flush(self: TransactionManager, offsets, start_new_transaction: bool = True) -> bool:
    """Under exactly_once, hand the buffered changelog writes to the transaction before committing it.

    Faust flushes the producer buffer before committing offsets only without transactions.
    With them, writes still buffered at commit time went into the next transaction while
    the offsets of the events that made them were committed in this one; a `kill -9`
    before the next commit then lost those events (seen in tests/faults/test_kill_restart.py).
    """
    await self.app.producer.buffer.flush()
    return await _commit_transaction(self, offsets, start_new_transaction=start_new_transaction)


ProducerBuffer._send_pending = _send_pending_tracked
ProducerBuffer.put = _put_counted
ProducerBuffer.flush = _flush_until_delivered
TransactionManager.commit = _commit_transaction_after_flush


_get_producer = Topic._get_producer


async def _get_started_producer(self: Topic):
    """Skip `App.maybe_start_producer` (a stampede-guarded coroutine) once the producer runs.

    Not a correction but a cost: it ran for every message sent, about a tenth of the
    producer path's time in a profile of the `oms` agent.
    """
    app = self.app
    if not app.in_transaction and app.producer.started:
        return app.producer
    return await _get_producer(self)


Topic._get_producer = _get_started_producer
