"""The gateway's token buckets: what a request takes, what it is told, and state that does not grow with clients seen."""
from __future__ import annotations

import pytest

from atlas.settings import RateLimit, RateLimits, settings
from atlas.web import ratelimit
from atlas.web.ratelimit import Bucket, Limits, route_class


def test_a_bucket_allows_its_burst_then_refuses_with_when_to_retry():
    bucket = Bucket(RateLimit(per_second=0.5, burst=3))
    verdicts = [bucket.take("alice") for _ in range(4)]
    assert [v.allowed for v in verdicts] == [True, True, True, False]
    assert [v.remaining for v in verdicts] == [2, 1, 0, 0]
    refused = verdicts[-1]
    assert refused.retry_after_s == 2 and refused.reset_s == 6  # one token in 2 s, full in 6 s at 0.5/s
    assert refused.headers() == {"RateLimit-Limit": "3", "RateLimit-Remaining": "0", "RateLimit-Reset": "6",
                                 "Retry-After": "2"}
    assert "Retry-After" not in verdicts[0].headers()
    assert bucket.take("bob").allowed  # each key has its own bucket


def test_a_bucket_refills_at_its_rate(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(ratelimit.token_bucket.storage.time, "monotonic", lambda: now[0])
    bucket = Bucket(RateLimit(per_second=2, burst=2))
    assert bucket.take("k").allowed and bucket.take("k").allowed and not bucket.take("k").allowed
    now[0] += 0.5  # one token back
    assert bucket.take("k").allowed and not bucket.take("k").allowed


def test_buckets_of_clients_gone_quiet_are_dropped(monkeypatch):
    bucket = Bucket(RateLimit(per_second=1000, burst=10))
    for n in range(ratelimit.MAX_BUCKETS + 500):
        bucket.take(f"10.0.{n // 256}.{n % 256}")
    assert len(bucket._storage._buckets) <= ratelimit.MAX_BUCKETS


def limits_of(monkeypatch, **buckets: RateLimit) -> Limits:
    """The gateway's buckets as the settings would give them, each class not named holding 5 (1 a second)."""
    configured = RateLimits(**{name: buckets.get(name, RateLimit(per_second=1, burst=5))
                               for name in ("address", "orders", "amends", "reads", "admin")})
    monkeypatch.setattr(ratelimit, "settings", settings.model_copy(update={"rate_limits": configured}))
    return Limits()


def test_limits_charge_the_address_and_the_accounts_class(monkeypatch):
    limits = limits_of(monkeypatch, address=RateLimit(per_second=1, burst=3), orders=RateLimit(per_second=1, burst=2))
    assert limits.check("orders", "10.0.0.1", "alice").allowed
    assert limits.check("orders", "10.0.0.2", "alice").allowed
    refused = limits.check("orders", "10.0.0.3", "alice")  # alice's orders bucket is empty, whatever the address
    assert not refused.allowed and refused.limit == 2
    assert limits.check("amends", "10.0.0.1", "alice").allowed  # another class, another bucket
    assert limits.check("reads", "10.0.0.1", None).allowed  # the address's third request in all
    assert not limits.check("reads", "10.0.0.1", None).allowed  # and its fourth: past its burst
    # A forwarded read is charged to the account only: its address is the forwarding worker's.
    assert limits.check("reads", "10.0.0.1", "alice", forwarded=True).allowed
    assert not limits.check("reads", "10.0.0.1", None, forwarded=True).allowed  # no valid key: the address pays


def test_a_request_refused_by_its_address_leaves_the_accounts_bucket_alone(monkeypatch):
    limits = limits_of(monkeypatch, address=RateLimit(per_second=0.001, burst=1),
                       orders=RateLimit(per_second=0.001, burst=1))
    assert limits.check("reads", "10.0.0.1", None).allowed  # the address's one token
    refused = limits.check("orders", "10.0.0.1", "alice")
    assert not refused.allowed and refused.limit == 1
    assert limits.check("orders", "10.0.0.2", "alice").allowed  # alice's order token was not spent


@pytest.mark.parametrize("method, path, expected", [
    ("POST", "/api/v1/orders", "orders"), ("DELETE", "/api/v1/orders/O1", "amends"),
    ("PATCH", "/api/v1/orders/O1", "amends"), ("GET", "/api/v1/orders", "reads"),
    ("GET", "/api/v1/orders/O1/executions", "reads"), ("POST", "/api/v1/risk/preview", "reads"),
    ("PUT", "/api/v1/admin/accounts/alice/limits", "admin"), ("GET", "/api/v1/admin/accounts", "admin"),
    ("GET", "/api/v1/stream", "reads"), ("GET", "/", None), ("GET", "/static/console.js", None),
    ("GET", "/readyz", None),
])
def test_each_route_takes_its_classes_tokens(method, path, expected):
    assert route_class(method, path) == expected
