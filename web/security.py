"""What every response and request of the worker's web server goes through: browser hardening, the Host allow-list, and aiohttp's own errors as problem documents."""
from __future__ import annotations

import functools
import hmac
import json
import logging
import time
from typing import Any, Awaitable, Callable

from aiohttp import web
from cachetools import TTLCache

from atlas.app import app
from atlas.core.accounts import signature
from atlas.runtime import metrics, tracing
from atlas.runtime.reference import LOOPBACK, directory
from atlas.settings import settings
from atlas.web.common import CALLER, FORWARDED_HEADER, is_worker, log_failed_sign_in, presented_key
from atlas.web.problems import PROBLEM_TYPE, Problem, http_problem
from atlas.web.ratelimit import Limits, route_class

LIMITS = Limits()
_PROBES = frozenset({"/healthz", "/readyz"})
_VERDICT = "atlas.rate_limit"  # the request's verdict, whose headers its response carries
access_log = logging.getLogger("atlas.access")

# The console loads its scripts, styles and data from the worker itself, and nothing may frame it.
# Styles may be inline: the depth bars and histograms size themselves with a style attribute.
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                           "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
                           "form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """aiohttp's `on_response_prepare` signal: every response, static files and WebSocket handshakes included."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if settings.web_tls_cert is not None:
        response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
    verdict = request.get(_VERDICT)
    if verdict is not None:
        for name, value in verdict.headers().items():
            response.headers.setdefault(name, value)


@functools.cache
def allowed_hosts() -> frozenset[str]:
    """Host names a request may be addressed to: loopback, the bind address, and `ATLAS_ALLOWED_HOSTS`."""
    names = {*LOOPBACK, settings.web_host.lower()}
    names.update(h.strip().lower() for h in settings.allowed_hosts.split(",") if h.strip())
    return frozenset(names)


def host_name(header: str) -> str:
    """The name part of a Host header ("[::1]:8080" -> "::1", "Example.com:80" -> "example.com")."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def problem_response(problem: Problem, request: web.Request) -> web.Response:
    return web.Response(body=json.dumps(problem.body(request.path)).encode(), status=problem.status,
                        content_type=PROBLEM_TYPE, headers=problem.headers)


@web.middleware
async def guard(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> Any:
    """Refuse a request addressed to a host not on the allow-list (DNS rebinding) or past its rate limit; answer aiohttp's errors as problems."""
    # Health checks answer whatever the Host: an orchestrator probes a worker by its address.
    if host_name(request.headers.get("Host", "")) not in allowed_hosts() and request.path not in _PROBES:
        return problem_response(Problem(421, "MISDIRECTED_REQUEST",
                                        "this worker does not answer for that Host (see ATLAS_ALLOWED_HOSTS)"), request)
    limited = route_class(request.method, request.path)
    caller = None
    if limited is not None:
        key = presented_key(request)
        caller = directory().authenticate(key) if key else None
        # Forwarded by a worker, which charged the client's address: only honoured from a worker's address.
        forwarded = FORWARDED_HEADER in request.headers and is_worker(request.remote)
        verdict = LIMITS.check(limited, request.remote or "", caller.account_id if caller else None,
                               forwarded=forwarded)
        request[_VERDICT] = verdict
        request[CALLER] = caller
        if not verdict.allowed:
            return problem_response(Problem(429, "RATE_LIMITED", f"too many {limited} requests: retry in "
                                            f"{verdict.retry_after_s} s", headers=verdict.headers()), request)
    started = time.perf_counter()
    try:
        if limited is not None and caller is not None and caller.signs:
            # Checked on every worker, forwarded requests too (they carry the client's signature): a header
            # or an address cannot stand in for it.
            refused = await _unsigned(request, directory().signing_secret(caller.key_id))
            if refused is not None:
                log_failed_sign_in(f"{request.method} {request.path} from {request.remote}: {refused.code}",
                                   presented_key(request) or "")
                return problem_response(refused, request)
        response = await handler(request)
    except web.HTTPException as exc:  # an unknown route, a method a route lacks
        if exc.status < 400:
            raise
        response = problem_response(http_problem(exc), request)
    if settings.access_log:
        verdict = request.get(_VERDICT)
        with tracing.within(request.get(_SPAN)):  # the line carries the request's trace id
            access_log.info("%s %s %s %d %.1f ms %s", request.remote, request.method, request.path, response.status,
                            (time.perf_counter() - started) * 1000,
                            getattr(request.get(CALLER), "account_id", None) or ("-" if verdict is None else "anonymous"))
    return response


