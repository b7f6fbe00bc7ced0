"""The worker killed at the two steps of a batch a kill from outside only hits by chance; after a restart
nothing is lost or doubled.

`ATLAS_FAULT_KILL_AT` makes the worker SIGKILL itself at a named point of the `oms` batch that holds
its n-th event (here the 400th of about 1,500: orders are still flowing),
once what it wrote so far is in Kafka (`atlas/agents/faults.py`):
- between the batch's state writes and its outputs: the state is in the changelog, the
  outputs were never sent, so the batch's events, read again, must send them (as possible
  duplicates) and change nothing;
- between its outputs and the commit of its input offsets: everything is in Kafka, and the
  events read again must change nothing.
The flow and the checks are those of `test_kill_restart`: every order reaches the venue, every
account holds exactly the fills the test sent, and its balances add up.
"""
from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from tests.faults.test_kill_restart import check_flow, run_flow
from tests.live import Cluster

pytestmark = [pytest.mark.integration, pytest.mark.faults]


async def restart_after_fault(cluster: Cluster, timeout: float = 120.0) -> None:
    """Wait for the worker to kill itself, then start it again without the fault."""
    worker = cluster.workers[0]
    deadline = time.monotonic() + timeout
    while worker.proc.poll() is None:
        assert time.monotonic() < deadline, "the worker never reached its fault point"
        await asyncio.sleep(0.1)
    assert worker.proc.returncode == -9, f"the worker exited with {worker.proc.returncode}, not by SIGKILL"
    worker.env.pop("ATLAS_FAULT_KILL_AT")
    await asyncio.get_running_loop().run_in_executor(None, worker.start)


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
@pytest.mark.parametrize("point", ["oms-state-written", "oms-outputs-sent"])
def test_kill_at_a_step_of_a_batch_loses_nothing_and_doubles_nothing(kafka_bootstrap, tmp_path, point, guarantee):
    cluster = Cluster(kafka_bootstrap, tmp_path, f"kp-{guarantee[:5]}-{uuid.uuid4().hex[:6]}", guarantee=guarantee,
                      extra_env={"ATLAS_FAULT_KILL_AT": f"{point}:400"})
    cluster.start_worker()
    try:
        check_flow(cluster, asyncio.run(run_flow(cluster, lambda: restart_after_fault(cluster))))
    finally:
        cluster.stop()
    log = cluster.workers[0].log_path.read_text(errors="replace")
    assert f"fault injection: SIGKILL at {point} of the batch with event 400" in log
    assert "wiping local tables" in log, "the restart after SIGKILL must restore from the changelog"
