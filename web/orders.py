"""Order entry and order queries: `/api/v1/orders`."""
from __future__ import annotations

import re
import uuid
from typing import Any

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from atlas.app import app
from atlas.cloud import reads
from atlas.core.accounts import Scope
from atlas.core.commands import CancelOrder, ReplaceOrder, SubmitOrder
from atlas.core.events import OrdStatus
from atlas.core.values import Dec, OrderType, Side, TimeInForce, order_id_for
from atlas.oms.engine import terms_digest
from atlas.oms.risk import check_quantity_price
from atlas.oms.state import Order
from atlas.runtime.producer import Written
from atlas.runtime.reference import instruments
from atlas.settings import settings
from atlas.tables.oms import executions, list_orders, load_account, load_order, open_orders
from atlas.web.common import (
    FORWARDED_HEADER, SIGNATURE_HEADER, account_read, applied_after, body, owner_url, principal, probe_once_applied,
    produce, read_model, status_once_applied, validation_problem,
)
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


PAGE = 100  # orders or reports in a page unless `limit` says otherwise
MAX_PAGE = 1_000
_SCAN_PAGES = 20  # a filtered listing reads at most this many pages' worth of orders per request


def _local_order(account_id: str, order_id: str) -> Order | None:
    account = load_account(account_id)
    return None if account is None else load_order(account, order_id)


def _order_or_404(account_id: str, order_id: str) -> Order:
    """The order, or a problem that says where to look when it may have been archived."""
    account = load_account(account_id)
    order = None if account is None else load_order(account, order_id)
    if order is not None:
        return order
    if account is None or account.archived == 0:
        raise not_found(f"order {order_id}")
    days = settings.retain_closed_days
    kept = f"the newest {settings.retain_closed_orders} closed orders" + (f", for {days:g} days" if days else "")
    raise Problem(404, "ORDER_ARCHIVED_OR_UNKNOWN",
                  f"order {order_id} is not among this account's open and recently closed orders. The OMS keeps "
                  f"{kept}; {account.archived} older closed orders of this account were archived. If {order_id} "
                  f"is one of them, its full history is in the audit trail.",
                  archived_orders=account.archived,
                  audit_query=f"python -m atlas audit order {order_id}")


def _page_args(request: Any, opaque_cursor: bool = False) -> tuple[int | None, int]:
    """(cursor, limit) of a paginated GET; the cursor is a number the previous page handed out (with
    `opaque_cursor`, the read model's own, checked there: only its length here, and None returned)."""
    raw_limit = request.query.get("limit", str(PAGE))
    raw_cursor = request.query.get("cursor")
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_PAGE:
        raise Problem(400, "INVALID_QUERY", f"limit must be a whole number from 1 to {MAX_PAGE}")
    if opaque_cursor:
        if raw_cursor is not None and len(raw_cursor) > 512:
            raise Problem(400, "INVALID_QUERY", "cursor must be a value a previous page returned")
        return None, int(raw_limit)
    if raw_cursor is not None and not (raw_cursor.isdigit() and len(raw_cursor) <= 15):
        raise Problem(400, "INVALID_QUERY", "cursor must be a value a previous page returned")
    return (None if raw_cursor is None else int(raw_cursor)), int(raw_limit)


