"""The Grafana dashboards, written as JSON into infra/grafana/dashboards/ from the panel lists below.

`python infra/grafana/dashboards.py` rewrites them; a unit test checks the committed JSON is what
this writes, and the live test evaluates every query against a real Prometheus.
"""
from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATASOURCE = {"type": "prometheus", "uid": "atlas-prometheus"}
RATE = "$__rate_interval"


def _quantiles(metric: str, by: str = "") -> list[tuple[str, str]]:
    group = f"{by}, le" if by else "le"
    prefix = "{{" + by + "}} " if by else ""
    return [(f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket[{RATE}])))", f"{prefix}p{int(q * 100)}")
            for q in (0.5, 0.9, 0.99)]


# Per dashboard: (uid, title, [(panel title, unit, [(expr, legend)])]), two panels a row.
DASHBOARDS = [
    ("atlas-trading", "ATLAS / Trading", [
        ("Orders per second by outcome", "ops", [(f"sum by (outcome) (rate(atlas_orders_total[{RATE}]))", "{{outcome}}")]),
        ("Fills per second by symbol", "ops", [(f"sum by (symbol) (rate(atlas_fills_total[{RATE}]))", "{{symbol}}")]),
        ("Rejects per second by reason", "ops",
         [(f"sum by (reason) (rate(atlas_order_rejects_total[{RATE}]))", "{{reason}}")]),
        ("Open orders", "short", [("sum(atlas_open_orders)", "open orders")]),
        ("Submit to ack latency", "s", _quantiles("atlas_order_ack_latency_seconds")),
        ("Submit to first fill latency", "s", _quantiles("atlas_order_fill_latency_seconds")),
        ("Traded notional per second (quote currency)", "short",
         [(f"sum by (symbol) (rate(atlas_traded_notional_total[{RATE}]))", "{{symbol}}")]),
        ("Kill switches and halts", "short", [
            ("max(atlas_global_kill_switch_engaged)", "global kill switch"),
            ("sum(atlas_accounts_kill_switched)", "accounts kill-switched"),
            ("sum(atlas_symbol_halted) or vector(0)", "symbols halted")]),
        ("HTTP requests per second by route and status", "reqps",
         [(f"sum by (route, status) (rate(atlas_http_requests_total[{RATE}]))", "{{route}} {{status}}")]),
        ("HTTP p99 latency by route", "s", [(
            f"histogram_quantile(0.99, sum by (route, le) (rate(atlas_http_request_duration_seconds_bucket[{RATE}])))",
            "{{route}}")]),
    ]),
    ("atlas-kafka", "ATLAS / Kafka", [
        ("Consumer lag by group", "short", [("sum by (group) (atlas_consumer_lag_messages)", "{{group}}")]),
        ("Consumer lag by group, topic and partition", "short", [
            ("sum by (group, topic, partition) (atlas_consumer_lag_messages)", "{{group}} {{topic}}/{{partition}}")]),
        ("Records per second per agent", "ops",
         [(f"sum by (agent) (rate(atlas_agent_events_total[{RATE}]))", "{{agent}}")]),
        ("Batch duration per agent", "s", _quantiles("atlas_agent_batch_duration_seconds", "agent")),
        ("Commit latency", "s", _quantiles("atlas_commit_latency_seconds")),
        ("Dead letters per second", "ops",
         [(f"sum by (agent) (rate(atlas_dead_letters_total[{RATE}]))", "{{agent}}")]),
    ]),
    ("atlas-audit", "ATLAS / Audit", [
        ("Exporter lag (oldest record not yet in the sink)", "s",
         [("max by (instance) (atlas_audit_lag_seconds)", "{{instance}}")]),
        ("Records not yet exported, by topic", "short", [
            ("sum by (topic) (atlas_consumer_lag_messages{group=~\".+-audit\"})", "{{topic}}")]),
        ("Objects written per second", "ops", [(f"sum(rate(atlas_audit_objects_written_total[{RATE}]))", "objects")]),
        ("Records written per second", "ops", [(f"sum(rate(atlas_audit_records_written_total[{RATE}]))", "records")]),
        ("Sink errors", "short", [
            (f"sum by (instance) (increase(atlas_audit_sink_errors_total[{RATE}]))", "{{instance}} failed writes"),
            ("sum(atlas_audit_refused_partitions)", "refused partitions")]),
        ("Sink failing for", "s", [("max by (instance) (atlas_audit_sink_failing_seconds)", "{{instance}}")]),
    ]),
    ("atlas-workers", "ATLAS / Workers", [
        ("Workers up", "short", [("up{job=\"atlas\"}", "{{instance}}")]),
        ("CPU (cores)", "short", [(f"rate(atlas_process_cpu_seconds_total[{RATE}])", "{{instance}}")]),
        ("Resident memory", "bytes", [("atlas_process_resident_memory_bytes", "{{instance}}")]),
        ("Event loop lag", "s", _quantiles("atlas_event_loop_lag_seconds", "instance")),
        ("Table keys (estimate)", "short", [("sum by (table) (atlas_table_keys)", "{{table}}")]),
        ("Live-stream sessions", "short", [("sum by (state) (atlas_stream_sessions)", "{{state}}")]),
    ]),
]


def dashboard(uid: str, title: str, panels: list) -> dict:
    """A Grafana dashboard (schema 39) of time-series panels, two a row."""
    built = []
    for n, (name, unit, queries) in enumerate(panels):
        built.append({
            "id": n + 1, "type": "timeseries", "title": name, "datasource": DATASOURCE,
            "gridPos": {"h": 8, "w": 12, "x": 12 * (n % 2), "y": 8 * (n // 2)},
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                        "tooltip": {"mode": "multi", "sort": "desc"}},
            "targets": [{"refId": chr(ord("A") + i), "datasource": DATASOURCE, "expr": expr, "legendFormat": legend}
                        for i, (expr, legend) in enumerate(queries)],
        })
    return {"uid": uid, "title": title, "tags": ["atlas"], "timezone": "browser", "schemaVersion": 39, "version": 1,
            "editable": True, "refresh": "5s", "time": {"from": "now-15m", "to": "now"},
            "templating": {"list": []}, "annotations": {"list": []}, "panels": built}


def rendered() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {f"{uid.removeprefix('atlas-')}.json": json.dumps(dashboard(uid, title, panels), indent=2) + "\n"
            for uid, title, panels in DASHBOARDS}


def main() -> None:
    """Write every dashboard's JSON next to this file."""
    for name, text in rendered().items():
        (HERE / "dashboards" / name).write_text(text)
        print(HERE / "dashboards" / name)


if __name__ == "__main__":
    main()
