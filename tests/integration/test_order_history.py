"""An account's order history over HTTP: pages newest first, reports a page at a time, retention and archive.

One worker keeps only 3 closed orders per account (`ATLAS_RETAIN_CLOSED_ORDERS=3`) and runs the
audit exporter; the test plays the venue on Kafka. An archived order answers a problem document
that says where its history is, and the README's query finds it in the trail.
"""
from __future__ import annotations

import json
import time

import pytest

from tests.live import Api, Cluster, Kafka, audit_cli, wait_exported

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster(kafka_bootstrap, tmp_path_factory):
    cluster = Cluster(kafka_bootstrap, tmp_path_factory.mktemp("history"), f"hist-{time.monotonic_ns() % 10**8}",
                      audit=True, audit_max_age=0.5, extra_env={"ATLAS_RETAIN_CLOSED_ORDERS": "3"})
    cluster.start_worker()
    yield cluster
    cluster.stop()


def _venue(kafka: Kafka, cluster: Cluster, account: str, order_id: str, kind: str, **fields) -> None:
    body = {"report_id": f"{order_id}-{kind}-{time.monotonic_ns()}", "kind": kind, "order_id": order_id,
            "account_id": account, "ts": int(time.time() * 1000), **fields}
    kafka.produce(cluster.topic("venue.reports"), [(account.encode(), json.dumps(body).encode())])


def _place(api: Api, n: int, **terms) -> str:
    placed = api.order(client_order_id=f"h-{n}", **terms)
    assert placed.status == 202, placed.body
    order_id = placed.body["order_id"]
    api.wait_for(f"/api/v1/orders/{order_id}", lambda o: o["status"] == "PENDING_NEW")
    return order_id


def _all_pages(api: Api, path: str, field: str, limit: int) -> tuple[list[dict], int]:
    """Every item of a paginated listing, following `next_cursor`; also the number of pages."""
    items, cursor, pages = [], None, 0
    while True:
        sep = "&" if "?" in path else "?"
        response = api.get(f"{path}{sep}limit={limit}" + (f"&cursor={cursor}" if cursor else ""))
        assert response.status == 200, response.body
        items.extend(response.body[field])
        pages += 1
        cursor = response.body["next_cursor"]
        if cursor is None:
            return items, pages


def test_orders_are_listed_newest_first_a_page_at_a_time(cluster):
    api = cluster.trader(1)
    ids = [_place(api, n) for n in range(7)]

    listed, pages = _all_pages(api, "/api/v1/orders", "orders", limit=3)

    assert [o["order_id"] for o in listed] == ids[::-1] and pages == 3
    first = api.get("/api/v1/orders?limit=2&status=open").body
    assert [o["order_id"] for o in first["orders"]] == ids[:-3:-1] and first["next_cursor"] is not None


def test_executions_come_a_page_at_a_time_oldest_first(cluster, kafka):
    api = cluster.trader(2)
    order_id = _place(api, 0, quantity="0.05")
    _venue(kafka, cluster, api.account_id, order_id, "ACCEPTED")
    for _ in range(4):
        _venue(kafka, cluster, api.account_id, order_id, "FILL", last_qty="0.01", last_px="64000.00")
    api.wait_for(f"/api/v1/orders/{order_id}", lambda o: o["status"] == "PARTIALLY_FILLED" and o["seq"] == 6)

    reports, pages = _all_pages(api, f"/api/v1/orders/{order_id}/executions", "executions", limit=4)

    assert [r["seq"] for r in reports] == [1, 2, 3, 4, 5, 6] and pages == 2
    assert [r["exec_type"] for r in reports] == ["PENDING_NEW", "NEW", "TRADE", "TRADE", "TRADE", "TRADE"]


def test_page_arguments_out_of_range_are_a_400(cluster):
    api = cluster.trader(3)
    for query in ("limit=0", "limit=1001", "limit=x", "cursor=-1", "cursor=" + "9" * 20):
        response = api.get(f"/api/v1/orders?{query}")
        assert response.status == 400 and response.body["code"] == "INVALID_QUERY", query


def test_closed_orders_past_retention_are_archived_and_found_in_the_audit_trail(cluster, kafka):
    api = cluster.trader(4)
    ids = [_place(api, n) for n in range(5)]
    for order_id in ids:
        _venue(kafka, cluster, api.account_id, order_id, "CANCELED")
        api.wait_for(f"/api/v1/orders/{order_id}", lambda o: o["status"] == "CANCELED")
    still_open = _place(api, 99)  # one more event: archiving runs with each event

    api.wait_for("/api/v1/orders?status=closed", lambda doc: len(doc["orders"]) == 3)
    gone = api.get(f"/api/v1/orders/{ids[0]}")
    assert gone.status == 404 and gone.body["code"] == "ORDER_ARCHIVED_OR_UNKNOWN"
    assert gone.body["archived_orders"] == 2 and gone.body["audit_query"] == f"python -m atlas audit order {ids[0]}"
    assert api.get(f"/api/v1/orders/{ids[0]}/executions").status == 404
    assert api.get(f"/api/v1/orders/{ids[2]}").body["status"] == "CANCELED"
    assert api.get(f"/api/v1/orders/{still_open}").body["status"] == "PENDING_NEW"

    wait_exported(cluster, ("executions",))
    story = audit_cli(cluster, "order", ids[0])
    assert story.returncode == 0, story.stderr
    reports = [json.loads(line) for line in story.stdout.splitlines()]
    assert [(r["seq"], r["exec_type"]) for r in reports] == [(1, "PENDING_NEW"), (2, "CANCELED")]
    assert audit_cli(cluster, "order", "O-never-existed").returncode == 1
