"""`GET /api/v1/openapi.json`: the OpenAPI 3.1 description of the gateway, schemas taken from the models."""
from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import BaseModel

from atlas.app import app
from atlas.core.accounts import Limits
from atlas.core.events import ExecutionReport
from atlas.web.admin import KillSwitchRequest
from atlas.web.orders import NewOrder, OrderChange
from atlas.web.problems import ApiView
from atlas.web.venue import VenueSettings

_MODELS: dict[str, type[BaseModel]] = {
    "NewOrder": NewOrder, "OrderChange": OrderChange, "Limits": Limits,
    "KillSwitchRequest": KillSwitchRequest, "ExecutionReport": ExecutionReport, "VenueSettings": VenueSettings,
}
_DEC = {"type": "string", "description": "decimal number as a string"}
_ORDER = {
    "type": "object",
    "properties": {
        **{name: {"type": "string"} for name in ("order_id", "client_order_id", "account_id", "symbol")},
        "side": {"enum": ["BUY", "SELL"]}, "type": {"enum": ["LIMIT", "MARKET"]},
        "time_in_force": {"enum": ["GTC", "DAY", "IOC", "FOK"]},
        "status": {"enum": ["PENDING_NEW", "NEW", "PARTIALLY_FILLED", "FILLED", "PENDING_CANCEL", "CANCELED",
                            "PENDING_REPLACE", "REJECTED", "EXPIRED"]},
        "quantity": _DEC, "price": {**_DEC, "type": ["string", "null"]}, "filled_quantity": _DEC,
        "leaves_quantity": _DEC, "avg_price": {**_DEC, "type": ["string", "null"]},
        "reject_reason": {"type": ["string", "null"]},
        "created_at": {"type": "integer", "description": "ms since the epoch"}, "updated_at": {"type": "integer"},
        "seq": {"type": "integer", "description": "the seq of the order's latest execution report"},
    },
}
_PROBLEM = {
    "type": "object", "required": ["type", "title", "status", "detail", "code"],
    "properties": {"type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
                   "detail": {"type": "string"}, "code": {"type": "string"}, "instance": {"type": "string"},
                   "errors": {"type": "array", "items": {"type": "object"}}},
}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _problems(*statuses: int) -> dict:
    return {str(s): {"description": "problem", "content": {"application/problem+json": {"schema": _ref("Problem")}}}
            for s in statuses}


def _op(summary: str, responses: dict, *, body: str | None = None, params: list | None = None,
        auth: bool = True, problems: tuple[int, ...] = (401, 503)) -> dict:
    op: dict[str, Any] = {"summary": summary, "responses": {**responses, **_problems(*problems)}}
    if body:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref(body)}}}
    if params:
        op["parameters"] = params
    if auth:
        op["security"] = [{"ApiKey": []}]
    return op


def _query(name: str, description: str, enum: list[str] | None = None) -> dict:
    schema = {"type": "string", **({"enum": enum} if enum else {})}
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}


_ORDER_ID = {"name": "order_id", "in": "path", "required": True, "schema": {"type": "string"},
             "description": "an order id (1-64 of A-Z, a-z, 0-9, '.', '_', ':', '-'); any other is 404"}
_IDEMPOTENCY_KEY = {"name": "Idempotency-Key", "in": "header", "required": False,
                    "description": "a retry with the same key is applied once",
                    "schema": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,48}$"}}
_SYMBOL = {"name": "symbol", "in": "path", "required": True, "schema": {"type": "string"}}
_ACCOUNT = {"name": "account_id", "in": "path", "required": True, "schema": {"type": "string"}}
_LEVELS = {"type": "array", "items": {"type": "object", "properties": {"price": _DEC, "quantity": _DEC}}}
_TRADE = {"type": "object", "properties": {"price": _DEC, "quantity": _DEC, "aggressor": {"enum": ["BUY", "SELL"]},
                                           "ts": {"type": "integer"}}}
_ACCEPTED = _json({"type": "object"}, "accepted: the outcome arrives as execution reports")
_NEXT = {"type": ["string", "null"], "description": "pass as `cursor` for the next page; null on the last page"}
_PAGE = [_query("limit", "items per page, 1-1000 (default 100)"), _query("cursor", "the `next_cursor` of the previous page")]


