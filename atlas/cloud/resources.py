"""What ATLAS needs in the cloud, said once: the audit bucket's properties and the read model's tables.

`atlas.cloud.provision` makes them through boto3, `atlas.cloud.verify` checks them, and
`infra/terraform/` describes the same for `terraform apply` (a test keeps the tables alike).
"""
from __future__ import annotations

from dataclasses import dataclass

PROBE_PREFIX = "_probe/"  # under the trail's prefix: where `verify` writes its probe object
OPEN_ORDERS_INDEX = "open-orders"


@dataclass(frozen=True)
class Table:
    """One DynamoDB table: its name after the prefix, keys (all strings), secondary indexes and TTL attribute."""

    suffix: str
    hash_key: str
    range_key: str | None = None
    indexes: tuple[tuple[str, str, str], ...] = ()  # (name, hash key, range key), projecting every attribute
    ttl: str | None = None

    def name(self, prefix: str) -> str:
        return f"{prefix}-{self.suffix}"

    def attributes(self) -> list[str]:
        """Every key attribute of the table and its indexes, once each."""
        found = [self.hash_key] + ([self.range_key] if self.range_key else [])
        for _, hash_key, range_key in self.indexes:
            found += [a for a in (hash_key, range_key) if a not in found]
        return found


# Orders by account; `open_account_id` is set only while an order is open, so the index holds open orders alone.
ORDERS = Table("orders", "account_id", "order_id", indexes=((OPEN_ORDERS_INDEX, "open_account_id", "order_id"),))
BALANCES = Table("balances", "account_id", "asset")
# What the projector has applied (an event's id), kept a while: a replay finds it and writes nothing.
IDEMPOTENCY = Table("idempotency", "id", ttl="expires_at")
TABLES = (ORDERS, BALANCES, IDEMPOTENCY)


def bucket_policy(bucket: str) -> dict:
    """The audit bucket's policy: refuse plain HTTP, and refuse deleting any object or version, whoever asks."""
    arn = f"arn:aws:s3:::{bucket}"
    return {"Version": "2012-10-17", "Statement": [
        {"Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
         "Resource": [arn, f"{arn}/*"], "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
        {"Sid": "DenyObjectDeletes", "Effect": "Deny", "Principal": "*",
         "Action": ["s3:DeleteObject", "s3:DeleteObjectVersion", "s3:BypassGovernanceRetention"],
         "Resource": f"{arn}/*"},
    ]}


def split_sink(url: str) -> tuple[str, str]:
    """(bucket, key prefix) of an `s3://bucket[/prefix]` sink URL."""
    if not url.startswith("s3://"):
        raise ValueError(f"the cloud parts need an S3 audit sink (s3://bucket[/prefix]), not {url!r}")
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    return bucket, prefix.strip("/")
