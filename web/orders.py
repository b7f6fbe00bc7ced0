"""Order entry and order queries: `/api/v1/orders`."""
from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from atlas.app import app
from atlas.core.commands import CancelOrder, ReplaceOrder, SubmitOrder
from atlas.core.values import Dec, OrderType, Side, TimeInForce, order_id_for
from atlas.oms.engine import terms_digest
from atlas.oms.risk import check_quantity_price
from atlas.oms.state import Order
from atlas.runtime.reference import instruments
from atlas.settings import settings
from atlas.tables.oms import iter_orders, load_account, load_order
from atlas.web.common import body, on_owner, owner_url, principal, produce, validation_problem
from atlas.web.problems import ApiView, Problem, not_found

COMMANDS = settings.topic("commands")
DIGEST_HEADER = "X-Atlas-Terms-Digest"
_ID = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:\-]+$")


class NewOrder(BaseModel):
    """Body of `POST /api/v1/orders`."""

    model_config = ConfigDict(extra="forbid")

    client_order_id: str = _ID
    symbol: str = Field(min_length=1, max_length=32)
    side: Side
    type: OrderType
    quantity: Dec
    price: Dec | None = None
    time_in_force: TimeInForce = TimeInForce.GTC


class OrderChange(BaseModel):
    """Body of `PATCH /api/v1/orders/{order_id}`."""

    model_config = ConfigDict(extra="forbid")

    quantity: Dec | None = None
    price: Dec | None = None


def check_terms_or_422(symbol: str, quantity, price) -> None:
    """Refuse terms the instrument cannot take (unknown symbol, off its grid or bounds), as POST /orders does."""
    instrument = instruments().get(symbol)
    if instrument is None:
        raise Problem(422, "UNKNOWN_SYMBOL", f"unknown symbol {symbol}; known: {', '.join(sorted(instruments()))}")
    reject = check_quantity_price(quantity, price, instrument)
    if reject:
        raise Problem(422, reject.code.value, reject.message)


def _local_order(account_id: str, order_id: str) -> Order | None:
    account = load_account(account_id)
    return None if account is None else load_order(account, order_id)


@app.page("/api/v1/orders")
class OrdersView(ApiView):
    """Place an order; list the account's orders."""

    async def post(self, request: Any) -> Any:
        caller = principal(request)
        new = await body(request, NewOrder)
        order_id = order_id_for(caller.account_id, new.client_order_id)
        try:
            # The command id derives from the order id: racing duplicates are one command.
            cmd = SubmitOrder(command_id=f"submit-{order_id}", account_id=caller.account_id, **new.model_dump())
        except ValidationError as exc:  # LIMIT without a price, MARKET with one
            raise validation_problem(exc) from None
        check_terms_or_422(cmd.symbol, cmd.quantity, cmd.price)
        existing = await self._existing(request, caller.account_id, order_id)
        if existing is not None:
            doc, digest = existing
            if digest != terms_digest(cmd):
                raise Problem(422, "DUPLICATE_CLIENT_ORDER_ID",
                              f"client_order_id {cmd.client_order_id} was used for order {order_id} with other terms",
                              order_id=order_id)
            return self.ok(doc, status=200, headers={"Idempotent-Replayed": "true"})
        await produce(COMMANDS, caller.account_id, cmd)
        return self.ok({"order_id": order_id, "client_order_id": cmd.client_order_id, "status": "PENDING_NEW"},
                       status=202, headers={"Location": f"/api/v1/orders/{order_id}"})

    async def _existing(self, request: Any, account_id: str, order_id: str) -> tuple[dict, str] | None:
        """The order (as JSON) and its terms digest, asked of the account's owner."""
        base = owner_url(account_id)
        if base is None:
            order = _local_order(account_id, order_id)
            return None if order is None else (order.public(), order.terms_digest)
        headers = {"X-API-Key": request.headers["X-API-Key"]}
        async with app.http_client.get(f"{base}/api/v1/orders/{order_id}", headers=headers) as response:
            if response.status == 404:
                return None
            if response.status != 200:
                raise Problem(503, "NOT_READY", "the account's owner did not answer", headers={"Retry-After": "2"})
            return await response.json(), response.headers.get(DIGEST_HEADER, "")

    async def get(self, request: Any) -> Any:
        caller = principal(request)
        return await on_owner(self, request, caller.account_id, lambda: self._list(request, caller.account_id))

    async def _list(self, request: Any, account_id: str) -> Any:
        status = request.query.get("status", "all")
        if status not in ("open", "closed", "all"):
            raise Problem(400, "INVALID_QUERY", "status must be open, closed or all")
        symbol = request.query.get("symbol")
        client_order_id = request.query.get("client_order_id")
        if client_order_id:
            order = _local_order(account_id, order_id_for(account_id, client_order_id))
            orders = [order] if order is not None else []
        else:
            orders = list(iter_orders(account_id))
        chosen = [o for o in orders
                  if (status == "all" or (status == "open") == o.is_open) and (not symbol or o.symbol == symbol)]
        chosen.sort(key=lambda o: (o.created_at, o.order_id), reverse=True)
        return self.ok({"orders": [o.public() for o in chosen]})


