"""`python -m atlas cloud verify`: check a deployment, property by property, and say which one is wrong.

Who the caller is; the audit bucket's versioning, Object Lock and its default retention, default
encryption, public-access block and policy; a probe object written under the trail's prefix with a
retention and read back; each read-model table's keys, indexes, TTL and state; and the Kafka
cluster: reachable, and every ATLAS topic there with its partitions. Each check is a row of the
report; one failure makes the exit status 1.

The probe object stays: Object Lock keeps it for its retention (one day), which is what is checked.
"""
from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from atlas.cloud.provision import read_encryption, read_policy, read_public_access_block, retention_holds
from atlas.cloud.resources import PROBE_PREFIX, TABLES, Table


@dataclass(frozen=True)
class Check:
    """One row of the report: what was checked, whether it holds, and what was found."""

    name: str
    ok: bool
    detail: str


def _checked(name: str, probe: Callable[[], tuple[bool, str]]) -> Check:
    """One check; an error while checking is its failure, with the error's words."""
    try:
        ok, detail = probe()
    except Exception as exc:  # boto's and aiokafka's errors alike: the report names them
        return Check(name, False, f"{type(exc).__name__}: {exc}"[:300])
    return Check(name, ok, detail)


def identity(sts: Any) -> Check:
    """Who the AWS calls are made as."""
    def probe() -> tuple[bool, str]:
        who = sts.get_caller_identity()
        return True, f"account {who['Account']}, {who['Arn']}"
    return _checked("caller identity", probe)


def bucket(s3: Any, name: str, prefix: str, lock_mode: str, lock_days: int = 1, require_tls: bool = True) -> list[Check]:
    """The audit bucket's properties, then the probe object."""
    def exists() -> tuple[bool, str]:
        s3.head_bucket(Bucket=name)
        return True, f"s3://{name}"

    found = _checked("bucket exists", exists)
    if not found.ok:
        return [found]

    def versioning() -> tuple[bool, str]:
        status = s3.get_bucket_versioning(Bucket=name).get("Status", "never enabled")
        return status == "Enabled", status

    def lock() -> tuple[bool, str]:
        config = s3.get_object_lock_configuration(Bucket=name)["ObjectLockConfiguration"]
        retention = config.get("Rule", {}).get("DefaultRetention", {})
        days = retention.get("Days") or (retention.get("Years", 0) * 365)
        ok = config.get("ObjectLockEnabled") == "Enabled" and retention_holds(config, lock_mode, lock_days)
        return ok, f"{config.get('ObjectLockEnabled', 'off')}, default {retention.get('Mode', 'none')} {days} days " \
                   f"(wanted {lock_mode}, at least {lock_days} days)"

    def encryption() -> tuple[bool, str]:
        found = read_encryption(s3, name) or {}
        algorithm = found.get("SSEAlgorithm", "no default encryption")
        return algorithm == "aws:kms", algorithm if algorithm == "aws:kms" else f"{algorithm} (wanted aws:kms)"

    def public_access() -> tuple[bool, str]:
        block = read_public_access_block(s3, name) or {}
        off = [k for k in ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")
               if not block.get(k)]
        return not off, "all four on" if not off else f"off: {', '.join(off)}"

    def policy() -> tuple[bool, str]:
        statements = (read_policy(s3, name) or {}).get("Statement", [])
        denies = [s for s in statements if s.get("Effect") == "Deny"]
        tls = any(s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") in ("false", False)
                  for s in denies)
        deletes = any("s3:DeleteObject" in _listed(s.get("Action")) for s in denies)
        wanted = (("plain HTTP", tls),) if require_tls else ()
        missing = [what for what, there in (*wanted, ("object deletes", deletes)) if not there]
        refused = "plain HTTP and deletes" if require_tls else "deletes (plain HTTP allowed: ATLAS_CLOUD_REQUIRE_TLS)"
        return not missing, f"refuses {refused}" if not missing else f"does not refuse {', '.join(missing)}"

    def probe_object() -> tuple[bool, str]:
        key = f"{prefix}/{PROBE_PREFIX}{uuid.uuid4().hex}" if prefix else f"{PROBE_PREFIX}{uuid.uuid4().hex}"
        body = f"atlas cloud verify {datetime.now(timezone.utc).isoformat()}".encode()
        until = datetime.now(timezone.utc) + timedelta(days=1)
        s3.put_object(Bucket=name, Key=key, Body=body, ObjectLockMode=lock_mode, ObjectLockRetainUntilDate=until,
                      ChecksumAlgorithm="SHA256")
        got = s3.get_object(Bucket=name, Key=key)
        read = got["Body"].read()
        held = got.get("ObjectLockMode") == lock_mode and got.get("ObjectLockRetainUntilDate") is not None
        ok = read == body and held
        return ok, f"{key}: written and read back, retained {lock_mode} until {until:%Y-%m-%d %H:%M}Z" if ok else \
            f"{key}: read back {'the same' if read == body else 'different'} bytes, retention " \
            f"{got.get('ObjectLockMode', 'none')}"

    return [found, *(_checked(n, p) for n, p in (
        ("bucket versioning", versioning), ("bucket object lock", lock), ("bucket encryption", encryption),
        ("bucket public access block", public_access), ("bucket policy", policy), ("probe object", probe_object)))]


