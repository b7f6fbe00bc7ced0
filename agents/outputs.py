"""How an agent sends what one input message caused.

Under at_least_once the sends go to the Kafka producer once Faust's producer buffer has handed
it the event's table changelog writes, so an output is never in Kafka while the state change
that caused it is not. Under exactly_once they go into the transaction that commits the input's offset (Faust
itself picks a transaction by the *destination* partition, which let a venue request commit
while the OMS state that made it was aborted after a kill), once the buffer has handed the
event's changelog writes to that transaction: sent before them, under CPU load a venue request
joined a transaction that a commit (still waiting on older buffered writes) closed before the
order's changelog write arrived, and after a kill the venue's fills found no order.
"""
from __future__ import annotations

from typing import Any, NamedTuple

from atlas.app import EXACTLY_ONCE, app
from atlas.runtime.faust_fixes import handed_over, track_delivery
from atlas.runtime.partitioning import partition_for


# On an output sent again because its input was read again (after a restart, or a resent input):
# FIX's PossDupFlag. A consumer that has seen the same id (exec_id, request_id, report_id) drops it.
POSS_DUP_HEADER = "atlas-poss-dup"
POSS_DUP = ((POSS_DUP_HEADER, b"Y"),)


class Send(NamedTuple):
    topic: Any
    key: bytes | None
    value: bytes
    partition: int | None = None
    headers: tuple[tuple[str, bytes], ...] | None = None


def possible_duplicates(sends: list[Send]) -> list[Send]:
    """The same sends, marked as possible duplicates."""
    return [send._replace(headers=POSS_DUP) for send in sends]


async def emit(sends: list[Send], source_topic: str, source_partition: int) -> None:
    """Send an event's outputs, in order, after its changelog writes.

    The changelog writes wait in Faust's producer buffer; once it has handed them to the Kafka
    producer, the outputs go to the same producer, straight (each record through Faust's buffer
    cost a future, a task switch and its sensors). Under at_least_once the offset commit flushes
    that producer first and waits for each output's delivery (`track_delivery`), so no offset is
    committed before the outputs of its events are in Kafka.
    """
    if not sends:
        return
    await handed_over(app.producer.buffer)
    for send in sends:
        if EXACTLY_ONCE:
            await _send_in_transaction(send, source_topic, source_partition)
        else:
            delivery = await app.producer.send(send.topic.get_topic_name(), send.key, send.value, send.partition, None,
                                               list(send.headers) if send.headers else None)
            track_delivery(app.producer.buffer, delivery)


async def _send_in_transaction(send: Send, source_topic: str, source_partition: int) -> None:
    group = app.assignor.group_for_topic(source_topic)
    transactional_id = f"{app.conf.id}-{group}-{source_partition}"
    partition = send.partition
    if partition is None:
        partition = partition_for(send.key) if send.key is not None else source_partition
    await app.producer.send(send.topic.get_topic_name(), send.key, send.value, partition, None,
                            list(send.headers) if send.headers else None, transactional_id=transactional_id)