def route_of(request: web.Request) -> str:
    """The route a request matched, as declared ("/api/v1/orders/{order_id}"): a label of few values, never an id."""
    route = request.match_info.route
    resource = route.resource if route is not None else None
    return resource.canonical if resource is not None else "unmatched"


_SPAN = "atlas.span"  # the request's span, for the access log line the guard writes after it

# HTTP methods as a metric label: the known ones, and OTHER for whatever else a client sends.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


@web.middleware
async def observed(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> Any:
    """Count and time every request by route, method and status (refusals of the guard included)."""
    started = time.perf_counter()
    route = route_of(request)
    method = request.method if request.method in _METHODS else "OTHER"
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        metrics.child(metrics.HTTP_REQUESTS, route, method, str(status)).inc()
        if request.headers.get("Upgrade", "").lower() != "websocket":  # a stream lasts its session, not an answer
            metrics.child(metrics.HTTP_LATENCY, route, method).observe(time.perf_counter() - started)


@web.middleware
async def traced(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> Any:
    """The span of an API request (inside the guard: a client's `traceparent` is followed only once it signed in)."""
    if not tracing.ENABLED or not request.path.startswith("/api/") \
            or request.headers.get("Upgrade", "").lower() == "websocket":
        return await handler(request)
    headers = request.headers if request.get(CALLER) is not None else {}
    with tracing.serving(request.method, route_of(request), request.path, headers, request.remote) as span:
        request[_SPAN] = span
        response = await handler(request)
        span.set_attribute("http.response.status_code", response.status)
        return response


TIMESTAMP_HEADER, SIGNATURE_HEADER = "X-Atlas-Timestamp", "X-Atlas-Signature"
_SEEN_SIGNATURES: TTLCache = TTLCache(maxsize=200_000, ttl=2 * settings.signature_window_ms / 1000)


async def _unsigned(request: web.Request, secret: str | None) -> Problem | None:
    """Why a request with a signing key is refused (no signature, too old or new, wrong, or sent before), or None."""
    stamp, sent = request.headers.get(TIMESTAMP_HEADER, ""), request.headers.get(SIGNATURE_HEADER, "")
    if secret is None or not stamp or not sent:
        return Problem(401, "SIGNATURE_REQUIRED", f"this key signs its requests: send {TIMESTAMP_HEADER} (ms since "
                                                  f"the epoch) and {SIGNATURE_HEADER}", headers={"WWW-Authenticate": "ApiKey"})
    if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= 16) \
            or abs(time.time() * 1000 - int(stamp)) > settings.signature_window_ms:
        return Problem(401, "SIGNATURE_EXPIRED", f"{TIMESTAMP_HEADER} must be within "
                                                 f"{settings.signature_window_ms} ms of the worker's clock")
    expected = signature(secret, stamp, request.method, request.path_qs, await request.read())
    if not (sent.isascii() and hmac.compare_digest(expected, sent.lower())):
        return Problem(401, "SIGNATURE_INVALID", "the signature does not match the request (timestamp, method, "
                                                 "path and query, body)")
    if expected in _SEEN_SIGNATURES:
        return Problem(401, "SIGNATURE_REPLAYED", "this signed request was received before")
    _SEEN_SIGNATURES[expected] = True
    return None


def install(aiohttp_app: web.Application) -> None:
    """Put the guard in front of every route and the headers on every response (before the server starts)."""
    aiohttp_app.middlewares.append(observed)
    aiohttp_app.middlewares.append(guard)
    aiohttp_app.middlewares.append(traced)
    aiohttp_app.on_response_prepare.append(add_security_headers)


install(app.web.web_app)  # the worker's web server; autodiscovery imports this module before it starts
