"""Traces, metrics and logs of a live worker, read back through real servers.

One worker (venue and audit exporter on) exports its spans over OTLP to a receiver running as its
own process (oteltest's sink), writes JSON log lines, and is scraped every second by a real
Prometheus (Debian's package) loaded with the repository's alert rules.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from decimal import Decimal as D
from pathlib import Path

import pytest

from atlas.core.values import order_id_for
from atlas.infra.grafana.dashboards import rendered
from atlas.infra.kafka.broker import free_port
from atlas.infra.prometheus.server import RULES, LocalPrometheus
from prometheus_client.parser import text_string_to_metric_families
from tests.live import Api, Cluster, Kafka, mid
from tests.otlp_receiver import Receiver

pytestmark = pytest.mark.integration

RATE_WINDOW = "10s"  # what Grafana's $__rate_interval becomes here (four 1 s scrapes and more)


@pytest.fixture(scope="module")
def receiver(tmp_path_factory):
    found = Receiver(tmp_path_factory.mktemp("otlp"), free_port())
    yield found
    found.stop()


@pytest.fixture(scope="module")
def cluster(kafka_bootstrap, tmp_path_factory, receiver):
    root = tmp_path_factory.mktemp("atlas")
    keys_file = root / "keys.json"
    cluster = Cluster(kafka_bootstrap, root, f"obs-{uuid.uuid4().hex[:8]}", venue=True, audit=True,
                      extra_env={"ATLAS_OTEL_ENDPOINT": receiver.endpoint, "ATLAS_OTEL_SAMPLE_RATIO": "1",
                                 "ATLAS_LOG_FORMAT": "json", "ATLAS_ACCESS_LOG": "true",
                                 "ATLAS_KEYS_FILE": str(keys_file)})
    made = subprocess.run([sys.executable, "-m", "atlas", "keys", "--file", str(keys_file), "create", "--account", "admin",
                           "--scope", "metrics"], env={**os.environ, **cluster.env("keys", 1)},
                          capture_output=True, text=True, check=True)
    cluster.metrics_key = made.stdout.split()[0]  # a Prometheus server's key: the metrics scope alone
    cluster.start_worker()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def prometheus(cluster, tmp_path_factory):
    worker = cluster.workers[0]
    server = LocalPrometheus(tmp_path_factory.mktemp("prometheus"), free_port(), [f"127.0.0.1:{worker.port}"],
                             cluster.metrics_key, interval="1s").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def alice(cluster) -> Api:
    return Api(cluster.workers[0].url, cluster.keys["alice"])


def _value(prometheus: LocalPrometheus, expr: str) -> float:
    result = prometheus.query(expr)
    return float(result[0]["value"][1]) if result else 0.0


def _wait(condition, what: str, timeout: float = 45.0):
    deadline = time.monotonic() + timeout
    while True:
        found = condition()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not seen within {timeout}s")
        time.sleep(0.5)


def _marketable_buy(alice: Api) -> str:
    """Place a BUY priced well through the mid (it fills at once); returns its order id."""
    price = (mid(alice) * D("1.05")).quantize(D("0.01"))
    response = alice.order(price=str(price), quantity="0.001", time_in_force="IOC")
    assert response.status == 202, response
    return response.body["order_id"]


# -- traces ---------------------------------------------------------------------------------

def _trace_of(receiver: Receiver, order_id: str, wanted: int) -> list[dict]:
    """The spans of the trace holding the order's spans, once it has `wanted` spans about the order."""
    def found(spans):
        ours = [s for s in spans if s["attributes"].get("atlas.order_id") == order_id]
        return len(ours) >= wanted
    spans = receiver.wait_for(found)
    trace_id = next(s["trace_id"] for s in spans if s["attributes"].get("atlas.order_id") == order_id)
    return [s for s in spans if s["trace_id"] == trace_id]


def _one(spans: list[dict], name: str, **attributes) -> dict:
    matching = [s for s in spans if s["name"] == name
                and all(s["attributes"].get(k) == v for k, v in attributes.items())]
    assert len(matching) == 1, f"{name} {attributes}: {len(matching)} spans in {[s['name'] for s in spans]}"
    return matching[0]


