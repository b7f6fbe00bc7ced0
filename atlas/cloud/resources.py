"""What ATLAS needs in the cloud, said once: the audit bucket's properties and the read model's tables.

`atlas.cloud.provision` makes them through boto3, `atlas.cloud.verify` checks them, and
`infra/terraform/` describes the same for `terraform apply` (a test keeps the tables alike).
"""
from __future__ import annotations

from dataclasses import dataclass

from atlas.audit.sinks import split_s3_url

PROBE_PREFIX = "_probe/"  # under the trail's prefix: where `verify` writes its probe object
OPEN_ORDERS_INDEX = "open-orders"
CREATED_INDEX = "by-created"


@dataclass(frozen=True)
class Table:
    """One DynamoDB table: its name after the prefix, keys, secondary indexes and TTL attribute.

    Keys are strings unless `numbers` names them. Indexes project every attribute: `indexes` are global
    (name, hash key, range key), `local_indexes` share the table's hash key (name, range key).
    """

    suffix: str
    hash_key: str
    range_key: str | None = None
    indexes: tuple[tuple[str, str, str], ...] = ()
    local_indexes: tuple[tuple[str, str], ...] = ()
    ttl: str | None = None
    numbers: tuple[str, ...] = ()

    def name(self, prefix: str) -> str:
        """The table's name under a prefix (`ATLAS_CLOUD_TABLE_PREFIX`)."""
        return f"{prefix}-{self.suffix}"

    def attributes(self) -> list[str]:
        """Every key attribute of the table and its indexes, once each."""
        found = [self.hash_key] + ([self.range_key] if self.range_key else [])
        for key in [k for _, h, r in self.indexes for k in (h, r)] + [r for _, r in self.local_indexes]:
            if key not in found:
                found.append(key)
        return found

    def type_of(self, attribute: str) -> str:
        """A key attribute's DynamoDB type: "N" for those `numbers` names, else "S"."""
        return "N" if attribute in self.numbers else "S"


# Orders by account, newest first through `by-created` (created_key: creation time, then order id);
# `open_account_id` is set only while an order is open, so `open-orders` holds open orders alone.
ORDERS = Table("orders", "account_id", "order_id", indexes=((OPEN_ORDERS_INDEX, "open_account_id", "created_key"),),
               local_indexes=((CREATED_INDEX, "created_key"),))
EXECUTIONS = Table("executions", "order_id", "seq", numbers=("seq",))  # an order's reports, by seq
BALANCES = Table("balances", "account_id", "asset")
# What the projector has applied (an execution report's exec_id), kept a while: a replay finds it and writes nothing.
IDEMPOTENCY = Table("idempotency", "id", ttl="expires_at")
TABLES = (ORDERS, EXECUTIONS, BALANCES, IDEMPOTENCY)


def bucket_policy(bucket: str, require_tls: bool = True) -> dict:
    """The audit bucket's policy: refuse plain HTTP (unless `require_tls` is off: an S3-compatible store on a
    private network without TLS), and refuse deleting any object or version, whoever asks."""
    arn = f"arn:aws:s3:::{bucket}"
    tls = [{"Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
            "Resource": [arn, f"{arn}/*"], "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]
    return {"Version": "2012-10-17", "Statement": [
        *(tls if require_tls else []),
        {"Sid": "DenyObjectDeletes", "Effect": "Deny", "Principal": "*",
         "Action": ["s3:DeleteObject", "s3:DeleteObjectVersion", "s3:BypassGovernanceRetention"],
         "Resource": f"{arn}/*"},
    ]}


def split_sink(url: str) -> tuple[str, str]:
    """(bucket, key prefix) of an `s3://bucket[/prefix]` sink URL."""
    if not url.startswith("s3://"):
        raise ValueError(f"the cloud parts need an S3 audit sink (s3://bucket[/prefix]), not {url!r}")
    return split_s3_url(url)
