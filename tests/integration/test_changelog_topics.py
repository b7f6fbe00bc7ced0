"""Every table changelog is compacted with segments that roll and deletes that expire, new or made before.

Compaction never cleans a changelog's active segment, and Kafka rolls one only after 7 days or
1 GB: with Kafka's defaults a restore read every write ever made. A worker creates its changelogs
with ATLAS's settings and brings older ones (here the OMS changelog, made by hand with only
`cleanup.policy=compact`, as a worker before these settings did, and an operator's
`max.message.bytes`) to the same configuration, keeping what else was set on them.
"""
from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from tests.live import Cluster

pytestmark = pytest.mark.integration

TABLES = ("oms", "venue", "market-state")


async def _create(bootstrap: str, name: str, configs: dict[str, str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, 8, 1, topic_configs=configs)])
    finally:
        await admin.close()


async def _configs(bootstrap: str, names: list[str]) -> dict[str, dict[str, str]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name) for name in names])
    finally:
        await admin.close()
    found = {}
    for response in responses:
        for _, _, _, name, entries in response.resources:
            found[name] = {entry[0]: entry[1] for entry in entries}
    return found


def test_changelogs_are_compacted_with_rolling_segments_and_expiring_deletes(kafka_bootstrap, tmp_path):
    cluster = Cluster(kafka_bootstrap, tmp_path, f"cl-{uuid.uuid4().hex[:8]}",
                      extra_env={"ATLAS_CHANGELOG_SEGMENT_MS": "120000", "ATLAS_CHANGELOG_TOMBSTONE_MS": "900000"})
    older = f"{cluster.app_id}-oms-changelog"
    asyncio.run(_create(kafka_bootstrap, older, {"cleanup.policy": "compact", "max.message.bytes": "2000000"}))
    cluster.start_worker()
    try:
        names = [f"{cluster.app_id}-{table}-changelog" for table in TABLES]
        configs = asyncio.run(_configs(kafka_bootstrap, names))
    finally:
        cluster.stop()
    assert set(configs) == set(names)
    for name, config in configs.items():
        assert config["cleanup.policy"] == "compact", name
        assert config["segment.ms"] == "120000", name
        assert config["delete.retention.ms"] == "900000", name
        assert config["segment.bytes"] == str(64 * 1024 * 1024), name
        assert config["min.cleanable.dirty.ratio"] == "0.25", name
    assert configs[older]["max.message.bytes"] == "2000000"
