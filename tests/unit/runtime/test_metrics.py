"""What the OMS's reports count in the Prometheus metrics."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from atlas.analytics.telemetry import Telemetry
from atlas.core.events import ExecType, OrdStatus
from atlas.runtime import metrics
from tests.helpers import execution_report as report


def observe(reports: list, orders: list, now_ms: int) -> None:
    """As the `oms` agent counts an event: its telemetry times the latencies, and passes each report on."""
    Telemetry().observe(reports, orders, now_ms, metrics.observe_report)


def sample(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.mark.parametrize("reason, code", [
    ("UNKNOWN_SYMBOL: no instrument XYZ", "UNKNOWN_SYMBOL"), ("INSUFFICIENT_BALANCE", "INSUFFICIENT_BALANCE"),
    ("not a code: at all", "OTHER"), (None, "OTHER"), ("", "OTHER"), ("A" * 41, "OTHER"), ("lower_case: x", "OTHER"),
])
def test_reason_code_is_the_leading_code_or_other(reason, code):
    assert metrics.reason_code(reason) == code


def test_reports_count_orders_by_type_and_outcome_rejects_by_reason_and_fills_by_symbol():
    before = {"submitted": sample("atlas_orders_total", type="LIMIT", outcome="submitted"),
              "rejected": sample("atlas_orders_total", type="MARKET", outcome="rejected"),
              "reason": sample("atlas_order_rejects_total", reason="MAX_NOTIONAL"),
              "filled": sample("atlas_orders_total", type="LIMIT", outcome="filled"),
              "fills": sample("atlas_fills_total", symbol="BTC-USD"),
              "notional": sample("atlas_traded_notional_total", symbol="BTC-USD"),
              "acks": sample("atlas_order_ack_latency_seconds_count"),
              "first_fills": sample("atlas_order_fill_latency_seconds_count"),
              "ack_sum": sample("atlas_order_ack_latency_seconds_sum")}
    order = SimpleNamespace(order_id="O1", created_at=1_000)
    observe([report(ExecType.PENDING_NEW, OrdStatus.PENDING_NEW)], [order], 1_010)
    observe([report(ExecType.NEW, OrdStatus.NEW)], [order], 1_250)
    observe([report(ExecType.TRADE, OrdStatus.PARTIALLY_FILLED, last_qty="1", last_px="100.5", cum_qty="1")],
            [order], 1_500)
    observe([report(ExecType.TRADE, OrdStatus.FILLED, last_qty="1", last_px="101", cum_qty="2")], [order], 1_600)
    observe([report(ExecType.REJECTED, OrdStatus.REJECTED, order_id="O2", order_type="MARKET",
                    reason="MAX_NOTIONAL: over 1000000")], [], 1_700)

    assert sample("atlas_orders_total", type="LIMIT", outcome="submitted") == before["submitted"] + 1
    assert sample("atlas_orders_total", type="MARKET", outcome="rejected") == before["rejected"] + 1
    assert sample("atlas_order_rejects_total", reason="MAX_NOTIONAL") == before["reason"] + 1
    assert sample("atlas_orders_total", type="LIMIT", outcome="filled") == before["filled"] + 1
    assert sample("atlas_fills_total", symbol="BTC-USD") == before["fills"] + 2
    assert sample("atlas_traded_notional_total", symbol="BTC-USD") == pytest.approx(before["notional"] + 201.5)
    assert sample("atlas_order_ack_latency_seconds_count") == before["acks"] + 1
    assert sample("atlas_order_ack_latency_seconds_sum") == pytest.approx(before["ack_sum"] + 0.25)
    assert sample("atlas_order_fill_latency_seconds_count") == before["first_fills"] + 1  # the first fill only


def test_a_latency_needs_the_order_it_times():
    before = sample("atlas_order_ack_latency_seconds_count")
    observe([report(ExecType.NEW, OrdStatus.NEW, order_id="O9")], [], 2_000)
    assert sample("atlas_order_ack_latency_seconds_count") == before
