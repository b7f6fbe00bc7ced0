"""Which partition a key lands on: murmur2, as the Java client and aiokafka hash keys."""
from __future__ import annotations

from aiokafka.partitioner import murmur2

from atlas.settings import settings


def partition_for(key: bytes, partitions: int = settings.partitions) -> int:
    """The partition the default partitioner of the Java client and aiokafka picks for `key`."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions
