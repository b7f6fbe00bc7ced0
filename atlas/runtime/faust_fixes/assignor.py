"""Transactional ids that stay the same on every start: each topic group named by its partition count."""
from __future__ import annotations

import logging
from typing import Callable

from faust.assignor.partition_assignor import PartitionAssignor

log = logging.getLogger(__name__)

_on_assignment = PartitionAssignor.on_assignment


def _on_assignment_with_stable_groups(self: PartitionAssignor, assignment) -> None:
    """Faust's `on_assignment`, then each topic's group renamed to its group's partition count.

    Under exactly_once the group is part of every transactional id (`<app>-<group>-<partition>`):
    the changelog writes, the outputs and the offsets of a partition share that transaction, and
    a restarted worker fences the transactions its dead predecessor left open by starting
    producers with the same ids. Faust numbers the groups 0, 1, ... in order of partition count
    among the topics the group leader's metadata held. On a first start the assignor's own
    one-partition topic was often not there yet ("not found in cluster metadata"), so the
    8-partition topics were group 0, and group 1 after every restart. The restarted worker then
    fenced nothing: the dead worker's open transactions held each changelog's last stable offset
    back for the 60 s transaction timeout, and recovery, which reads to that offset under
    read_committed, restored a state from before the crash and went on from the committed input
    offsets (the OMS lost 100 commands of a trader, the venue filled some orders twice;
    tests/faults/test_audit_kill_restart.py). A partition count names the same group on every
    start; topics of one app with the same count are subscribed together, so one group per count.
    """
    _on_assignment(self, assignment)
    try:
        cluster = self.app.consumer._thread._ensure_consumer()._client.cluster
        self._topic_groups = stable_groups(self._topic_groups,
                                           lambda topic: len(cluster.partitions_for_topic(topic) or ()))
    except Exception:  # never let it end aiokafka's coordinator: Faust's numbers, as before
        log.exception("transactional ids keep Faust's group numbers (the partition counts were not read)")


def stable_groups(topic_groups: dict[str, int], partitions: Callable[[str], int]) -> dict[str, int]:
    """Each topic's group renamed to the group's partition count.

    A group none of whose topics this worker's metadata holds (the assignor's own topic, on a first
    start) gets a negative name instead, `-1 - Faust's number`: no transaction writes there. If two
    groups share a count (Faust's leader makes one per count), Faust's numbers are kept, with a warning.
    """
    counts: dict[int, int] = {}
    for topic, group in topic_groups.items():
        counts[group] = max(counts.get(group, 0), partitions(topic))
    known = [count for count in counts.values() if count]
    if len(set(known)) < len(known):
        log.warning("two partition groups have the same partition count (%s): transactional ids keep Faust's "
                    "group numbers, which may change between starts", sorted(known))
        return dict(topic_groups)
    names = {group: count or -1 - group for group, count in counts.items()}
    return {topic: names[group] for topic, group in topic_groups.items()}


PartitionAssignor.on_assignment = _on_assignment_with_stable_groups
