"""Corrections to faust-streaming 0.15.3 that ATLAS's guarantees depend on, and one shortcut on its hot path.

Imported by `atlas.app` before the app is created.
"""
from __future__ import annotations

from faust.transport.consumer import Consumer, TransactionManager
from faust.topics import Topic
from faust.transport.producer import ProducerBuffer

_send_pending = ProducerBuffer._send_pending


async def _send_pending_tracked(self: ProducerBuffer, fut) -> None:
    # The buffer's task takes a message off the queue before sending it: remember it, so
    # that a flush can wait for it too.
    self.atlas_in_flight = fut
    await _send_pending(self, fut)


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
ProducerBuffer.flush = _flush_until_delivered


_perform_seek = Consumer.perform_seek


async def _perform_seek_with_flow_stopped(self: Consumer) -> None:
    """Seek to the committed offsets with the flow stopped; recovery resumes it right after.

    Recovery resumes the stream partitions and then seeks them back to the committed
    offsets. A batch fetched in between, from the old position, kept being handed to the
    agents after the seek and moved the consumer's read offset past messages it had not
    delivered; Faust then dropped those as already read and committed over them as a gap
    (faust-streaming issues #216 and #596 describe this race). `getmany` stops handing out
    a batch as soon as the flow is stopped, so the rest is fetched again from the new position.
    """
    self.stop_flow()
    await _perform_seek(self)

Consumer.perform_seek = _perform_seek_with_flow_stopped
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
