"""Every bad request gets a 4xx problem document with a stable code, and places nothing."""
from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.integration

ORDER = {"client_order_id": "err-1", "symbol": "BTC-USD", "side": "BUY", "type": "LIMIT",
         "quantity": "0.01", "price": "64000.00"}


def assert_problem(response, status: int, code: str) -> dict:
    assert response.status == status, response
    assert response.headers["content-type"].startswith("application/problem+json")
    doc = response.body
    assert doc["status"] == status and doc["code"] == code
    assert doc["type"].startswith("/problems/") and doc["title"] and doc["detail"]
    return doc


@pytest.mark.parametrize("change, code, field", [
    ({"symbol": "DOGE-USD"}, "UNKNOWN_SYMBOL", None),
    ({"quantity": "abc"}, "VALIDATION_ERROR", "quantity"),
    ({"quantity": 0.01}, "VALIDATION_ERROR", "quantity"),
    ({"quantity": "NaN"}, "VALIDATION_ERROR", "quantity"),
    ({"quantity": "-1"}, "INVALID_QUANTITY", None),
    ({"quantity": "0"}, "INVALID_QUANTITY", None),
    ({"quantity": "0.00001"}, "INVALID_QUANTITY", None),
    ({"quantity": "1000"}, "INVALID_QUANTITY", None),
    ({"price": "64000.001"}, "INVALID_PRICE", None),
    ({"price": "-5"}, "INVALID_PRICE", None),
    ({"side": "HOLD"}, "VALIDATION_ERROR", "side"),
    ({"type": "STOP"}, "VALIDATION_ERROR", "type"),
    ({"time_in_force": "GTD"}, "VALIDATION_ERROR", "time_in_force"),
    ({"extra": "x"}, "VALIDATION_ERROR", "extra"),
    ({"price": None}, "VALIDATION_ERROR", "body"),
    ({"type": "MARKET"}, "VALIDATION_ERROR", "body"),
])
def test_invalid_order_is_422_with_code(alice, change, code, field):
    doc = assert_problem(alice.post("/api/v1/orders", {**ORDER, **change}), 422, code)
    if field:
        assert field in [e["field"] for e in doc["errors"]]


@pytest.mark.parametrize("missing", ["client_order_id", "symbol", "side", "type", "quantity"])
def test_missing_field_is_422_naming_it(alice, missing):
    body = {k: v for k, v in ORDER.items() if k != missing}
    doc = assert_problem(alice.post("/api/v1/orders", body), 422, "VALIDATION_ERROR")
    assert {"field": missing, "message": "field required"} in doc["errors"]


def test_malformed_json_is_400(alice):
    assert_problem(alice.post("/api/v1/orders", raw=b'{"client_order_id": '), 400, "MALFORMED_JSON")


def test_body_not_an_object_is_422(alice):
    assert_problem(alice.post("/api/v1/orders", raw=b"[1, 2]"), 422, "VALIDATION_ERROR")


def test_body_over_64_kib_is_413(alice):
    body = json.dumps({**ORDER, "client_order_id": "big", "pad": "x" * (65 * 1024)}).encode()
    assert_problem(alice.post("/api/v1/orders", raw=body), 413, "BODY_TOO_LARGE")


def test_missing_key_is_401(anonymous):
    doc = assert_problem(anonymous.post("/api/v1/orders", ORDER), 401, "UNAUTHENTICATED")
    assert "X-API-Key" in doc["detail"]
    assert_problem(anonymous.get("/api/v1/balances"), 401, "UNAUTHENTICATED")


def test_wrong_key_is_401(alice):
    assert_problem(alice.as_key("not-a-key").post("/api/v1/orders", ORDER), 401, "UNAUTHENTICATED")


def test_trader_key_on_admin_endpoint_is_403(alice):
    assert_problem(alice.post("/api/v1/admin/kill-switch", {"engaged": True}), 403, "FORBIDDEN")
    assert_problem(alice.request("PUT", "/api/v1/admin/accounts/alice/limits", {"max_order_notional": "1"}),
                   403, "FORBIDDEN")


def test_replace_needs_a_change(alice):
    assert_problem(alice.request("PATCH", "/api/v1/orders/Oabc", {}), 422, "VALIDATION_ERROR")
    assert_problem(alice.request("PATCH", "/api/v1/orders/Oabc", {"quantity": "-1"}), 422, "INVALID_QUANTITY")
    assert_problem(alice.request("PATCH", "/api/v1/orders/Oabc", {"colour": "red"}), 422, "VALIDATION_ERROR")


def test_unknown_order_is_404(alice):
    assert_problem(alice.get("/api/v1/orders/Onope"), 404, "NOT_FOUND")


def test_rejected_requests_place_no_order(alice):
    alice.post("/api/v1/orders", {**ORDER, "client_order_id": "never-placed", "quantity": "-1"})
    alice.post("/api/v1/orders", raw=b'{"client_order_id": "never-placed-2"')
    orders = alice.get("/api/v1/orders").body["orders"]
    assert not {"never-placed", "never-placed-2"} & {o["client_order_id"] for o in orders}
