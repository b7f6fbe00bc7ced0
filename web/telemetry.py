"""`GET /api/v1/telemetry`: the workers' own measurements of the order flow (counts, latencies, throughput)."""
from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp

from atlas.analytics.telemetry import merge, process_telemetry
from atlas.app import app
from atlas.web.common import ACCOUNTS, FORWARDED_HEADER, admin
from atlas.web.problems import ApiView, Problem

PEER_TIMEOUT_S = 2.0


@app.page("/api/v1/telemetry")
class TelemetryView(ApiView):
    """Every worker's figures merged (`?scope=cluster`, the default) or this worker's alone (`?scope=local`).

    Admins only: the figures cover every account, and name the workers.
    """

    async def get(self, request: Any) -> Any:
        admin(request)
        scope = request.query.get("scope", "cluster")
        if scope not in ("cluster", "local"):
            raise Problem(400, "INVALID_QUERY", "scope must be cluster or local")
        here = str(app.conf.canonical_url).rstrip("/")
        if scope == "local" or request.headers.get(FORWARDED_HEADER):
            return self.ok({"worker": here, **process_telemetry.snapshot()})
        peers = sorted({url.rstrip("/") for url in app.router.table_metadata(ACCOUNTS.table.name)} - {here})
        answers = dict(zip(peers, await asyncio.gather(*(self._peer(request, url) for url in peers))))
        # A peer whose answer is not a snapshot (another version mid-upgrade, say) counts as unreachable.
        answers = {url: a if _is_snapshot(a) else None for url, a in answers.items()}
        snapshots = [process_telemetry.snapshot()] + [a for a in answers.values() if a is not None]
        return self.ok({"workers": [here] + [u for u, a in answers.items() if a is not None],
                        "unreachable": [u for u, a in answers.items() if a is None],
                        **merge(snapshots, int(time.time() * 1000))})

    async def _peer(self, request: Any, url: str) -> dict | None:
        headers = {"X-API-Key": request.headers["X-API-Key"], FORWARDED_HEADER: "1"}
        try:
            async with app.http_client.get(f"{url}/api/v1/telemetry?scope=local", headers=headers,
                                           timeout=aiohttp.ClientTimeout(total=PEER_TIMEOUT_S)) as response:
                return await response.json() if response.status == 200 else None
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
            return None  # a worker leaving: the figures of those that answer


def _is_snapshot(doc: Any) -> bool:
    return (isinstance(doc, dict) and isinstance(doc.get("counts"), dict) and isinstance(doc.get("per_second"), list)
            and isinstance(doc.get("ack_latency"), str) and isinstance(doc.get("fill_latency"), str))
