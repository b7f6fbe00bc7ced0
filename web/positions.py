"""`GET /api/v1/positions`: the caller's positions, realised and unrealised P&L and exposure, marked to mid."""
from __future__ import annotations

from typing import Any

from atlas.analytics.pnl import Position, exposures, summary
from atlas.app import app
from atlas.runtime.reference import instruments
from atlas.tables.market import current_market
from atlas.web.account import account_state
from atlas.web.common import on_owner, principal
from atlas.web.problems import ApiView


@app.page("/api/v1/positions")
class PositionsView(ApiView):
    """Per symbol the position from fills (average cost), per asset the holding's value, and the totals."""

    async def get(self, request: Any) -> Any:
        caller = principal(request)

        async def local() -> Any:
            known = instruments()
            market = current_market(known)
            # Marked to the venue's published mids only: a symbol it has not priced yet has no mark.
            marks = dict(market.reference_prices)
            account = account_state(caller.account_id)
            # The OMS keeps each symbol's holding fill by fill; a symbol since removed from the
            # instruments file cannot be valued: left out.
            held = {symbol: Position.of(symbol, known[symbol], holding, marks.get(symbol))
                    for symbol, holding in account.positions.items() if symbol in known}
            valued = exposures({a: b.total for a, b in account.balances.items()}, known, marks)
            totals = {quote: t.public() for quote, t in summary(held, valued).items()}
            fields = ("realised", "unrealised", "total", "net_exposure")
            return self.ok({
                "account_id": caller.account_id,
                "positions": [p.public() for _, p in sorted(held.items())],
                "exposures": [e.public() for _, e in sorted(valued.items())],
                # Per field, the amount in each quote asset: {"total": {"USD": "12.5"}, ...}.
                "summary": {f: {quote: t[f] for quote, t in sorted(totals.items())} for f in fields},
            })

        return await on_owner(self, request, caller.account_id, local)
