"""One ATLAS worker per test module, on the session's broker, with its own topics and state."""
from __future__ import annotations

import uuid

import pytest

from tests.live import Api, Cluster, Kafka


@pytest.fixture(scope="module")
def cluster(kafka_bootstrap, tmp_path_factory):
    cluster = Cluster(kafka_bootstrap, tmp_path_factory.mktemp("atlas"), f"it-{uuid.uuid4().hex[:8]}")
    cluster.start_worker()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def kafka(kafka_bootstrap) -> Kafka:
    return Kafka(kafka_bootstrap)


@pytest.fixture
def alice(cluster) -> Api:
    return Api(cluster.workers[0].url, cluster.keys["alice"])


@pytest.fixture
def admin(cluster) -> Api:
    return Api(cluster.workers[0].url, cluster.keys["admin"])


@pytest.fixture
def anonymous(cluster) -> Api:
    return Api(cluster.workers[0].url)


@pytest.fixture
def trader(cluster, request) -> Api:
    """A fresh trader account per test (so balances and limits start clean)."""
    used = cluster.__dict__.setdefault("_used_traders", set())
    for account, key in cluster.keys.items():
        if account.startswith("trader-") and account not in used:
            used.add(account)
            api = Api(cluster.workers[0].url, key)
            api.account_id = account
            return api
    raise RuntimeError("out of trader accounts: raise `traders` in tests.live.write_accounts")
