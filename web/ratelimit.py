"""Rate limits at the gateway: token buckets per API key and route class, and per client address, before anything reaches Kafka.

A request takes one token from its address's bucket and, when it carries a valid key, one from
that account's bucket of the route's class (orders, amends, reads, admin). An empty bucket answers
429 with `Retry-After` and the `RateLimit-*` headers (IETF draft "RateLimit header fields for HTTP",
draft 7 field names), and nothing is produced. Every answer of a limited route carries the headers
of the bucket closest to empty, so a client can pace itself. Buckets live in the worker's memory:
with several workers, each enforces its own (a client spread over N workers gets up to N times the rate).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import token_bucket
from cachetools import TTLCache

from atlas.settings import RateLimit, settings

MAX_BUCKETS = 100_000  # per class: keys and addresses seen lately; the least recently used goes first


class _ExpiringStorage(token_bucket.MemoryStorage):
    """token_bucket's in-memory storage whose buckets go once they would have refilled (a fresh bucket is full anyway).

    Without this, one bucket per client address ever seen would stay for good: state that grows with history.
    """

    def __init__(self, refill_s: float) -> None:
        super().__init__()
        self._buckets = TTLCache(maxsize=MAX_BUCKETS, ttl=refill_s + 1.0)


class Verdict(NamedTuple):
    allowed: bool
    limit: int  # the bucket's capacity
    remaining: int  # whole tokens left
    reset_s: int  # seconds until the bucket is full again
    retry_after_s: int  # seconds until one token is back (0 when allowed)

    def headers(self) -> dict[str, str]:
        headers = {"RateLimit-Limit": str(self.limit), "RateLimit-Remaining": str(self.remaining),
                   "RateLimit-Reset": str(self.reset_s)}
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after_s)
        return headers


class Bucket:
    """One class of token buckets: the same rate and burst for every key."""

    def __init__(self, limit: RateLimit) -> None:
        self.rate, self.burst = limit.per_second, limit.burst
        self._storage = _ExpiringStorage(self.burst / self.rate)
        self._limiter = token_bucket.Limiter(self.rate, self.burst, self._storage)

    def take(self, key: str) -> Verdict:
        allowed = self._limiter.consume(key)
        tokens = max(0.0, self._storage.get_token_count(key))
        return Verdict(allowed, self.burst, int(tokens), math.ceil((self.burst - tokens) / self.rate),
                       0 if allowed else max(1, math.ceil((1 - tokens) / self.rate)))


class Limits:
    """Every class of the gateway, built from settings."""

    def __init__(self) -> None:
        configured = settings.rate_limits
        self.address = Bucket(configured.address)
        self.by_class = {name: Bucket(getattr(configured, name)) for name in ("orders", "amends", "reads", "admin")}

    def check(self, route_class: str, address: str, account: str | None, *, forwarded: bool = False) -> Verdict:
        """Take a token from the address's bucket, and from the account's bucket of the class when there is one.

        A request another worker forwarded (an authenticated read it does not own) was charged to the
        client's address there; here its address is that worker's, so only the account is charged.
        """
        verdicts = []
        if not (forwarded and account is not None):
            verdicts.append(self.address.take(address))
            if not verdicts[0].allowed:
                return verdicts[0]  # refused here: the account's bucket keeps its tokens
        if account is not None:
            verdicts.append(self.by_class[route_class].take(account))
        return min(verdicts, key=lambda v: (v.allowed, v.remaining / v.limit))


def route_class(method: str, path: str) -> str | None:
    """The class a request's limits come from, or None for what is not limited (the console's static files, health)."""
    if path == "/metrics":
        return "reads"  # a scrape: keyed (and signed, for a signing key) like the API's reads
    if not path.startswith("/api/"):
        return None
    if path.startswith("/api/v1/admin"):
        return "admin"
    if method == "POST" and path.rstrip("/") == "/api/v1/orders":
        return "orders"
    if method in ("DELETE", "PATCH") and path.startswith("/api/v1/orders/"):
        return "amends"
    return "reads"