def test_an_order_placed_over_http_is_one_trace_through_gateway_oms_venue_and_oms_again(cluster, receiver, alice,
                                                                                       kafka_bootstrap):
    order_id = _marketable_buy(alice)
    spans = _trace_of(receiver, order_id, wanted=3)  # oms (submit), venue, oms (the venue's reports)
    http = _one(spans, "POST /api/v1/orders")
    send = _one(spans, f"send {cluster.topic('commands')}")
    oms_command = _one(spans, f"oms process {cluster.topic('commands')}")
    venue = _one(spans, f"venue process {cluster.topic('venue.orders')}")
    oms_report = _one(spans, f"oms process {cluster.topic('venue.reports')}")

    assert http["parent_id"] == "" and http["kind"] == "SPAN_KIND_SERVER"
    assert http["attributes"]["http.route"] == "/api/v1/orders"
    assert send["parent_id"] == http["span_id"] and send["kind"] == "SPAN_KIND_PRODUCER"
    assert oms_command["parent_id"] == send["span_id"] and oms_command["kind"] == "SPAN_KIND_CONSUMER"
    assert venue["parent_id"] == oms_command["span_id"]
    assert oms_report["parent_id"] == venue["span_id"]
    for span in (oms_command, venue, oms_report):
        assert span["attributes"]["atlas.account_id"] == "alice"
        assert span["attributes"]["atlas.order_id"] == order_id
        assert span["attributes"]["atlas.symbol"] == "BTC-USD"
        assert span["attributes"]["messaging.system"] == "kafka"
    assert "TRADE" in oms_report["attributes"]["atlas.exec_types"]

    # The execution reports carry the trace on: the span that applied the venue's reports sent them.
    records = Kafka(kafka_bootstrap).consume(
        cluster.topic("executions"),
        lambda rs: any(r["value"]["order_id"] == order_id and r["value"]["exec_type"] == "TRADE" for r in rs))
    trade = next(r for r in records if r["value"]["order_id"] == order_id and r["value"]["exec_type"] == "TRADE")
    assert trade["headers"]["traceparent"].decode() == f"00-{http['trace_id']}-{oms_report['span_id']}-01"


def test_a_trace_started_by_an_external_producer_continues_through_atlas(cluster, receiver, alice, kafka_bootstrap):
    price = (mid(alice) * D("1.05")).quantize(D("0.01"))
    client_order_id = f"ext-{uuid.uuid4().hex[:12]}"
    command = {"command": "SubmitOrder", "command_id": f"ext-{uuid.uuid4().hex[:12]}", "account_id": "alice",
               "client_order_id": client_order_id, "symbol": "BTC-USD", "side": "BUY", "type": "LIMIT",
               "quantity": "0.001", "price": str(price), "time_in_force": "IOC"}
    trace_id, parent_id = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    Kafka(kafka_bootstrap).produce(cluster.topic("commands"), [(b"alice", json.dumps(command).encode())],
                                   headers=[("traceparent", f"00-{trace_id}-{parent_id}-01".encode())])
    order_id = order_id_for("alice", client_order_id)
    spans = _trace_of(receiver, order_id, wanted=3)
    assert {s["trace_id"] for s in spans} == {trace_id}
    oms_command = _one(spans, f"oms process {cluster.topic('commands')}")
    venue = _one(spans, f"venue process {cluster.topic('venue.orders')}")
    oms_report = _one(spans, f"oms process {cluster.topic('venue.reports')}")
    assert oms_command["parent_id"] == parent_id  # the producer's span, which ATLAS never saw
    assert venue["parent_id"] == oms_command["span_id"]
    assert oms_report["parent_id"] == venue["span_id"]


def test_a_resting_order_filled_by_another_traders_order_is_applied_in_its_own_trace(cluster, receiver,
                                                                                      kafka_bootstrap):
    # The maker's ladder taken away on SOL-USD: bob's ask rests until alice's bid meets it.
    sent = int(time.time() * 1000)
    kafka = Kafka(kafka_bootstrap)
    kafka.produce(cluster.topic("venue.control"),
                  [(b"SOL-USD", json.dumps({"symbol": "SOL-USD", "levels": 0, "ts": sent}).encode())])
    kafka.consume(cluster.topic("marketdata"), lambda seen: any(
        isinstance(r["value"], dict) and r["value"].get("type") == "book" and r["value"]["symbol"] == "SOL-USD"
        and r["value"]["ts"] > sent and not r["value"]["bids"] and not r["value"]["asks"] for r in seen), timeout=30)
    bob, alice = Api(cluster.workers[0].url, cluster.keys["bob"]), Api(cluster.workers[0].url, cluster.keys["alice"])
    ask = bob.order(symbol="SOL-USD", side="SELL", quantity="2.00", price="150.000")
    assert ask.status == 202, ask
    bob.wait_for(f"/api/v1/orders/{ask.body['order_id']}", lambda doc: doc["status"] == "NEW")
    bid = alice.order(symbol="SOL-USD", side="BUY", quantity="2.00", price="150.000")
    assert bid.status == 202, bid

    reports_topic = f"oms process {cluster.topic('venue.reports')}"

    def bobs_fill(spans):
        return [s for s in spans if s["name"] == reports_topic and s["attributes"].get("atlas.order_id")
                == ask.body["order_id"] and "TRADE" in s["attributes"].get("atlas.exec_types", [])]
    spans = receiver.wait_for(bobs_fill)
    [fill] = bobs_fill(spans)
    bobs = [s for s in spans if s["trace_id"] == fill["trace_id"]]
    submitted = _one(bobs, f"oms process {cluster.topic('commands')}")
    assert submitted["attributes"]["atlas.order_id"] == ask.body["order_id"]
    assert _one(bobs, "POST /api/v1/orders")["parent_id"] == ""
    assert fill["parent_id"] == submitted["span_id"]  # in bob's trace, under the span that accepted his order
    alices_venue = [s for s in spans if s["name"] == f"venue process {cluster.topic('venue.orders')}"
                    and s["attributes"].get("atlas.order_id") == bid.body["order_id"]]
    assert len(alices_venue) == 1 and alices_venue[0]["trace_id"] != fill["trace_id"]
    assert fill["links"] == [{"trace_id": alices_venue[0]["trace_id"], "span_id": alices_venue[0]["span_id"]}]


