"""The worker's telemetry: counts and latencies from the reports the real OMS core produces, merged across workers."""
from __future__ import annotations

from atlas.analytics.telemetry import Telemetry, merge
from atlas.oms.engine import Outcome
from tests.helpers import T0, Book, submit


def observe(telemetry: Telemetry, outcome: Outcome, now_ms: int) -> None:
    telemetry.observe(outcome.reports, outcome.orders, now_ms)


def flow(telemetry: Telemetry, ack_after_ms: int, fill_after_ms: int) -> None:
    """One order submitted, acknowledged and filled in two parts, observed as the agent observes them."""
    book = Book()
    submitted = book.command(submit())
    observe(telemetry, submitted, T0)
    (order,) = submitted.orders
    created = order.created_at
    observe(telemetry, book.venue(order.order_id, "ACCEPTED"), created + ack_after_ms)
    observe(telemetry, book.fill(order.order_id, "0.2", "63900"), created + fill_after_ms)
    observe(telemetry, book.fill(order.order_id, "0.3", "63900"), created + fill_after_ms + 500)


def test_observe_of_a_submit_counts_one_event_and_one_submit():
    telemetry = Telemetry()
    book = Book()
    observe(telemetry, book.command(submit()), T0)
    assert telemetry.counts["submitted"] == 1 and telemetry.counts["events"] == 1


def test_latencies_run_from_the_submit_to_the_first_ack_and_the_first_fill():
    telemetry = Telemetry()
    flow(telemetry, ack_after_ms=12, fill_after_ms=40)
    assert telemetry.counts["accepted"] == 1 and telemetry.counts["fills"] == 2
    assert telemetry.counts["filled_orders"] == 1
    view = merge([telemetry.snapshot()], now_ms=T0)
    ack, fill = view["latency_ms"]["submit_to_ack"], view["latency_ms"]["submit_to_fill"]
    assert ack["count"] == 1 and 11.9 <= float(ack["p50"]) <= 12.1  # 3 significant digits of a µs count
    assert fill["count"] == 1 and 39.9 <= float(fill["max"]) <= 40.1  # the second fill is no first fill
    assert sum(b["count"] for b in ack["buckets"]) == 1
    assert next(b for b in ack["buckets"] if b["count"])["le_ms"] == "<=20"


def test_a_rejected_order_counts_as_rejected_with_no_latency():
    telemetry = Telemetry()
    book = Book()
    observe(telemetry, book.command(submit(price="99000")), T0)  # outside the collar
    assert telemetry.counts["rejected"] == 1 and telemetry.ack_latency.get_total_count() == 0


def test_merge_sums_workers_and_rates_only_the_window():
    one, two = Telemetry(), Telemetry()
    flow(one, ack_after_ms=5, fill_after_ms=9)
    flow(two, ack_after_ms=300, fill_after_ms=700)
    now = (T0 // 1000 + 2) * 1000
    view = merge([one.snapshot(), two.snapshot()], now_ms=now, window_s=60)
    assert view["counts"]["accepted"] == 2 and view["counts"]["fills"] == 4
    assert view["latency_ms"]["submit_to_ack"]["count"] == 2
    assert float(view["latency_ms"]["submit_to_ack"]["max"]) >= 299
    assert sum(s["events"] for s in view["throughput"]["per_second"]) == 8
    later = merge([one.snapshot()], now_ms=now + 3_600_000)
    assert later["throughput"]["per_second"] == [] and later["throughput"]["events_per_s"] == "0.00"


def test_an_empty_telemetry_merges_to_zeroes():
    view = merge([Telemetry().snapshot()], now_ms=T0)
    assert view["counts"]["events"] == 0
    assert view["latency_ms"]["submit_to_fill"] == {"count": 0, "p50": None, "p90": None, "p99": None, "max": None,
                                                     "buckets": []}
