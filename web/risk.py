"""The pre-trade risk preview: `GET /api/v1/risk/preview?symbol=...&side=...&quantity=...`."""
from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from atlas.analytics.preview import preview_order
from atlas.app import app
from atlas.core.commands import SubmitOrder
from atlas.runtime.reference import instruments
from atlas.tables.market import current_market
from atlas.web.account import account_state
from atlas.web.common import on_owner, principal, validation_problem
from atlas.web.orders import check_terms_or_422
from atlas.web.problems import ApiView, Problem

_TERMS = ("symbol", "side", "type", "quantity", "price", "time_in_force")


@app.page("/api/v1/risk/preview")
class RiskPreviewView(ApiView):
    """An order's reservation, balances after, exposure change, warnings and the OMS's verdict, placing nothing.

    The order's terms come as query parameters (a read: the account's owner answers it).
    """

    async def get(self, request: Any) -> Any:
        caller = principal(request)
        unknown = set(request.query) - set(_TERMS)
        if unknown:
            raise Problem(400, "INVALID_QUERY", f"unknown parameters: {', '.join(sorted(unknown))}")
        terms = {name: request.query[name] for name in _TERMS if request.query.get(name)}
        try:
            order = SubmitOrder(command_id="preview", account_id=caller.account_id, client_order_id="preview", **terms)
        except ValidationError as exc:
            raise validation_problem(exc) from None
        check_terms_or_422(order.symbol, order.quantity, order.price)

        async def local() -> Any:
            account = account_state(caller.account_id)
            return self.ok(preview_order(order, account, current_market(instruments())).public())

        return await on_owner(self, request, caller.account_id, local)