@cache
def document() -> dict:
    """The OpenAPI document (built once)."""
    schemas = {name: model.model_json_schema(ref_template="#/components/schemas/{model}")
               for name, model in _MODELS.items()}
    for schema in list(schemas.values()):
        schemas.update(schema.pop("$defs", {}))
    schemas.update({"Order": _ORDER, "Problem": _PROBLEM})
    paths = {
        "/api/v1/orders": {
            "post": _op("Place an order", {
                "202": _json({"type": "object"}, "received: status PENDING_NEW, the verdict follows as execution reports"),
                "200": _json(_ref("Order"), "the same client_order_id and body again: the original order "
                                            "(header Idempotent-Replayed: true)"),
            }, body="NewOrder", problems=(400, 401, 413, 422, 503)),
            "get": _op("List the caller's orders, newest first, a page at a time", {
                "200": _json({"type": "object", "properties": {"orders": {"type": "array", "items": _ref("Order")},
                                                               "next_cursor": _NEXT}}, "a page of orders"),
            }, params=[_query("status", "open, closed or all (default)", ["open", "closed", "all"]),
                       _query("symbol", "only this symbol"), _query("client_order_id", "only the order with this id"),
                       *_PAGE],
                problems=(400, 401, 503)),
        },
        "/api/v1/orders/{order_id}": {
            "get": _op("One order", {"200": _json(_ref("Order"), "the order")}, params=[_ORDER_ID], problems=(401, 404, 503)),
            "delete": _op("Request a cancel", {"202": _ACCEPTED}, params=[_ORDER_ID, _IDEMPOTENCY_KEY],
                          problems=(400, 401, 404, 503)),
            "patch": _op("Request a replace (new quantity and/or price)", {"202": _ACCEPTED},
                         params=[_ORDER_ID, _IDEMPOTENCY_KEY], body="OrderChange", problems=(400, 401, 404, 413, 422, 503)),
        },
        "/api/v1/orders/{order_id}/executions": {
            "get": _op("An order's execution reports, oldest first, a page at a time", {"200": _json(
                {"type": "object", "properties": {"executions": {"type": "array", "items": _ref("ExecutionReport")},
                                                  "next_cursor": _NEXT}},
                "a page of reports")}, params=[_ORDER_ID, *_PAGE], problems=(400, 401, 404, 503)),
        },
        "/api/v1/balances": {"get": _op("Available, reserved and total per asset", {"200": _json({"type": "object"}, "balances")})},
        "/api/v1/limits": {"get": _op("The caller's risk limits and kill-switch state", {"200": _json({"type": "object"}, "limits")})},
        "/api/v1/positions": {"get": _op("Positions from fills (average cost), realised and unrealised P&L marked to "
                                         "mid, each asset's value and the net exposure",
                                         {"200": _json({"type": "object"}, "positions")})},
        "/api/v1/risk/preview": {"get": _op(
            "Pre-trade risk preview of an order, placing nothing: the OMS's verdict (block with its reason code), the "
            "amount required, balances after, exposure change and warnings",
            {"200": _json({"type": "object"}, "preview")},
            params=[_query("symbol", "instrument"), _query("side", "BUY or SELL", ["BUY", "SELL"]),
                    _query("type", "LIMIT or MARKET", ["LIMIT", "MARKET"]), _query("quantity", "decimal"),
                    _query("price", "decimal (LIMIT only)"), _query("time_in_force", "GTC, DAY, IOC or FOK")],
            problems=(400, 401, 422, 503))},
        "/api/v1/telemetry": {"get": _op(
            "The workers' own measurements: orders and fills counted, submit->ack and submit->fill latency "
            "(percentiles and distribution), throughput", {"200": _json({"type": "object"}, "telemetry")},
            params=[_query("scope", "cluster (every worker, merged; default) or local", ["cluster", "local"])],
            problems=(400, 401))},
        "/api/v1/console/config": {"get": _op("What the console's sign-in offers (demo accounts in demo mode)",
                                              {"200": _json({"type": "object"}, "config")}, auth=False, problems=())},
        "/api/v1/instruments": {"get": _op("Every instrument with its tick, lot and quantity bounds",
                                           {"200": _json({"type": "object"}, "instruments")}, auth=False, problems=())},
        "/api/v1/admin/accounts": {"get": _op("Every account with its role (admin)",
                                              {"200": _json({"type": "object"}, "accounts")}, problems=(401, 403))},
        "/api/v1/admin/accounts/{account_id}/limits": {
            "get": _op("An account's limits and kill switches (admin)", {"200": _json({"type": "object"}, "limits")},
                       params=[_ACCOUNT], problems=(401, 403, 404, 503)),
            "put": _op("Replace an account's limits (admin)", {"202": _ACCEPTED}, body="Limits",
                       params=[_ACCOUNT], problems=(401, 403, 404, 422, 503)),
        },
        "/api/v1/admin/kill-switch": {
            "post": _op("Engage or release the kill switch of an account, or of all (admin)", {"202": _ACCEPTED},
                        body="KillSwitchRequest", problems=(401, 403, 404, 422, 503)),
        },
        "/api/v1/venue/{symbol}": {
            "get": _op("A symbol's live market parameters and mid", {"200": _json({"type": "object"}, "parameters")},
                       params=[_SYMBOL], problems=(401, 404, 503)),
        },
        "/api/v1/admin/venue/{symbol}": {
            "post": _op("Change a symbol's market live: volatility, spread, liquidity, levels, tick, halt (admin)",
                        {"202": _ACCEPTED}, body="VenueSettings", params=[_SYMBOL],
                        problems=(400, 401, 403, 404, 413, 422, 503)),
        },
        "/api/v1/marketdata/{symbol}": {
            "get": _op("A symbol's book (10 levels a side), mid and last trade", {"200": _json(
                {"type": "object", "properties": {"bids": _LEVELS, "asks": _LEVELS, "mid": _DEC,
                                                  "last_trade": {"oneOf": [_TRADE, {"type": "null"}]}}}, "book")},
                params=[_SYMBOL], problems=(401, 404, 503)),
        },
        "/api/v1/marketdata/{symbol}/metrics": {
            "get": _op("Control-center figures of a symbol from the market data this worker saw: volatility, spread, "
                       "liquidity, trend, suggested prices per side, and the fill probability of an order at `price`",
                       {"200": _json({"type": "object"}, "metrics")},
                       params=[_SYMBOL, _query("side", "BUY (default) or SELL", ["BUY", "SELL"]),
                               _query("price", "decimal: estimate the fill probability at this price"),
                               _query("quantity", "decimal, with price")], problems=(400, 401, 404, 503)),
        },
        "/api/v1/marketdata/{symbol}/history": {
            "get": _op("A symbol's last 15 minutes as this worker saw them: mid and spread per second, traded volume per "
                       "minute by aggressor side", {"200": _json({"type": "object"}, "history")},
                       params=[_SYMBOL], problems=(401, 404, 503)),
        },
        "/api/v1/marketdata/{symbol}/trades": {
            "get": _op("A symbol's latest trades, newest first", {"200": _json(
                {"type": "object", "properties": {"trades": {"type": "array", "items": _TRADE}}}, "trades")},
                params=[_SYMBOL, _query("limit", "how many, 1 to 100 (default 50)")], problems=(400, 401, 404, 503)),
        },
        "/api/v1/stream": {"get": {
            "summary": "Live stream (WebSocket upgrade): the account's execution reports with resume offsets, its "
                       "balances, and market data",
            "description": 'First message: {"op": "subscribe", "key": API key, "since": offset or null, "symbols": '
                           '[...]}. Then "hello", "execution" (with "offset": send offset + 1 as "since" to resume), '
                           '"balances", "book", "trade" and "mid" messages. A bad subscription gets an "error" '
                           'message and close code 4400 or 4401; 4403 for a key without the read scope, 4429 past '
                           'the account\'s open streams. A request without a WebSocket handshake is 426; a worker '
                           'serving its most streams answers 503.',
            "responses": {"101": {"description": "switching to the WebSocket protocol"},
                          **_problems(426, 503)},
        }},
        "/api/v1/openapi.json": {"get": _op("This document", {"200": _json({"type": "object"}, "OpenAPI")}, auth=False, problems=())},
        "/metrics": {"get": _op(
            "This worker's Prometheus metrics (text exposition format), for a key with the metrics scope, sent as "
            "X-API-Key or as Authorization: Bearer (README: Observability)",
            {"200": {"description": "the metrics", "content": {"text/plain": {"schema": {"type": "string"}}}}},
            problems=(401, 403, 421, 429))},
        "/healthz": {"get": _op("Liveness", {"200": _json({"type": "object"}, "up")}, auth=False, problems=())},
        "/readyz": {"get": _op("Readiness: broker reachable, tables recovered, partitions assigned, owners known",
                               {"200": _json({"type": "object"}, "ready")}, auth=False, problems=(503,))},
    }
    _declare_the_edge(paths)
    return {
        "openapi": "3.1.0",
        "info": {"title": "ATLAS gateway", "version": "1",
                 "description": "Order entry and queries of the ATLAS OMS, and its simulated venue. Decimals "
                                "travel as JSON strings. "
                                "Errors are RFC 9457 problem documents."},
        "paths": paths,
        "components": {"schemas": schemas,
                       "securitySchemes": {"ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}}},
    }


_RATE_HEADERS = {name: {"description": description, "schema": {"type": "integer"}} for name, description in (
    ("RateLimit-Limit", "the capacity of the request's tightest token bucket"),
    ("RateLimit-Remaining", "requests left in it now"), ("RateLimit-Reset", "seconds until it is full again"))}


def _declare_the_edge(paths: dict) -> None:
    """What every API route enforces besides its own answers: rate limits, the Host allow-list, scopes, body bounds."""
    for path, operations in paths.items():
        if not path.startswith("/api/"):
            continue
        for operation in operations.values():
            responses = operation["responses"]
            extra = [421, 429]
            if operation.get("security"):
                extra.append(403)  # a key without the scope the route needs
            if "requestBody" in operation:
                extra += [400, 413]  # malformed or too deeply nested JSON; a body past the limit
            for status, response in _problems(*extra).items():
                responses.setdefault(status, response)
            responses["429"] = {**responses["429"], "headers": {
                "Retry-After": {"description": "seconds until a token is back", "schema": {"type": "integer"}},
                **_RATE_HEADERS}}
            for status, response in responses.items():
                if status.startswith("2"):
                    response.setdefault("headers", {}).update(_RATE_HEADERS)


@app.page("/api/v1/openapi.json")
class OpenApiView(ApiView):
    """Serve the OpenAPI document."""

    async def get(self, request: Any) -> Any:
        return self.ok(document())
