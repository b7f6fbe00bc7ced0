"""The web server's edges (issue 14): requests that were 500s, the Host allow-list, and the browser headers on every response."""
from __future__ import annotations

import http.client
import socket
from urllib.parse import urlsplit

import pytest

from tests.live import Api

pytestmark = pytest.mark.integration

ORDERS = "/api/v1/orders"
HARDENING = {"content-security-policy", "x-content-type-options", "referrer-policy", "x-frame-options"}


def assert_problem(response, status: int, code: str) -> dict:
    assert response.status == status, response
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    assert response.body["status"] == status and response.body["code"] == code, response.body
    return response.body


def raw_exchange(api: Api, request: bytes) -> tuple[int, bytes]:
    """Send bytes exactly as given (headers that urllib would re-encode); the status and the body back."""
    url = urlsplit(api.base_url)
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, payload = received.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), payload


def test_the_stream_route_without_a_websocket_handshake_is_426(alice):
    # Found by schemathesis: aiohttp's handshake error came out as a 500.
    response = alice.get("/api/v1/stream")
    assert_problem(response, 426, "UPGRADE_REQUIRED")
    assert response.headers["upgrade"] == "websocket"


@pytest.mark.parametrize("depth", [33, 5_000])
def test_a_body_nested_past_the_limit_is_400_before_it_is_parsed(alice, depth):
    # 5,000 levels made json.loads raise RecursionError: a 500.
    nested = b"[" * depth + b"]" * depth
    assert_problem(alice.post(ORDERS, raw=nested), 400, "JSON_TOO_DEEP")
    assert_problem(alice.request("PATCH", f"{ORDERS}/O1", raw=b'{"price": ' + nested + b"}"), 400, "JSON_TOO_DEEP")


def test_brackets_inside_strings_do_not_count_as_nesting(alice):
    response = alice.post(ORDERS, {"client_order_id": "[" * 40, "symbol": "{" * 20, "side": "BUY", "type": "LIMIT",
                                   "quantity": "0.01", "price": "64000.00"})
    assert_problem(response, 422, "VALIDATION_ERROR")  # the id's grammar, not the depth


@pytest.mark.parametrize("method", ["DELETE", "PATCH"])
@pytest.mark.parametrize("order_id", ["bad!id", "x" * 65, "%C3%A9t%C3%A9"])
def test_an_order_id_no_order_can_have_is_404(alice, method, order_id):
    # DELETE /api/v1/orders/bad!id was a 500 (the command model refused the id).
    response = alice.request(method, f"{ORDERS}/{order_id}", {"price": "64000.00"} if method == "PATCH" else None)
    assert_problem(response, 404, "NOT_FOUND")


@pytest.mark.parametrize("key", ["caf\u00e9".encode(), "\u0661\u0662\u0663".encode(), b"a b", b"x" * 49, b""])
def test_an_idempotency_key_outside_its_ascii_grammar_is_400(alice, key):
    # str.isalnum() took "é" and Arabic-Indic digits.
    url = urlsplit(alice.base_url)
    status, payload = raw_exchange(alice, b"DELETE /api/v1/orders/O123 HTTP/1.1\r\n"
                                          b"Host: " + url.netloc.encode() + b"\r\n"
                                          b"X-API-Key: " + alice.key.encode() + b"\r\n"
                                          b"Idempotency-Key: " + key + b"\r\n"
                                          b"Connection: close\r\n\r\n")
    assert status == 400 and b"INVALID_IDEMPOTENCY_KEY" in payload, (status, payload[:300])


@pytest.mark.parametrize("key", [b"\xff\xfe", "caf\u00e9".encode(), b"k" * 300])
def test_a_key_that_cannot_be_one_is_401_not_an_error(alice, key):
    # Bytes that are not UTF-8 made the key's digest raise in the rate limiter: a 500 without a problem document.
    url = urlsplit(alice.base_url)
    status, payload = raw_exchange(alice, b"GET /api/v1/balances HTTP/1.1\r\nHost: " + url.netloc.encode() +
                                   b"\r\nX-API-Key: " + key + b"\r\nConnection: close\r\n\r\n")
    assert status == 401 and b"UNAUTHENTICATED" in payload, (status, payload[:300])


def test_a_chunked_body_past_the_limit_is_413(alice):
    # No Content-Length to check up front: aiohttp's own 1 MiB limit used to end as a 500.
    url = urlsplit(alice.base_url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    chunks = (b" " * 65536 for _ in range(24))  # 1.5 MiB of JSON whitespace
    try:
        connection.request("POST", ORDERS, body=chunks, encode_chunked=True,
                           headers={"X-API-Key": alice.key, "Content-Type": "application/json"})
        response = connection.getresponse()
        status, content_type = response.status, response.getheader("Content-Type", "")
    except (BrokenPipeError, ConnectionResetError):
        pytest.fail("the server dropped the connection instead of answering 413")
    finally:
        connection.close()
    assert status == 413 and content_type.startswith("application/problem+json")


def test_a_request_for_another_host_is_421(alice, cluster):
    # A DNS-rebinding page reaches a loopback worker under its own name: the Host header gives it away.
    response = alice.get("/api/v1/limits", headers={"Host": "rebind.attacker.example"})
    assert_problem(response, 421, "MISDIRECTED_REQUEST")
    assert_problem(Api(cluster.workers[0].url).get("/api/v1/console/config",
                                                  headers={"Host": "rebind.attacker.example:8080"}),
                   421, "MISDIRECTED_REQUEST")
    port = urlsplit(alice.base_url).port
    assert alice.get("/api/v1/limits", headers={"Host": f"localhost:{port}"}).status == 200


def test_unknown_routes_and_methods_are_problem_documents(alice):
    assert_problem(alice.get("/api/v1/nothing-here"), 404, "NOT_FOUND")
    response = alice.request("PUT", ORDERS, {})
    assert_problem(response, 405, "METHOD_NOT_ALLOWED")
    assert "POST" in response.headers["allow"]


@pytest.mark.parametrize("path", ["/", "/static/console.js", "/api/v1/instruments", "/api/v1/limits",
                                  "/api/v1/orders/bad!id/executions", "/no-such-page"])
def test_every_response_carries_the_browser_hardening_headers(alice, path):
    response = alice.get(path)
    assert HARDENING <= set(response.headers), (path, response.status, response.headers)
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy and "object-src 'none'" in policy
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