@app.page("/api/v1/orders")
class OrdersView(ApiView):
    """Place an order; list the account's orders."""

    async def post(self, request: Any) -> Any:
        caller = principal(request, Scope.TRADE)
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
        if request.headers.get(SIGNATURE_HEADER):
            # The owner would want a signature of this GET, which the client never made: the command goes to
            # Kafka, where the OMS applies a repeat of it once (a 202 instead of the 200 of a replayed order).
            return None
        headers = {"X-API-Key": request.headers["X-API-Key"], FORWARDED_HEADER: "1"}
        try:
            async with app.http_client.get(f"{base}/api/v1/orders/{order_id}", headers=headers) as response:
                if response.status == 404:
                    return None
                if response.status != 200:
                    raise Problem(503, "NOT_READY", "the account's owner did not answer", headers={"Retry-After": "2"})
                return await response.json(), response.headers.get(DIGEST_HEADER, "")
        except aiohttp.ClientError:
            raise Problem(503, "NOT_READY", f"the worker that owns this account ({base}) does not answer",
                          headers={"Retry-After": "2"}) from None

    async def get(self, request: Any) -> Any:
        account_id = principal(request).account_id

        async def dynamodb() -> Any:
            return self.ok(await _read_model_list(request, account_id, *_list_query(request)))

        return await account_read(self, request, account_id, tables=lambda: self._list(request, account_id),
                                  dynamodb=dynamodb)

    async def _list(self, request: Any, account_id: str) -> Any:
        """Newest first, a page at a time: `next_cursor` (null on the last page) asks for the next one."""
        status, symbol, client_order_id = _list_query(request)
        before, limit = _page_args(request)
        account = load_account(account_id)
        if account is None:
            return self.ok({"orders": [], "next_cursor": None})

        def wanted(o: Order) -> bool:
            return (status == "all" or (status == "open") == o.is_open) and (not symbol or o.symbol == symbol)

        if client_order_id:
            order = load_order(account, order_id_for(account_id, client_order_id))
            return self.ok({"orders": [order.public()] if order is not None and wanted(order) else [],
                            "next_cursor": None})
        source = open_orders(account, before) if status == "open" else list_orders(account, before)
        page: list[Order] = []
        cursor = None
        for seen, order in enumerate(source, start=1):
            if wanted(order):
                if len(page) == limit:  # one more after a full page: the next page starts below the last shown
                    cursor = str(page[-1].number)
                    break
                page.append(order)
            if seen == limit * _SCAN_PAGES:  # read enough for one request: the client goes on below this one
                cursor = str(order.number)
                break
        return self.ok({"orders": [o.public() for o in page], "next_cursor": cursor})


@app.page("/api/v1/orders/{order_id}")
class OrderView(ApiView):
    """One order: read it, cancel it, replace it."""

    async def get(self, request: Any, order_id: str) -> Any:
        written = applied_after(request)
        if written is not None:  # another worker asks before it answers a cancel or replace: a TRADE key's question
            caller = principal(request, Scope.TRADE)
            return await probe_once_applied(self, request, caller.account_id, COMMANDS, written,
                                            lambda: _local_order(caller.account_id, order_id) is not None)
        caller = principal(request)

        async def dynamodb() -> Any:
            _known_form(order_id)
            found = await read_model(reads.order, settings.cloud_table_prefix, caller.account_id, order_id)
            if found is None:
                raise not_found(f"order {order_id}")
            return self.ok(found)

        async def tables() -> Any:
            order = _order_or_404(caller.account_id, order_id)
            return self.ok(order.public(), headers={DIGEST_HEADER: order.terms_digest})

        return await account_read(self, request, caller.account_id, tables=tables, dynamodb=dynamodb)

    async def delete(self, request: Any, order_id: str) -> Any:
        caller = principal(request, Scope.TRADE)
        _known_form(order_id)
        cmd = CancelOrder(command_id=_command_id(request, "cancel"), account_id=caller.account_id, order_id=order_id)
        await _refuse_unknown(request, caller.account_id, order_id, await produce(COMMANDS, caller.account_id, cmd))
        return self.ok({"order_id": order_id, "command_id": cmd.command_id, "status": "PENDING_CANCEL_REQUESTED"}, status=202)

    async def patch(self, request: Any, order_id: str) -> Any:
        caller = principal(request, Scope.TRADE)
        _known_form(order_id)
        change = await body(request, OrderChange)
        if change.quantity is None and change.price is None:
            raise Problem(422, "VALIDATION_ERROR", "send a new quantity, a new price, or both")
        for name, value in (("quantity", change.quantity), ("price", change.price)):
            if value is not None and value <= 0:
                raise Problem(422, "INVALID_QUANTITY" if name == "quantity" else "INVALID_PRICE", f"{name} must be positive")
        cmd = ReplaceOrder(command_id=_command_id(request, "replace"), account_id=caller.account_id,
                           order_id=order_id, quantity=change.quantity, price=change.price)
        await _refuse_unknown(request, caller.account_id, order_id, await produce(COMMANDS, caller.account_id, cmd))
        return self.ok({"order_id": order_id, "command_id": cmd.command_id, "status": "PENDING_REPLACE_REQUESTED"}, status=202)


async def _refuse_unknown(request: Any, account_id: str, order_id: str, written: Written) -> None:
    """A 404 when the OMS has applied the cancel or replace at `written` and holds no such order.

    The command is in Kafka first, so an order the client submitted a moment before it is applied
    before it (one partition per account) and found. When that is not known in time (2 s), it
    stays a 202: the execution reports tell the outcome (CANCEL_REJECTED with UNKNOWN_ORDER).
    """
    status = await status_once_applied(request, account_id, COMMANDS, written, f"/api/v1/orders/{order_id}",
                                       lambda: 404 if _local_order(account_id, order_id) is None else 204)
    if status == 404:
        raise not_found(f"order {order_id}")


