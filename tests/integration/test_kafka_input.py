"""Commands produced straight to Kafka: applied like HTTP ones; bad messages dead-lettered, never lost."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest

from atlas.core.values import order_id_for
from atlas.runtime.partitioning import partition_for

pytestmark = pytest.mark.integration


def submit(account: str, **overrides) -> dict:
    return {"command": "SubmitOrder", "command_id": f"k-{uuid.uuid4().hex[:12]}", "account_id": account,
            "client_order_id": f"k-{uuid.uuid4().hex[:12]}", "symbol": "BTC-USD", "side": "BUY", "type": "LIMIT",
            "quantity": "0.01", "price": "64000.00", "time_in_force": "GTC", **overrides}


def executions_for(kafka, cluster, order_id: str, count: int = 1) -> list[dict]:
    records = kafka.consume(cluster.topic("executions"),
                            lambda rs: sum(r["value"]["order_id"] == order_id for r in rs) >= count)
    return [r for r in records if r["value"]["order_id"] == order_id]


def dead_letters(kafka, cluster, predicate) -> list[dict]:
    records = kafka.consume(cluster.topic("deadletter"), lambda rs: any(predicate(r["value"]) for r in rs))
    return [r["value"] for r in records if predicate(r["value"])]


def test_kafka_submit_is_applied_like_http(kafka, cluster, trader):
    cmd = submit(trader.account_id)
    kafka.produce(cluster.topic("commands"), [(trader.account_id.encode(), json.dumps(cmd).encode())])
    order_id = order_id_for(trader.account_id, cmd["client_order_id"])
    [record] = executions_for(kafka, cluster, order_id)
    assert record["key"] == trader.account_id.encode()
    assert record["value"]["exec_type"] == "PENDING_NEW" and record["value"]["cause_id"] == cmd["command_id"]
    assert trader.get(f"/api/v1/orders/{order_id}").body["status"] == "PENDING_NEW"


def test_a_command_read_again_resends_its_report_marked_as_a_possible_duplicate(kafka, cluster, trader):
    cmd = submit(trader.account_id)
    message = (trader.account_id.encode(), json.dumps(cmd).encode())
    kafka.produce(cluster.topic("commands"), [message, message])  # as a producer's retry would
    first, again = executions_for(kafka, cluster, order_id_for(trader.account_id, cmd["client_order_id"]), count=2)
    assert first["value"] == again["value"] and first["value"]["exec_type"] == "PENDING_NEW"
    assert "atlas-poss-dup" not in first["headers"] and again["headers"]["atlas-poss-dup"] == b"Y"


def test_kafka_submit_with_negative_quantity_is_rejected_with_reason(kafka, cluster, trader):
    cmd = submit(trader.account_id, quantity="-3")
    kafka.produce(cluster.topic("commands"), [(trader.account_id.encode(), json.dumps(cmd).encode())])
    [record] = executions_for(kafka, cluster, order_id_for(trader.account_id, cmd["client_order_id"]))
    assert record["value"]["exec_type"] == "REJECTED" and record["value"]["reason"].startswith("INVALID_QUANTITY")


def test_kafka_risk_reject_is_a_rejected_execution_report(kafka, cluster, trader):
    cmd = submit(trader.account_id, quantity="50")  # beyond the account's BTC-USD max order quantity
    kafka.produce(cluster.topic("commands"), [(trader.account_id.encode(), json.dumps(cmd).encode())])
    [record] = executions_for(kafka, cluster, order_id_for(trader.account_id, cmd["client_order_id"]))
    assert record["value"]["exec_type"] == "REJECTED" and record["value"]["reason"].startswith("MAX_ORDER_QUANTITY")


def test_malformed_json_goes_to_dead_letter(kafka, cluster):
    kafka.produce(cluster.topic("commands"), [(b"alice", b'{"command": "SubmitOrder", oops')])
    [letter] = dead_letters(kafka, cluster, lambda v: "oops" in v["value"])
    assert letter["error"].startswith("INVALID_MESSAGE") and letter["topic"] == cluster.topic("commands")


def test_invalid_submission_naming_an_order_is_dead_lettered_and_rejected(kafka, cluster, trader):
    cmd = submit(trader.account_id, quantity="three")
    kafka.produce(cluster.topic("commands"), [(trader.account_id.encode(), json.dumps(cmd).encode())])
    [letter] = dead_letters(kafka, cluster, lambda v: cmd["client_order_id"] in v["value"])
    assert letter["error"].startswith("INVALID_MESSAGE") and "quantity" in letter["error"]
    [record] = executions_for(kafka, cluster, order_id_for(trader.account_id, cmd["client_order_id"]))
    assert record["value"]["exec_type"] == "REJECTED" and record["value"]["status"] == "REJECTED"


def test_unknown_account_is_dead_lettered(kafka, cluster):
    cmd = submit("mallory")
    kafka.produce(cluster.topic("commands"), [(b"mallory", json.dumps(cmd).encode())])
    [letter] = dead_letters(kafka, cluster, lambda v: cmd["command_id"] in v["value"])
    assert letter["error"].startswith("UNKNOWN_ACCOUNT")


def test_message_keyed_wrongly_is_rekeyed_and_applied(kafka, cluster, trader):
    cmd = submit(trader.account_id)
    kafka.produce(cluster.topic("commands"), [(b"somebody-else", json.dumps(cmd).encode())])
    [record] = executions_for(kafka, cluster, order_id_for(trader.account_id, cmd["client_order_id"]))
    assert record["value"]["exec_type"] == "PENDING_NEW"


def test_message_on_wrong_partition_is_moved_to_its_accounts_partition(kafka, cluster, trader):
    key = trader.account_id.encode()
    wrong = (partition_for(key) + 1) % 8
    cmd = submit(trader.account_id)
    kafka.produce(cluster.topic("commands"), [(key, json.dumps(cmd).encode())], partition=wrong)
    order_id = order_id_for(trader.account_id, cmd["client_order_id"])
    [record] = executions_for(kafka, cluster, order_id)
    assert record["value"]["exec_type"] == "PENDING_NEW"
    commands = kafka.consume(cluster.topic("commands"),
                             lambda rs: sum(cmd["command_id"] in json.dumps(r["value"]) for r in rs) >= 2)
    partitions = sorted(r["partition"] for r in commands if cmd["command_id"] in json.dumps(r["value"]))
    assert partitions == sorted([wrong, partition_for(key)])


def test_bad_venue_report_is_dead_lettered(kafka, cluster):
    kafka.produce(cluster.topic("venue.reports"), [(b"alice", b'{"kind": "FILL", "order_id": "O1"}')])
    [letter] = dead_letters(kafka, cluster, lambda v: '"O1"' in v["value"] and v["topic"].endswith("venue.reports"))
    assert "report_id" in letter["error"]


def test_fill_for_unknown_order_is_dead_lettered(kafka, cluster):
    report = {"report_id": f"r-{uuid.uuid4().hex}", "kind": "FILL", "order_id": "Ounknown", "account_id": "alice",
              "last_qty": "1", "last_px": "10", "ts": 1}
    kafka.produce(cluster.topic("venue.reports"), [(b"alice", json.dumps(report).encode())])
    [letter] = dead_letters(kafka, cluster, lambda v: report["report_id"] in v["value"])
    assert letter["error"].startswith("UNKNOWN_ORDER")


def test_fill_of_an_order_the_venue_never_acknowledged_is_dead_lettered_and_moves_nothing(kafka, cluster, trader):
    # Issue 14: a fill the venue cannot have sent (it acknowledges every order first) used to count.
    before = trader.get("/api/v1/balances").body["balances"]
    order_id = trader.order(quantity="0.01", price="64000.00").body["order_id"]
    trader.wait_for(f"/api/v1/orders/{order_id}", lambda o: o["status"] == "PENDING_NEW")
    report = {"report_id": f"r-{uuid.uuid4().hex}", "kind": "FILL", "order_id": order_id,
              "account_id": trader.account_id, "last_qty": "0.01", "last_px": "64000.00", "ts": 1}
    kafka.produce(cluster.topic("venue.reports"), [(trader.account_id.encode(), json.dumps(report).encode())])
    [letter] = dead_letters(kafka, cluster, lambda v: report["report_id"] in v["value"])
    assert letter["error"].startswith("UNACKNOWLEDGED_FILL") and order_id in letter["error"]
    order = trader.get(f"/api/v1/orders/{order_id}").body
    assert order["status"] == "PENDING_NEW" and order["filled_quantity"] == "0"
    assert trader.get("/api/v1/balances").body["balances"]["BTC"] == before["BTC"]


def test_worker_keeps_serving_after_bad_input(alice):
    placed = alice.order()
    assert placed.status == 202
    alice.wait_for(f"/api/v1/orders/{placed.body['order_id']}", lambda o: o["status"] == "PENDING_NEW")


def test_cli_submit_produces_an_order(kafka, cluster, trader):
    env = {**os.environ, "ATLAS_KAFKA_BOOTSTRAP": cluster.bootstrap, "ATLAS_TOPIC_PREFIX": cluster.app_id}
    out = subprocess.run([sys.executable, "-m", "atlas", "submit", "--account", trader.account_id,
                          "--symbol", "ETH-USD", "--side", "SELL", "--quantity", "0.5", "--price", "3300.00",
                          "--client-order-id", "from-cli"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    order_id = order_id_for(trader.account_id, "from-cli")
    order = trader.wait_for(f"/api/v1/orders/{order_id}", lambda o: o["status"] == "PENDING_NEW")
    assert (order["side"], order["quantity"], order["price"]) == ("SELL", "0.5", "3300.00")
