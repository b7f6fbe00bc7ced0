"""Liveness and readiness: `/healthz`, `/readyz`."""
from __future__ import annotations

from typing import Any

from atlas.agents.audit import AuditExporter
from atlas.agents.monitoring import Projection
from atlas.app import app
from atlas.runtime.producer import CommandProducer
from atlas.settings import settings
from atlas.web.common import partition_owner
from atlas.web.problems import ApiView


@app.page("/healthz")
class HealthView(ApiView):
    """The process is up and serving."""

    async def get(self, request: Any) -> Any:
        return self.ok({"status": "ok"})


@app.page("/readyz")
class ReadyView(ApiView):
    """Ready to take orders: the broker answers and the tables are recovered."""

    async def get(self, request: Any) -> Any:
        producer = CommandProducer.current
        checks = {
            "broker": producer is not None and await producer.broker_reachable(),
            "tables_recovered": app.tables.recovery.completed.is_set(),
            "partitions_assigned": bool(app.consumer.assignment()) if app.consumer else False,
            "ownership_known": all(partition_owner(p) is not None for p in range(settings.partitions)),
        }
        ready = all(checks.values())
        headers = None if ready else {"Retry-After": "2"}
        # Reported, not required: trading goes on while the audit sink is down (the exporter catches up).
        exporter = AuditExporter.current
        audit = exporter.status() if exporter is not None else {"enabled": settings.audit_enabled, "running": False}
        doc = {"status": "ready" if ready else "not_ready", "checks": checks, "audit": audit}
        if settings.read_model == "dynamodb":  # reported too: reads stay answered while the projector catches up
            doc["read_model"] = Projection.status()
        return self.ok(doc, status=200 if ready else 503, headers=headers)
