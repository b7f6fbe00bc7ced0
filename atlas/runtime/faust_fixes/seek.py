"""The seek to committed offsets at the end of recovery: with the flow stopped, and a place for every partition."""
from __future__ import annotations

import logging
from typing import Any, Mapping, Set

from faust.transport.consumer import Consumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.types import TP

log = logging.getLogger(__name__)

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


async def _seek_to_committed_else_reset(self: AIOKafkaConsumerThread) -> Mapping[TP, int]:
    """Seek the stream partitions with nothing committed to where the reset policy puts them too.

    aiokafka seeks only where an offset above 0 is committed and leaves every other partition
    where it is. A partition no worker had committed yet was then left past the batch that the
    perform_seek above discards: a worker restarted before its first commit on a partition
    skipped that partition's first records (its OMS never saw the venue's first reports, and
    their orders stayed PENDING_NEW). Changelog partitions are recovery's to place and are left
    where it put them.
    """
    return await self.call_thread(_seek_committed_or_reset, self._ensure_consumer(),
                                  self.app.tables.changelog_topics, self.app.conf.consumer_auto_offset_reset)


async def _seek_committed_or_reset(consumer: Any, changelogs: Set[str], reset: str) -> Mapping[TP, int]:
    committed = await consumer.seek_to_committed()
    unread = [tp for tp, offset in committed.items() if not offset and tp.topic not in changelogs]
    if unread:
        log.debug("nothing committed on %s: sought to their %s", sorted(map(tuple, unread)),
                  "end" if reset == "latest" else "beginning")
        await (consumer.seek_to_end if reset == "latest" else consumer.seek_to_beginning)(*unread)
    return committed


Consumer.perform_seek = _perform_seek_with_flow_stopped
AIOKafkaConsumerThread.seek_to_committed = _seek_to_committed_else_reset