def test_a_rejected_order_has_a_reject_event_with_its_reason_code(cluster, receiver, alice):
    response = alice.order(quantity="50", price="64000.00")  # over alice's notional limit (1,000,000)
    assert response.status == 202, response
    order_id = response.body["order_id"]
    spans = _trace_of(receiver, order_id, wanted=1)
    oms_command = _one(spans, f"oms process {cluster.topic('commands')}")
    events = [e for e in oms_command["events"] if e["name"] == "rejected"]
    assert len(events) == 1 and re.fullmatch(r"[A-Z_]+", events[0]["attributes"]["atlas.reason_code"])
    assert events[0]["attributes"]["atlas.reason_code"] != "OTHER"


def test_the_exporters_batch_spans_link_to_the_records_they_carry(cluster, receiver, alice):
    order_id = _marketable_buy(alice)
    spans = _trace_of(receiver, order_id, wanted=3)
    send = _one(spans, f"send {cluster.topic('commands')}")
    batches = receiver.wait_for(lambda all_spans: any(
        s["name"] == f"audit write {cluster.topic('commands')}"
        and {"trace_id": send["trace_id"], "span_id": send["span_id"]} in s["links"] for s in all_spans))
    linked = [s for s in batches if s["name"] == f"audit write {cluster.topic('commands')}"
              and {"trace_id": send["trace_id"], "span_id": send["span_id"]} in s["links"]]
    assert linked[0]["trace_id"] != send["trace_id"]  # a root of its own, linked, not a child of one order


def test_json_log_lines_parse_and_carry_the_trace_id_of_the_active_span(cluster, receiver, alice):
    order_id = _marketable_buy(alice)
    spans = _trace_of(receiver, order_id, wanted=1)
    http = _one(spans, "POST /api/v1/orders")
    log_path = Path(cluster.workers[0].log_path)

    def access_line():
        for line in log_path.read_text(errors="replace").splitlines():
            if line.startswith("{") and http["trace_id"] in line:
                return json.loads(line)
        return None

    line = _wait(access_line, "an access log line of the order's request")
    assert line["trace_id"] == http["trace_id"] and re.fullmatch(r"[0-9a-f]{16}", line["span_id"])
    assert line["logger"] == "atlas.access" and "POST /api/v1/orders" in line["message"]
    for raw in log_path.read_text(errors="replace").splitlines():
        if raw.startswith("{"):
            doc = json.loads(raw)  # every JSON line parses
            assert {"time", "level", "logger", "message"} <= doc.keys()
            assert cluster.keys["alice"] not in raw and cluster.keys["admin"] not in raw


# -- metrics --------------------------------------------------------------------------------

def test_metrics_need_a_key_with_the_metrics_scope(cluster):
    url = cluster.workers[0].url
    assert Api(url).get("/metrics").status == 401
    assert Api(url, "not-a-key").get("/metrics").status == 401
    assert Api(url, cluster.keys["alice"]).get("/metrics").status == 403  # a trader's key
    bearer = Api(url).get("/metrics", headers={"Authorization": f"Bearer {cluster.metrics_key}"})
    assert bearer.status == 200 and bearer.headers["content-type"].startswith("text/plain")
    assert Api(url, cluster.keys["admin"]).get("/metrics").status == 200  # an admin's key holds the scope too
    # The metrics key reads /metrics and nothing else.
    assert Api(url, cluster.metrics_key).get("/api/v1/orders").status == 403
    assert Api(url, cluster.metrics_key).get("/api/v1/telemetry").status == 403


