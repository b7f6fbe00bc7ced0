"""The broker's secure profile (issue 14, finding 1): SASL_SSL, SCRAM users and ACLs by principal.

A broker of its own, started with `secure=True`: every client must sign in over TLS, and the
ACLs of `infra/kafka/secure.py` decide what each principal may do. The workers, their
exporter, the audit command and these tests sign in with the credentials the broker script made.
"""
from __future__ import annotations

import asyncio
import gc
import json
import uuid
from decimal import Decimal as D
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import GroupAuthorizationFailedError, KafkaError, TopicAuthorizationFailedError

from atlas.core.values import order_id_for
from atlas.infra.kafka.broker import LocalBroker, free_port
from tests.live import Api, Cluster, Kafka, audit_cli, mid, wait_exported

# aiokafka leaves the sockets of refused sign-ins and refused requests for the collector to close, and
# the collector may run in any later test: each test here collects its own before it ends, and their
# ResourceWarnings are aiokafka's, not ATLAS's (the workers run in their own processes).
pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")]


@pytest.fixture(autouse=True)
def _collect_refused_clients():
    yield
    gc.collect()

# What the worker principal alone may write (besides changelogs): every ATLAS topic but `commands`
# for the producer principal, and but the three admin topics for the admin principal.
TOPICS = ("commands", "admin", "venue.orders", "venue.reports", "executions", "marketdata", "venue.control",
          "risk.control", "deadletter")
PRODUCER_MAY_WRITE = {"commands"}
ADMIN_MAY_WRITE = {"admin", "venue.control", "risk.control"}


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory) -> LocalBroker:
    broker = LocalBroker(tmp_path_factory.mktemp("kafka-secure"), port=free_port(), secure=True)
    broker.start()
    yield broker
    broker.stop()


def sign_in(broker: LocalBroker, user: str, password: str | None = None) -> dict[str, Any]:
    """aiokafka options of a client signed in as `user` (with its own password unless one is given)."""
    return {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": user,
            "sasl_plain_password": password or broker.security.passwords()[user], "ssl_context": broker.tls_context()}


@pytest.fixture(scope="module")
def secured(secure_broker, tmp_path_factory) -> Cluster:
    """One worker (venue and exporter on) signed in as `worker`, its app's ACLs granted."""
    app_id = f"sec-{uuid.uuid4().hex[:8]}"
    secure_broker.grant(app_id)
    worker_env = secure_broker.security.client_env("worker", secure_broker.bootstrap)
    cluster = Cluster(secure_broker.bootstrap, tmp_path_factory.mktemp("secured"), app_id, venue=True, audit=True,
                      extra_env=worker_env, kafka_auth=sign_in(secure_broker, "worker"))
    try:
        cluster.start_worker()
        yield cluster
    finally:
        cluster.stop()


def _produce(bootstrap: str, topic: str, value: bytes, key: bytes = b"alice", **auth: Any) -> None:
    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", request_timeout_ms=10_000, **auth)
        try:
            await asyncio.wait_for(producer.start(), 20)
            await asyncio.wait_for(producer.send_and_wait(topic, value, key=key), 20)
        finally:
            await producer.stop()

    asyncio.run(run())


@pytest.mark.parametrize("how", ["plaintext", "tls without sasl", "wrong password", "unknown user"])
def test_a_client_that_does_not_sign_in_is_refused_by_the_broker(secure_broker, how):
    auth = {
        "plaintext": {},
        "tls without sasl": {"security_protocol": "SSL", "ssl_context": secure_broker.tls_context()},
        "wrong password": sign_in(secure_broker, "producer", password="not-the-password"),
        "unknown user": {**sign_in(secure_broker, "producer"), "sasl_plain_username": "mallory"},
    }[how]
    with pytest.raises(KafkaError):
        _produce(secure_broker.bootstrap, "atlas.commands", b"{}", **auth)


@pytest.mark.parametrize("topic", [*TOPICS, "oms-changelog"])
def test_the_producer_principal_may_write_commands_and_no_other_topic(secured, secure_broker, topic):
    name = f"{secured.app_id}-{topic}" if topic.endswith("changelog") else secured.topic(topic)
    auth = sign_in(secure_broker, "producer")
    if topic in PRODUCER_MAY_WRITE:
        # Not a valid command: dead-lettered by the OMS, which is all this test needs of it.
        _produce(secure_broker.bootstrap, name, b'{"command": "Nothing"}', **auth)
    else:
        with pytest.raises(TopicAuthorizationFailedError):
            _produce(secure_broker.bootstrap, name, b"{}", **auth)


@pytest.mark.parametrize("topic", TOPICS)
def test_the_admin_principal_may_write_the_admin_topics_only(secured, secure_broker, topic):
    auth = sign_in(secure_broker, "admin")
    if topic in ADMIN_MAY_WRITE:
        # Not valid either: the OMS and the market agent dead-letter or skip what they cannot read.
        _produce(secure_broker.bootstrap, secured.topic(topic), b'{"not": "a control"}', key=b"nobody", **auth)
    else:
        with pytest.raises(TopicAuthorizationFailedError):
            _produce(secure_broker.bootstrap, secured.topic(topic), b"{}", **auth)