def _listed(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def table(dynamodb: Any, spec: Table, prefix: str) -> Check:
    name = spec.name(prefix)

    def probe() -> tuple[bool, str]:
        described = dynamodb.describe_table(TableName=name)["Table"]
        problems = []
        keys = {k["KeyType"]: k["AttributeName"] for k in described["KeySchema"]}
        if keys != {"HASH": spec.hash_key, **({"RANGE": spec.range_key} if spec.range_key else {})}:
            problems.append(f"keys {keys}")
        indexes = {i["IndexName"]: {k["KeyType"]: k["AttributeName"] for k in i["KeySchema"]}
                   for i in described.get("GlobalSecondaryIndexes", [])}
        for index, hash_key, range_key in spec.indexes:
            if indexes.get(index) != {"HASH": hash_key, "RANGE": range_key}:
                problems.append(f"index {index} missing or keyed otherwise")
        local = {i["IndexName"]: {k["KeyType"]: k["AttributeName"] for k in i["KeySchema"]}
                 for i in described.get("LocalSecondaryIndexes", [])}
        for index, range_key in spec.local_indexes:
            if local.get(index) != {"HASH": spec.hash_key, "RANGE": range_key}:
                problems.append(f"local index {index} missing or keyed otherwise")
        types = {a["AttributeName"]: a["AttributeType"] for a in described["AttributeDefinitions"]}
        if any(types.get(a) != spec.type_of(a) for a in (spec.hash_key, spec.range_key) if a):
            problems.append(f"key types {types}")
        if described.get("TableStatus") != "ACTIVE":
            problems.append(f"status {described.get('TableStatus')}")
        if spec.ttl:
            ttl = dynamodb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
            if ttl.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING") or ttl.get("AttributeName") != spec.ttl:
                problems.append(f"TTL on {spec.ttl} is {ttl.get('TimeToLiveStatus', 'off')}")
        shown = f"{spec.hash_key}" + (f" / {spec.range_key}" if spec.range_key else "") + \
            "".join(f", index {i}" for i, _, _ in spec.indexes) + \
            "".join(f", local index {i}" for i, _ in spec.local_indexes) + (f", TTL {spec.ttl}" if spec.ttl else "")
        return not problems, "; ".join(problems) if problems else shown
    return _checked(f"table {name}", probe)


def kafka(options: dict, topics: Sequence[str], partitions: int, timeout: float = 20.0) -> Check:
    """The cluster answers, and holds every ATLAS topic with its partitions."""
    async def look() -> tuple[bool, str]:
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(**options, request_timeout_ms=int(timeout * 1000))
        await asyncio.wait_for(admin.start(), timeout)
        try:
            present = set(await asyncio.wait_for(admin.list_topics(), timeout))
            missing = [t for t in topics if t not in present]
            described = await asyncio.wait_for(admin.describe_topics([t for t in topics if t in present]), timeout)
        finally:
            await admin.close()
        short = [f"{d['topic']} ({len(d['partitions'])})" for d in described if len(d["partitions"]) != partitions]
        problems = ([f"missing {', '.join(missing)}"] if missing else []) + \
            ([f"not {partitions} partitions: {', '.join(short)}"] if short else [])
        return not problems, "; ".join(problems) if problems else \
            f"{options['bootstrap_servers'][0]}: {len(topics)} topics of {partitions} partitions"
    return _checked("kafka", lambda: asyncio.run(look()))


def verify(sts: Any, s3: Any, dynamodb: Any, bucket_name: str, prefix: str, table_prefix: str, lock_mode: str,
           kafka_options: dict | None, topics: Sequence[str], partitions: int, require_tls: bool = True,
           lock_days: int = 1) -> list[Check]:
    """Every check, in the report's order (Kafka left out when `kafka_options` is None)."""
    checks = [identity(sts), *bucket(s3, bucket_name, prefix, lock_mode, lock_days, require_tls),
              *(table(dynamodb, spec, table_prefix) for spec in TABLES)]
    if kafka_options is not None:
        checks.append(kafka(kafka_options, topics, partitions))
    return checks


def render(checks: Sequence[Check]) -> str:
    """The report: a row per check, then how many pass."""
    width = max(len(c.name) for c in checks)
    lines = [f"{'check':<{width}}  result  detail"]
    lines += [f"{c.name:<{width}}  {'ok' if c.ok else 'FAIL':<6}  {c.detail}" for c in checks]
    failed = sum(not c.ok for c in checks)
    lines.append(f"{len(checks) - failed} of {len(checks)} checks pass" + (f", {failed} FAIL" if failed else ""))
    return "\n".join(lines) + "\n"