def test_promtool_accepts_the_exposition(cluster, alice):
    _marketable_buy(alice)
    response = Api(cluster.workers[0].url, cluster.keys["admin"]).get("/metrics")
    checked = subprocess.run(["promtool", "check", "metrics"], input=response.body, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "atlas_orders_total" in response.body and "atlas_consumer_lag_messages" in response.body


def _scraped(cluster, name: str, **labels: str) -> float:
    """The sum of a metric's samples with `labels`, read from the worker's /metrics now."""
    text = Api(cluster.workers[0].url, cluster.metrics_key).get("/metrics").body
    return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
               if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()))


def test_prometheus_sees_orders_fills_and_latency_move(cluster, prometheus, alice):
    _wait(lambda: _value(prometheus, 'up{job="atlas"}') == 1, "the worker scraped")
    before = {  # from the worker itself: a scrape Prometheus made a while ago could be older
        "submitted": _scraped(cluster, "atlas_orders_total", outcome="submitted"),
        "fills": _scraped(cluster, "atlas_fills_total"),
        "ack": _scraped(cluster, "atlas_order_ack_latency_seconds_count"),
        "fill": _scraped(cluster, "atlas_order_fill_latency_seconds_count"),
        "http": _scraped(cluster, "atlas_http_requests_total", route="/api/v1/orders", method="POST")}
    for _ in range(3):
        _marketable_buy(alice)
    _wait(lambda: _value(prometheus, 'sum(atlas_orders_total{outcome="submitted"})') >= before["submitted"] + 3,
          "three more submitted orders")
    _wait(lambda: _value(prometheus, "sum(atlas_fills_total)") >= before["fills"] + 3, "three more fills")
    _wait(lambda: _value(prometheus, "sum(atlas_order_ack_latency_seconds_count)") >= before["ack"] + 3,
          "three more ack latencies")
    _wait(lambda: _value(prometheus, "sum(atlas_order_fill_latency_seconds_count)") >= before["fill"] + 3,
          "three more fill latencies")
    _wait(lambda: _value(prometheus, 'sum(atlas_http_requests_total{route="/api/v1/orders", method="POST"})')
          >= before["http"] + 3, "three more POSTs")
    p99 = _value(prometheus, f"histogram_quantile(0.99, sum by (le) "
                             f"(rate(atlas_order_ack_latency_seconds_bucket[5m])))")
    assert 0 < p99 < 60
    audit_lag = _value(prometheus, "max(atlas_audit_lag_seconds)")
    assert 0 <= audit_lag < 60  # the exporter writes every second here


def test_prometheus_has_lag_series_for_every_group(cluster, prometheus, alice):
    _marketable_buy(alice)

    def groups():
        found = {(s["metric"]["group"], s["metric"]["topic"]) for s in prometheus.query("atlas_consumer_lag_messages")}
        wanted = {(cluster.app_id, cluster.topic("commands")), (cluster.app_id, cluster.topic("venue.orders")),
                  (cluster.app_id, cluster.topic("venue.reports")), (f"{cluster.app_id}-audit", cluster.topic("commands")),
                  (f"{cluster.app_id}-audit", cluster.topic("executions"))}
        return wanted <= found and found
    found = _wait(groups, "lag series of the agents' group and the exporter's")
    assert {group for group, _ in found} == {cluster.app_id, f"{cluster.app_id}-audit"}


def test_every_dashboard_and_rule_expression_evaluates(prometheus, alice):
    _marketable_buy(alice)
    exprs = []
    for name, text in rendered().items():
        for panel in json.loads(text)["panels"]:
            exprs += [(f"{name}: {panel['title']}", t["expr"].replace("$__rate_interval", RATE_WINDOW))
                      for t in panel["targets"]]
    assert len(exprs) > 20
    failures = []
    for what, expr in exprs:
        try:
            prometheus.query(expr)
        except RuntimeError as error:
            failures.append(f"{what}: {error}")
    assert not failures, "\n".join(failures)

    def evaluated():
        groups = prometheus.api("rules")["groups"]
        rules = [r for g in groups for r in g["rules"]]
        return rules if rules and all(r.get("lastEvaluation", "").startswith("20") for r in rules) else None
    rules = _wait(evaluated, "every rule evaluated")
    assert len(rules) == RULES.read_text().count("- alert:")
    assert all(r["health"] == "ok" and not r.get("lastError") for r in rules), rules
    for rule in rules:
        prometheus.query(rule["query"])