def test_a_rogue_member_of_the_workers_group_is_refused(secured, secure_broker):
    async def join() -> None:
        # The producer principal may describe `commands`, so only the group's ACL stands in its way.
        consumer = AIOKafkaConsumer(secured.topic("commands"), bootstrap_servers=secure_broker.bootstrap,
                                    group_id=secured.app_id, **sign_in(secure_broker, "producer"))
        try:
            await asyncio.wait_for(consumer.start(), 20)
            await asyncio.wait_for(consumer.getmany(timeout_ms=5_000), 20)
        finally:
            await consumer.stop()

    with pytest.raises(GroupAuthorizationFailedError):
        asyncio.run(join())


def test_workers_trade_and_export_signed_in_and_an_external_producer_orders_over_kafka(secured, secure_broker):
    alice = Api(secured.workers[0].url, secured.keys["alice"])
    price = (mid(alice) * D("1.02")).quantize(D("0.01"))
    placed = alice.order(side="BUY", quantity="0.01", price=str(price))
    assert placed.status == 202, placed.body
    alice.wait_for(f"/api/v1/orders/{placed.body['order_id']}", lambda o: o["status"] == "FILLED", timeout=30)

    # An order producer outside ATLAS, signed in as `producer`, keyed by account as the README says:
    # a bid below the market, inside the collar, which rests.
    resting = (mid(alice) * D("0.97")).quantize(D("0.01"))
    cmd = {"command": "SubmitOrder", "command_id": f"ext-{uuid.uuid4().hex[:12]}", "account_id": "alice",
           "client_order_id": f"ext-{uuid.uuid4().hex[:12]}", "symbol": "BTC-USD", "side": "BUY", "type": "LIMIT",
           "quantity": "0.01", "price": str(resting), "time_in_force": "GTC"}
    _produce(secure_broker.bootstrap, secured.topic("commands"), json.dumps(cmd).encode(), key=b"alice",
             **sign_in(secure_broker, "producer"))
    order_id = order_id_for("alice", cmd["client_order_id"])
    assert alice.wait_for(f"/api/v1/orders/{order_id}", lambda o: o["status"] == "NEW", timeout=30)

    wait_exported(secured, ("commands", "executions", "venue.reports"))
    verified = audit_cli(secured, "verify")  # the command line signs in from the same ATLAS_KAFKA_* settings
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_limits_set_by_an_operator_apply_and_a_set_limits_on_commands_is_dead_lettered(secured, secure_broker):
    admin, bob = (Api(secured.workers[0].url, secured.keys[name]) for name in ("admin", "bob"))
    limits = bob.get("/api/v1/limits").body["limits"]
    changed = admin.request("PUT", "/api/v1/admin/accounts/bob/limits", {**limits, "max_order_notional": "4321"})
    assert changed.status == 202, changed.body
    bob.wait_for("/api/v1/limits", lambda d: d["limits"]["max_order_notional"] == "4321")

    # The producer principal may write `commands`, but an operator's command there is refused.
    forged = {"command": "SetLimits", "command_id": f"forged-{uuid.uuid4().hex[:8]}", "account_id": "bob",
              "limits": {**limits, "max_order_notional": "99999999"}}
    _produce(secure_broker.bootstrap, secured.topic("commands"), json.dumps(forged).encode(), key=b"bob",
             **sign_in(secure_broker, "producer"))
    kafka = Kafka(secure_broker.bootstrap, **sign_in(secure_broker, "worker"))
    records = kafka.consume(secured.topic("deadletter"), lambda rs: any(forged["command_id"] in r["value"]["value"]
                                                                        for r in rs), timeout=30)
    [letter] = [r["value"] for r in records if forged["command_id"] in r["value"]["value"]]
    assert "SetLimits" in letter["error"] and letter["topic"] == secured.topic("commands")
    assert bob.get("/api/v1/limits").body["limits"]["max_order_notional"] == "4321"


def test_a_worker_under_exactly_once_signs_in_and_its_transactions_are_allowed(secure_broker, tmp_path):
    # Faust's transactional ids are "<app id>-<group>-<partition>": the worker's prefixed grant must cover them.
    app_id = f"seceos-{uuid.uuid4().hex[:8]}"
    secure_broker.grant(app_id)
    cluster = Cluster(secure_broker.bootstrap, tmp_path, app_id, guarantee="exactly_once", venue=True,
                      extra_env=secure_broker.security.client_env("worker", secure_broker.bootstrap),
                      kafka_auth=sign_in(secure_broker, "worker"))
    try:
        cluster.start_worker()
        alice = Api(cluster.workers[0].url, cluster.keys["alice"])
        price = (mid(alice) * D("1.02")).quantize(D("0.01"))
        placed = alice.order(side="BUY", quantity="0.01", price=str(price))
        assert placed.status == 202, placed.body
        alice.wait_for(f"/api/v1/orders/{placed.body['order_id']}", lambda o: o["status"] == "FILLED", timeout=30)
    finally:
        cluster.stop()
