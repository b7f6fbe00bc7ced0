"""`GET /api/v1/telemetry`: the workers' own measurements of the order flow (counts, latencies, throughput)."""
from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp

from atlas.agents.oms import telemetry
from atlas.app import app
from atlas.telemetry import merge
from atlas.web.common import ACCOUNTS, FORWARDED_HEADER, principal
from atlas.web.problems import ApiView, Problem

PEER_TIMEOUT_S = 2.0


@app.page("/api/v1/telemetry")
class TelemetryView(ApiView):
    """Every worker's figures merged (`?scope=cluster`, the default) or this worker's alone (`?scope=local`)."""

    async def get(self, request: Any) -> Any:
        principal(request)
        scope = request.query.get("scope", "cluster")
        if scope not in ("cluster", "local"):
            raise Problem(400, "INVALID_QUERY", "scope must be cluster or local")
        here = str(app.conf.canonical_url).rstrip("/")
        if scope == "local" or request.headers.get(FORWARDED_HEADER):
            return self.ok({"worker": here, **telemetry.snapshot()})
        peers = sorted({url.rstrip("/") for url in app.router.table_metadata(ACCOUNTS.table.name)} - {here})
        answers = dict(zip(peers, await asyncio.gather(*(self._peer(request, url) for url in peers))))
        snapshots = [telemetry.snapshot()] + [a for a in answers.values() if a is not None]
        return self.ok({"workers": [here] + [u for u, a in answers.items() if a is not None],
                        "unreachable": [u for u, a in answers.items() if a is None],
                        **merge(snapshots, int(time.time() * 1000))})

    async def _peer(self, request: Any, url: str) -> dict | None:
        headers = {"X-API-Key": request.headers["X-API-Key"], FORWARDED_HEADER: "1"}
        try:
            async with app.http_client.get(f"{url}/api/v1/telemetry?scope=local", headers=headers,
                                           timeout=aiohttp.ClientTimeout(total=PEER_TIMEOUT_S)) as response:
                return await response.json() if response.status == 200 else None
        except (aiohttp.ClientError, asyncio.TimeoutError):
            return None  # a worker leaving: the figures of those that answer
