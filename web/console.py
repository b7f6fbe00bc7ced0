"""The trading console: static files served by the worker at `/` (no other server, no build step).

The page talks to the same API as any client: REST for orders and balances, `/api/v1/stream`
for live reports, balances and market data.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from faust import web

from atlas.app import app
from atlas.runtime.reference import demo_keys, directory, instruments
from atlas.web.problems import ApiView

STATIC = Path(__file__).resolve().parent / "static"

console = web.Blueprint("console")
console.static("/static", STATIC)
console.register(app, url_prefix="")


@app.page("/")
class ConsoleView(ApiView):
    """The console's page."""

    async def get(self, request: Any) -> Any:
        return self.bytes((STATIC / "index.html").read_bytes(), content_type="text/html",
                          headers={"Cache-Control": "no-cache"})


@app.page("/api/v1/instruments")
class InstrumentsView(ApiView):
    """Every configured instrument with its tick, lot and quantity bounds (public: the console validates with it)."""

    async def get(self, request: Any) -> Any:
        return self.ok({"instruments": [i.model_dump(mode="json") for i in sorted(instruments().values(),
                                                                       key=lambda i: i.symbol)]})


@app.page("/api/v1/console/config")
class ConsoleConfigView(ApiView):
    """What the console's sign-in offers: in demo mode, the demo accounts with their keys (public, like the README)."""

    async def get(self, request: Any) -> Any:
        keys = demo_keys()
        accounts = [{"account_id": a, "role": directory().get(a).role.value, "key": k} for a, k in sorted(keys.items())]
        return self.ok({"demo": bool(keys), "accounts": accounts})