@app.page("/api/v1/orders/{order_id}")
class OrderView(ApiView):
    """One order: read it, cancel it, replace it."""

    async def get(self, request: Any, order_id: str) -> Any:
        caller = principal(request)

        async def local() -> Any:
            order = _local_order(caller.account_id, order_id)
            if order is None:
                raise not_found(f"order {order_id}")
            return self.ok(order.public(), headers={DIGEST_HEADER: order.terms_digest})

        return await on_owner(self, request, caller.account_id, local)

    async def delete(self, request: Any, order_id: str) -> Any:
        caller = principal(request)
        cmd = CancelOrder(command_id=_command_id(request, "cancel"), account_id=caller.account_id, order_id=order_id)
        await produce(COMMANDS, caller.account_id, cmd)
        return self.ok({"order_id": order_id, "command_id": cmd.command_id, "status": "PENDING_CANCEL_REQUESTED"}, status=202)

    async def patch(self, request: Any, order_id: str) -> Any:
        caller = principal(request)
        change = await body(request, OrderChange)
        if change.quantity is None and change.price is None:
            raise Problem(422, "VALIDATION_ERROR", "send a new quantity, a new price, or both")
        for name, value in (("quantity", change.quantity), ("price", change.price)):
            if value is not None and value <= 0:
                raise Problem(422, "INVALID_QUANTITY" if name == "quantity" else "INVALID_PRICE", f"{name} must be positive")
        cmd = ReplaceOrder(command_id=_command_id(request, "replace"), account_id=caller.account_id,
                           order_id=order_id, quantity=change.quantity, price=change.price)
        await produce(COMMANDS, caller.account_id, cmd)
        return self.ok({"order_id": order_id, "command_id": cmd.command_id, "status": "PENDING_REPLACE_REQUESTED"}, status=202)


@app.page("/api/v1/orders/{order_id}/executions")
class ExecutionsView(ApiView):
    """An order's execution reports, oldest first."""

    async def get(self, request: Any, order_id: str) -> Any:
        caller = principal(request)

        async def local() -> Any:
            order = _local_order(caller.account_id, order_id)
            if order is None:
                raise not_found(f"order {order_id}")
            return self.ok({"order_id": order_id,
                            "executions": [r.model_dump(mode="json") for r in order.executions]})

        return await on_owner(self, request, caller.account_id, local)


def _command_id(request: Any, verb: str) -> str:
    """The client's `Idempotency-Key` when it sends one (so a retry is applied once), else a fresh id."""
    key = request.headers.get("Idempotency-Key")
    if key:
        if not (1 <= len(key) <= 48) or not key.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise Problem(400, "INVALID_IDEMPOTENCY_KEY", "Idempotency-Key must be 1-48 letters, digits, '-', '_' or '.'")
        return f"{verb}-{key}"
    return f"{verb}-{uuid.uuid4().hex}"
