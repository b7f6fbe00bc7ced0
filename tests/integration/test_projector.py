"""The DynamoDB read model's projector against moto's DynamoDB over HTTP (its own process): the writes it makes.

Reports and account states go straight to `Projector` here; tests/integration/test_read_model.py
runs it as a process behind a live worker.
"""
from __future__ import annotations

import uuid
from decimal import Decimal as D

import pytest

from atlas.cloud import provision
from atlas.cloud.projector import Projector, created_key
from atlas.cloud.resources import TABLES
from atlas.infra.s3 import MotoServer
from atlas.oms.state import Balance
from tests.helpers import account, execution_report

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def dynamodb(tmp_path_factory):
    server = MotoServer(tmp_path_factory.mktemp("moto") / "moto.log").start()
    yield server.client("dynamodb")
    server.stop()


@pytest.fixture
def projector(dynamodb):
    prefix = f"p{uuid.uuid4().hex[:6]}"
    for spec in TABLES:
        provision.table(dynamodb, spec, prefix, lambda _: None)
    return Projector(dynamodb, prefix)


def report(seq: int, exec_type: str, status: str, order_id: str = "O1", ts: int | None = None, **fields: str):
    made = execution_report(exec_type, status, order_id=order_id, **fields)
    return made.model_copy(update={"exec_id": f"{order_id}-{seq}", "seq": seq, "ts": ts if ts is not None else seq})


def order_item(projector: Projector, order_id: str = "O1") -> dict:
    item = projector.db.get_item(TableName=projector.orders, Key={"account_id": {"S": "alice"},
                                                                   "order_id": {"S": order_id}},
                                 ConsistentRead=True).get("Item")
    return {k: next(iter(v.values())) for k, v in (item or {}).items()}


def executions(projector: Projector, order_id: str = "O1") -> list[int]:
    found = projector.db.query(TableName=projector.executions, KeyConditionExpression="order_id = :o",
                               ExpressionAttributeValues={":o": {"S": order_id}}, ConsistentRead=True)["Items"]
    return [int(i["seq"]["N"]) for i in found]


def test_an_orders_reports_make_its_item_and_its_executions(projector):
    assert projector.report(report(1, "PENDING_NEW", "PENDING_NEW", ts=1_000)) == "applied"
    assert projector.report(report(2, "NEW", "NEW", ts=1_100)) == "applied"
    item = order_item(projector)
    assert item["status"] == "NEW" and item["version"] == "2" and item["open_account_id"] == "alice"
    assert item["created_at"] == "1000" and item["updated_at"] == "1100"
    assert item["created_key"] == created_key(1_000, "O1") and item["quantity"] == "2" and item["price"] == "100"
    assert projector.report(report(3, "TRADE", "FILLED", last_qty="2", last_px="100.5", cum_qty="2")) == "applied"
    item = order_item(projector)
    assert item["status"] == "FILLED" and item["filled_quantity"] == "2" and item["leaves_quantity"] == "0"
    assert "open_account_id" not in item  # closed: out of the open-orders index
    assert executions(projector) == [1, 2, 3]


def test_a_report_sent_again_or_arriving_late_changes_nothing(projector):
    for seq, kind in ((1, "PENDING_NEW"), (2, "NEW"), (3, "CANCELED")):
        projector.report(report(seq, kind, kind))
    before = order_item(projector)
    assert projector.report(report(2, "NEW", "NEW")) == "duplicate"  # the same exec_id again
    other = report(2, "NEW", "NEW").model_copy(update={"exec_id": "O1-2-resent-under-another-id"})
    assert projector.report(other) == "duplicate"  # the order has its report at seq 2: the first one stays
    assert order_item(projector) == before and before["status"] == "CANCELED"
    assert executions(projector) == [1, 2, 3] and (projector.applied, projector.duplicates) == (3, 2)


def test_the_first_report_arriving_last_still_gives_the_creation_time(projector):
    projector.report(report(2, "NEW", "NEW", ts=2_000))
    assert order_item(projector)["created_at"] == "2000"  # the earliest seen so far
    assert projector.report(report(1, "PENDING_NEW", "PENDING_NEW", ts=1_500)) == "stale"
    item = order_item(projector)
    assert item["created_at"] == "1500" and item["status"] == "NEW" and executions(projector) == [1, 2]


def test_balances_follow_the_account_and_never_go_back(projector):
    state = account({"USD": "1000", "BTC": "2"}, account_id="alice")
    newer = state.model_copy(update={"seq": 5, "balances": {**state.balances, "USD": Balance(available=D("900"),
                                                                                             reserved=D("100"))}})
    assert projector.account(newer) == 2
    older = state.model_copy(update={"seq": 3})
    assert Projector(projector.db, projector.orders.rsplit("-", 1)[0]).account(older) == 0  # refused by the version
    found = projector.db.query(TableName=projector.balances, KeyConditionExpression="account_id = :a",
                               ExpressionAttributeValues={":a": {"S": "alice"}}, ConsistentRead=True)["Items"]
    assert {i["asset"]["S"]: (i["available"]["S"], i["reserved"]["S"], i["total"]["S"], i["version"]["N"])
            for i in found} == {"USD": ("900", "100", "1000", "5"), "BTC": ("2", "0", "2", "5")}
    assert projector.account(newer) == 0  # the same state again: not sent
    assert projector.account(newer.model_copy(update={"seq": 6})) == 2  # newer, even unchanged: another projector
    # may have written something else in between


def test_a_report_the_oms_keeps_nowhere_makes_no_order(projector):
    unknown = report(0, "CANCEL_REJECTED", "REJECTED", order_id="Onobody", reason="UNKNOWN_ORDER: no such order")
    assert projector.report(unknown) == "unstored"
    assert order_item(projector, "Onobody") == {} and executions(projector, "Onobody") == []
