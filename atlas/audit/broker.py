"""What the broker knows that the audit commands compare with: offsets of every ATLAS partition, and a table's contents."""
from __future__ import annotations

from typing import Any

from atlas.audit.verify import BrokerView
from atlas.runtime.kafka import last_records


async def broker_views(kafka: dict[str, Any], topic_prefix: str, group: str) -> dict[tuple[str, int], BrokerView]:
    """Log start, head and the exporter's committed offset of every partition of every ATLAS topic.

    `kafka` holds the clients' options: servers and sign-in (`atlas.runtime.kafka.client_options`).
    """
    from aiokafka import AIOKafkaConsumer
    from aiokafka.admin import AIOKafkaAdminClient

    consumer = AIOKafkaConsumer(**kafka, isolation_level="read_committed", enable_auto_commit=False)
    admin = AIOKafkaAdminClient(**kafka)
    try:
        await consumer.start()
        await admin.start()
        tps = await _partitions(admin, lambda t: t.startswith(f"{topic_prefix}."))
        starts = await consumer.beginning_offsets(tps)
        heads = {tp: starts[tp] if last is None else last + 1
                 for tp, last in (await last_records(consumer, tps, starts=starts)).items()}
        committed = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
        await consumer.stop()
    return {(tp.topic, tp.partition): BrokerView(starts[tp], heads[tp],
                                                  committed[tp].offset if tp in committed else None) for tp in tps}


async def group_lag(admin: Any, consumer: Any, topics: tuple[str, ...], group: str) -> dict[tuple[str, int], int]:
    """Per partition of the topics, records past what `group` has committed (all of them if it has committed none).

    `admin` and `consumer` are started aiokafka clients; the caller keeps or closes them.
    """
    from aiokafka import TopicPartition

    tps = [TopicPartition(d["topic"], p["partition"]) for d in await admin.describe_topics(list(topics))
           for p in d.get("partitions", ())]
    ends = await consumer.end_offsets(tps) if tps else {}
    committed = await admin.list_consumer_group_offsets(group)
    return {(tp.topic, tp.partition): max(0, end - (committed[tp].offset if tp in committed else 0))
            for tp, end in ends.items()}


async def read_table(kafka: dict[str, Any], changelog: str) -> dict[bytes, bytes]:
    """A table's contents: its changelog topic read to the end, the last value of each key."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka.admin import AIOKafkaAdminClient

    consumer = AIOKafkaConsumer(**kafka, isolation_level="read_committed",
                                enable_auto_commit=False, auto_offset_reset="earliest")
    admin = AIOKafkaAdminClient(**kafka)
    table: dict[bytes, bytes] = {}
    try:
        await consumer.start()
        await admin.start()
        tps = await _partitions(admin, lambda t: t == changelog)
        if not tps:
            return table
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        todo = [tp for tp in tps if ends[tp] > 0]
        while todo:
            for messages in (await consumer.getmany(timeout_ms=500)).values():
                for m in messages:
                    if m.value is None:
                        table.pop(m.key, None)
                    else:
                        table[m.key] = m.value
            todo = [tp for tp in todo if await consumer.position(tp) < ends[tp]]
    finally:
        await admin.close()
        await consumer.stop()
    return table


async def _partitions(admin: Any, wanted: Any) -> list:
    """Every partition of the topics `wanted(name)` accepts."""
    from aiokafka import TopicPartition

    topics = sorted(t for t in await admin.list_topics() if wanted(t))
    if not topics:
        return []
    described = await admin.describe_topics(topics)
    return [TopicPartition(d["topic"], p["partition"]) for d in described for p in d["partitions"]]
