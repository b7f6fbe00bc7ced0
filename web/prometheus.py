"""`GET /metrics`: this worker's Prometheus metrics, for a key with the `metrics` scope.

Prometheus sends the key as `Authorization: Bearer <key>` (its scrape config's `authorization`
block); `X-API-Key` works too. What the agents count as they go lives in `atlas.runtime.metrics`;
what is read at scrape time is collected here: consumer lag per group, topic and partition
(the agents' group, the audit exporter's and, reading the DynamoDB read model, the projector's), the exporter's lag in seconds, table sizes (RocksDB's
estimates: no scan), open orders and kill switches of the accounts this worker owns (the accounts
file bounds them), the global kill switch, halts, and live-stream sessions. Every worker answers for itself: Prometheus scrapes each one.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from atlas.agents.audit import AuditExporter
from atlas.agents.monitoring import CHANGELOG_SUFFIX, END_OFFSETS, Projection
from atlas.app import app
from atlas.core.accounts import Scope
from atlas.runtime import metrics
from atlas.runtime.partitioning import partition_for
from atlas.runtime.reference import directory, instruments
from atlas.settings import settings
from atlas.tables.market import current_market
from atlas.tables.oms import load_account
from atlas.web.common import principal
from atlas.web.problems import ApiView
from atlas.web.stream import SLOTS

log = logging.getLogger(__name__)


@app.page("/metrics")
class MetricsView(ApiView):
    """The Prometheus text exposition of this worker's metrics."""

    async def get(self, request: Any) -> Any:
        principal(request, Scope.METRICS)
        return web.Response(body=generate_latest(metrics.REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})


class ScrapeTime(Collector):
    """What a scrape reads from the running worker rather than counting as it goes."""

    def describe(self) -> list:
        """Nothing ahead of a scrape."""
        return []  # read only at scrape time (a worker not started yet has no consumer to describe)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """Each family on its own: one that fails (a consumer stopping under the scrape) leaves the others."""
        for family in (_lag, _audit, _accounts, _tables, _sessions, _market):
            try:
                yield from family()
            except Exception:
                log.exception("metrics: %s failed in this scrape", family.__name__)


def _lag() -> Iterator[GaugeMetricFamily]:
    lag = GaugeMetricFamily("atlas_consumer_lag_messages", "Records in a partition that the group has not "
                            "committed yet (its end offset, refreshed every few seconds, minus the committed offset)",
                            labels=["group", "topic", "partition"])
    for group, topic, partition, value in _consumer_lag():
        lag.add_metric([group, topic, str(partition)], value)
    yield lag


def _assignment() -> set:
    """The worker consumer's partitions; none while it starts or stops."""
    try:
        return set(app.consumer.assignment()) if app.consumer is not None else set()
    except Exception:  # ConsumerNotStarted, or a consumer stopping under the scrape
        return set()


def _end(tp: Any, fetched: Any) -> int | None:
    """A partition's end offset: the newer of what the last fetch saw and what the refresh task asked the broker."""
    try:
        seen = fetched(tp)
    except Exception:  # not fetched yet, or no longer assigned
        seen = None
    asked = END_OFFSETS.get(tp)
    found = [o for o in (seen, asked) if o is not None]
    return max(found) if found else None


def _consumer_lag() -> Iterator[tuple[str, str, int, int]]:
    consumer = app.consumer
    committed = app.monitor.tp_committed_offsets
    for tp in sorted(_assignment()):
        if tp.topic.endswith(CHANGELOG_SUFFIX):
            continue  # a table's changelog: restored, not consumed by an agent
        end, done = _end(tp, consumer.highwater), committed.get(tp)
        if end is not None and done is not None:
            yield settings.app_id, tp.topic, tp.partition, max(0, end - done)
    exporter = AuditExporter.current
    if exporter is not None:
        for tp, (end, written) in sorted(exporter.exported().items()):
            end = max(o for o in (end, END_OFFSETS.get(tp), 0) if o is not None)
            yield settings.audit_group, tp.topic, tp.partition, max(0, end - written)
    for (topic, partition), value in sorted(Projection.lag.items()):
        yield Projection.group, topic, partition, value


