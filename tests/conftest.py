"""Session fixtures: the live Kafka broker (ours, or an external one through ATLAS_KAFKA_BOOTSTRAP)."""
from __future__ import annotations

import os

import pytest

from atlas.infra.kafka.broker import LocalBroker, free_port


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory) -> str:
    """A running broker for the whole session; started here unless ATLAS_KAFKA_BOOTSTRAP names one."""
    external = os.environ.get("ATLAS_KAFKA_BOOTSTRAP")
    if external:
        yield external
        return
    broker = LocalBroker(tmp_path_factory.mktemp("kafka"), port=free_port())
    broker.start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()