@app.page("/api/v1/orders/{order_id}/executions")
class ExecutionsView(ApiView):
    """An order's execution reports, oldest first, a page at a time (`cursor`: the seq the last page ended at)."""

    async def get(self, request: Any, order_id: str) -> Any:
        caller = principal(request)
        after, limit = _page_args(request)

        async def dynamodb() -> Any:
            _known_form(order_id)
            found = await read_model(reads.executions, settings.cloud_table_prefix, caller.account_id, order_id,
                                     after or 0, limit)
            if found is None:
                raise not_found(f"order {order_id}")
            return self.ok({"order_id": order_id, "executions": found[0], "next_cursor": found[1]})

        async def tables() -> Any:
            order = _order_or_404(caller.account_id, order_id)
            page = executions(order, after or 0, limit)
            more = bool(page) and page[-1].seq < order.exec_seq
            return self.ok({"order_id": order_id, "executions": [r.model_dump(mode="json") for r in page],
                            "next_cursor": str(page[-1].seq) if more else None})

        return await account_read(self, request, caller.account_id, tables=tables, dynamodb=dynamodb)


def _list_query(request: Any) -> tuple[str, str | None, str | None]:
    """`GET /api/v1/orders`'s filters: status (open, closed or all), symbol and client order id."""
    status = request.query.get("status", "all")
    if status not in ("open", "closed", "all"):
        raise Problem(400, "INVALID_QUERY", "status must be open, closed or all")
    return status, request.query.get("symbol"), request.query.get("client_order_id")


async def _read_model_list(request: Any, account_id: str, status: str, symbol: str | None,
                           client_order_id: str | None) -> dict:
    """`GET /api/v1/orders` from the DynamoDB read model (its cursor is the read model's own)."""
    _, limit = _page_args(request, opaque_cursor=True)
    prefix = settings.cloud_table_prefix
    if client_order_id:
        found = await read_model(reads.order, prefix, account_id, order_id_for(account_id, client_order_id))
        wanted = found is not None and (status == "all" or (status == "open") == (found["status"] in _OPEN)) \
            and (not symbol or found["symbol"] == symbol)
        return {"orders": [found] if wanted else [], "next_cursor": None}
    try:
        page, cursor = await read_model(reads.orders, prefix, account_id, status, symbol,
                                        request.query.get("cursor"), limit)
    except reads.BadCursor as exc:
        raise Problem(400, "INVALID_QUERY", str(exc)) from None
    return {"orders": page, "next_cursor": cursor}


_OPEN = frozenset(s.value for s in OrdStatus if not s.is_closed)
_ORDER_ID = re.compile(r"[A-Za-z0-9._:\-]{1,64}")


def _known_form(order_id: str) -> None:
    """404 for a path segment no order id can be (the commands' id grammar), before it reaches a command."""
    if _ORDER_ID.fullmatch(order_id) is None:
        raise not_found(f"order {order_id[:64]!r}")


_IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9._\-]{1,48}")


_SIGNATURE = re.compile(r"[0-9a-fA-F]{64}")


def _command_id(request: Any, verb: str) -> str:
    """The client's `Idempotency-Key` when it sends one (so a retry is applied once), else the request's
    signature, else a fresh id.

    A signed request's id is its signature (checked by the guard before the view runs): each worker
    refuses a signature it has seen, but a replay to another worker within the window passes its
    check, and is then the same command, which the OMS applies once.
    """
    key = request.headers.get("Idempotency-Key")
    if key is not None:
        if _IDEMPOTENCY_KEY.fullmatch(key) is None:  # ASCII only: str.isalnum() takes "é" and "١"
            raise Problem(400, "INVALID_IDEMPOTENCY_KEY", "Idempotency-Key must be 1-48 letters, digits, '-', '_' or '.'")
        return f"{verb}-{key}"
    signature = request.headers.get(SIGNATURE_HEADER, "")
    if _SIGNATURE.fullmatch(signature):  # (from a key that does not sign: unchecked, an idempotency key of sorts)
        return f"{verb}-sig-{signature.lower()[:48]}"
    return f"{verb}-{uuid.uuid4().hex}"