def _audit() -> Iterator[GaugeMetricFamily]:
    exporter = AuditExporter.current
    running = GaugeMetricFamily("atlas_audit_exporter_running", "1 while this worker's audit exporter runs")
    running.add_metric([], 1.0 if exporter is not None else 0.0)
    yield running
    if exporter is None:
        return
    lag = GaugeMetricFamily("atlas_audit_lag_seconds", "How long the oldest record read but not yet in the audit "
                            "sink has waited")
    lag.add_metric([], exporter.lag_seconds())
    yield lag
    failing = GaugeMetricFamily("atlas_audit_sink_failing_seconds", "How long the audit sink has been failing "
                                "(0 while it works)")
    failing.add_metric([], 0.0 if exporter.failing_since is None else time.monotonic() - exporter.failing_since)
    yield failing
    refused = GaugeMetricFamily("atlas_audit_refused_partitions", "Partitions the exporter stopped exporting (an "
                                "error it cannot retry; see /readyz)")
    refused.add_metric([], float(len(exporter.refused)))
    yield refused


def _owned_accounts() -> list[Any]:
    """The states of the accounts whose partition this worker holds (the accounts file bounds them: no table scan).

    Read past the OMS's cache, which is the agent's own.
    """
    commands = settings.topic("commands")
    owned = {tp.partition for tp in _assignment() if tp.topic == commands}
    found = []
    for account_id in list(directory().accounts):
        if partition_for(account_id.encode()) in owned:
            account = load_account(account_id)
            if account is not None:
                found.append(account)
    return found


def _accounts() -> Iterator[GaugeMetricFamily]:
    accounts = _owned_accounts()
    open_orders = GaugeMetricFamily("atlas_open_orders", "Open orders of the accounts this worker owns")
    open_orders.add_metric([], float(sum(account.open_count for account in accounts)))
    yield open_orders
    killed = GaugeMetricFamily("atlas_accounts_kill_switched", "Accounts this worker owns whose kill switch is engaged")
    killed.add_metric([], float(sum(1 for account in accounts if account.killed)))
    yield killed


def _tables() -> Iterator[GaugeMetricFamily]:
    sizes = GaugeMetricFamily("atlas_table_keys", "Keys in each table's local store (RocksDB's estimate, summed "
                              "over the partitions this worker holds)", labels=["table"])
    for name, table in sorted(app.tables.items()):
        dbs = getattr(table.data, "_dbs", None)
        if dbs is None:
            continue
        total = 0
        for db in list(dbs.values()):
            try:
                total += db.property_int_value("rocksdb.estimate-num-keys") or 0
            except Exception:  # a store closing under the scrape
                continue
        sizes.add_metric([name], float(total))
    yield sizes


def _sessions() -> Iterator[GaugeMetricFamily]:
    sessions = GaugeMetricFamily("atlas_stream_sessions", "Live streams (WebSockets) this worker serves",
                                 labels=["state"])
    sessions.add_metric(["subscribed"], SLOTS.subscribed.total())
    sessions.add_metric(["pending"], SLOTS.pending_count())
    yield sessions


def _market() -> Iterator[GaugeMetricFamily]:
    market = current_market(instruments())
    kill = GaugeMetricFamily("atlas_global_kill_switch_engaged", "1 while the global kill switch is engaged")
    kill.add_metric([], 1.0 if market.global_kill else 0.0)
    yield kill
    halted = GaugeMetricFamily("atlas_symbol_halted", "1 while a symbol's trading is halted", labels=["symbol"])
    for symbol in instruments():
        halted.add_metric([symbol], 1.0 if symbol in market.halted else 0.0)
    yield halted


metrics.REGISTRY.register(ScrapeTime())
metrics.WORKER_INFO.labels(settings.app_id, settings.processing_guarantee.value).set(1)
