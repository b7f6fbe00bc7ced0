"""The worker's Prometheus metrics: what the agents and the gateway count as they go.

Everything here is updated in place (a counter's `inc`, a histogram's `observe`) and read by
`GET /metrics` (`atlas.web.prometheus`), which adds what is cheaper to read at scrape time:
consumer lag, table sizes, open orders, sessions. Names carry the `atlas_` prefix and their
unit. Labels take values from small fixed sets only (order types, outcomes, reason codes,
symbols of the instruments file, routes of the router), never ids.

Amounts are counted as floats: these are measurements for dashboards, not money; the
order path keeps its exact decimals.
"""
from __future__ import annotations

from typing import Any

from faust.sensors import Monitor
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.process_collector import ProcessCollector

from atlas.core.events import reason_code

disable_created_metrics()  # the `_created` series only double what a scrape holds
REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(namespace="atlas", registry=REGISTRY)  # atlas_process_cpu_seconds_total, ..._resident_memory_bytes

# Seconds: from a millisecond to a minute, dense where the order path lives.
LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
FAST_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

ORDERS = Counter("atlas_orders", "Orders by type and what happened to them (submitted, accepted, rejected, "
                 "filled, canceled, expired)", ["type", "outcome"], registry=REGISTRY)
REJECTS = Counter("atlas_order_rejects", "Rejected orders and requests by reason code", ["reason"], registry=REGISTRY)
FILLS = Counter("atlas_fills", "Fills applied by the OMS", ["symbol"], registry=REGISTRY)
NOTIONAL = Counter("atlas_traded_notional", "Traded notional (price x quantity of fills) in the symbol's quote "
                   "currency", ["symbol"], registry=REGISTRY)
ACK_LATENCY = Histogram("atlas_order_ack_latency_seconds", "Submit (the SubmitOrder's Kafka timestamp) to the "
                        "order's first NEW report", buckets=LATENCY_BUCKETS, registry=REGISTRY)
FILL_LATENCY = Histogram("atlas_order_fill_latency_seconds", "Submit to the order's first fill",
                         buckets=LATENCY_BUCKETS, registry=REGISTRY)
DEAD_LETTERS = Counter("atlas_dead_letters", "Input messages set aside on atlas.deadletter", ["agent"],
                       registry=REGISTRY)
AGENT_EVENTS = Counter("atlas_agent_events", "Kafka records each agent has processed", ["agent"], registry=REGISTRY)
AGENT_BATCH_SECONDS = Histogram("atlas_agent_batch_duration_seconds", "Time an agent takes over one batch of "
                                "records, sends included", ["agent"], buckets=FAST_BUCKETS, registry=REGISTRY)
HTTP_REQUESTS = Counter("atlas_http_requests", "HTTP requests answered, by route, method and status",
                        ["route", "method", "status"], registry=REGISTRY)
HTTP_LATENCY = Histogram("atlas_http_request_duration_seconds", "Time to answer an HTTP request, by route and method",
                         ["route", "method"], buckets=FAST_BUCKETS, registry=REGISTRY)
COMMIT_LATENCY = Histogram("atlas_commit_latency_seconds", "Time the worker's consumer takes to commit its offsets",
                           buckets=FAST_BUCKETS, registry=REGISTRY)
LOOP_LAG = Histogram("atlas_event_loop_lag_seconds", "How late the worker's event loop runs a callback that was due",
                     buckets=FAST_BUCKETS, registry=REGISTRY)
AUDIT_OBJECTS = Counter("atlas_audit_objects_written", "Objects the audit exporter wrote to its sink",
                        registry=REGISTRY)
AUDIT_RECORDS = Counter("atlas_audit_records_written", "Records the audit exporter wrote to its sink",
                        registry=REGISTRY)
AUDIT_ERRORS = Counter("atlas_audit_sink_errors", "Failed writes to the audit sink (each retry counts)",
                       registry=REGISTRY)
WORKER_INFO = Gauge("atlas_worker_info", "1, labelled with the worker's app id and processing guarantee",
                    ["app_id", "guarantee"], registry=REGISTRY)

_OUTCOMES = {"PENDING_NEW": "submitted", "NEW": "accepted", "REJECTED": "rejected", "CANCELED": "canceled",
             "EXPIRED": "expired"}
UNKNOWN = "unknown"


def child(metric: Any, *labels: str) -> Any:
    """`metric.labels(*labels)`, kept: a label lookup costs several microseconds, a kept child one dict read."""
    key = (id(metric), labels)
    found = _children.get(key)
    if found is None:
        found = _children[key] = metric.labels(*labels)
    return found


_children: dict[tuple[int, tuple[str, ...]], Any] = {}


def observe_report(report: Any, latency_ms: int | None = None) -> None:
    """Count one execution report of the OMS; `latency_ms`: submit to this report, when it is an order's ack or first
    fill (as `atlas.analytics.telemetry.Telemetry.observe` times it and passes it on)."""
    kind = report.exec_type.value
    order_type = report.type.value if report.type is not None else UNKNOWN
    outcome = _OUTCOMES.get(kind)
    if outcome is not None:
        child(ORDERS, order_type, outcome).inc()
        if outcome == "rejected":
            child(REJECTS, reason_code(report.reason)).inc()
        elif outcome == "accepted" and latency_ms is not None:
            ACK_LATENCY.observe(latency_ms / 1000)
    elif kind == "TRADE":
        symbol = report.symbol or UNKNOWN
        child(FILLS, symbol).inc()
        if report.last_px is not None:
            child(NOTIONAL, symbol).inc(float(report.last_qty * report.last_px))
        if report.status.value == "FILLED":
            child(ORDERS, order_type, "filled").inc()
        if latency_ms is not None:
            FILL_LATENCY.observe(latency_ms / 1000)


class AtlasMonitor(Monitor):
    """Faust's monitor (the app's sensor of consumer, producer and tables), which also times commits here."""

    def on_commit_completed(self, consumer: Any, state: Any) -> None:
        super().on_commit_completed(consumer, state)
        COMMIT_LATENCY.observe(self.time() - state)
