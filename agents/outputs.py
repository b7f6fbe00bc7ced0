"""How an agent sends what one input message caused.

Under at_least_once the sends go through Faust's producer buffer, behind the event's table
changelog writes, so an output is never in Kafka while the state change that caused it is
not. Under exactly_once they go into the transaction that commits the input's offset (Faust
itself picks a transaction by the *destination* partition, which let a venue request commit
while the OMS state that made it was aborted after a kill), once the buffer has handed the
event's changelog writes to that transaction: sent before them, under CPU load a venue request
joined a transaction that a commit (still waiting on older buffered writes) closed before the
order's changelog write arrived, and after a kill the venue's fills found no order.
"""
from __future__ import annotations

from typing import Any, NamedTuple

from atlas.app import EXACTLY_ONCE, app
from atlas.runtime.faust_fixes import handed_over
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
    """Send an event's outputs, in order, after its changelog writes."""
    if EXACTLY_ONCE and sends:
        await handed_over(app.producer.buffer)
    for send in sends:
        if EXACTLY_ONCE:
            await _send_in_transaction(send, source_topic, source_partition)
        else:
            send.topic.send_soon(key=send.key, value=send.value, partition=send.partition, headers=send.headers)


async def _send_in_transaction(send: Send, source_topic: str, source_partition: int) -> None:
    group = app.assignor.group_for_topic(source_topic)
    transactional_id = f"{app.conf.id}-{group}-{source_partition}"
    partition = send.partition
    if partition is None:
        partition = partition_for(send.key) if send.key is not None else source_partition
    await app.producer.send(send.topic.get_topic_name(), send.key, send.value, partition, None,
                            list(send.headers) if send.headers else None, transactional_id=transactional_id)
