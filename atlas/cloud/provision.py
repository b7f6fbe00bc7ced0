"""`python -m atlas cloud provision`: make what ATLAS needs through boto3, idempotently.

The audit bucket (Object Lock with a default retention, versioning, KMS encryption, a public-access
block, a policy refusing plain HTTP and deletes) and the read model's tables (on-demand, KMS,
point-in-time recovery, the idempotency table's TTL). What exists already is checked and brought
to the wanted state: a bucket made without Object Lock gets it (S3 allows it once versioning is on);
one that refuses it is an error.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from atlas.cloud.resources import TABLES, Table, bucket_policy

Say = Callable[[str], None]


class ProvisionError(Exception):
    """Something exists in a state provisioning cannot change: the message says what to do."""


def _code(exc: Exception) -> str:
    return getattr(exc, "response", {}).get("Error", {}).get("Code", "")


def bucket(s3: Any, name: str, lock_mode: str, lock_days: int, say: Say, require_tls: bool = True) -> None:
    """The audit bucket with its properties (each put only when it differs)."""
    from botocore.exceptions import ClientError

    try:
        s3.head_bucket(Bucket=name)
    except ClientError as exc:
        if _code(exc) not in ("404", "NoSuchBucket", "NotFound"):
            raise
        args: dict[str, Any] = {"Bucket": name, "ObjectLockEnabledForBucket": True}
        region = s3.meta.region_name
        if region and region != "us-east-1":
            args["CreateBucketConfiguration"] = {"LocationConstraint": region}
        s3.create_bucket(**args)
        say(f"created bucket {name} with Object Lock")
    if s3.get_bucket_versioning(Bucket=name).get("Status") != "Enabled":
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        say(f"{name}: versioning on")
    try:
        lock = s3.get_object_lock_configuration(Bucket=name)["ObjectLockConfiguration"]
    except ClientError as exc:
        if _code(exc) != "ObjectLockConfigurationNotFoundError":
            raise
        lock = {}
    wanted = {"ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": lock_mode, "Days": lock_days}}}
    if lock.get("ObjectLockEnabled") != "Enabled" or not retention_holds(lock, lock_mode, lock_days):
        try:
            s3.put_object_lock_configuration(Bucket=name, ObjectLockConfiguration=wanted)
        except ClientError as exc:
            if _code(exc) == "InvalidBucketState":  # S3 switches Object Lock on for a versioned bucket, else refuses
                raise ProvisionError(f"bucket {name} refuses Object Lock ({exc}): use a bucket made with it") from None
            raise
        say(f"{name}: Object Lock default retention {lock_mode}, {lock_days} days")
    encryption = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"},
                             "BucketKeyEnabled": True}]}
    if (read_encryption(s3, name) or {}).get("SSEAlgorithm") != "aws:kms":  # S3's own default is AES256
        s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration=encryption)
        say(f"{name}: default encryption aws:kms")
    block = {"BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True,
             "RestrictPublicBuckets": True}
    if read_public_access_block(s3, name) != block:
        s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration=block)
        say(f"{name}: public access blocked")
    policy = bucket_policy(name, require_tls)
    if read_policy(s3, name) != policy:
        s3.put_bucket_policy(Bucket=name, Policy=json.dumps(policy))
        say(f"{name}: policy refusing {'plain HTTP and ' if require_tls else ''}deletes")


def retention_holds(lock: dict, mode: str, days: int) -> bool:
    """Whether a bucket's Object Lock configuration keeps objects at least as long and as firmly as wanted
    (COMPLIANCE is firmer than GOVERNANCE): provisioning never shortens or weakens a retention."""
    retention = lock.get("Rule", {}).get("DefaultRetention", {})
    held = retention.get("Days") or retention.get("Years", 0) * 365
    firm = retention.get("Mode") == mode or (retention.get("Mode") == "COMPLIANCE" and mode == "GOVERNANCE")
    return firm and held >= days


def read_encryption(s3: Any, name: str) -> dict | None:
    """The bucket's default encryption (`ApplyServerSideEncryptionByDefault`), or None."""
    from botocore.exceptions import ClientError

    try:
        rules = s3.get_bucket_encryption(Bucket=name)["ServerSideEncryptionConfiguration"]["Rules"]
    except ClientError as exc:
        if _code(exc) in ("ServerSideEncryptionConfigurationNotFoundError", "NoSuchEncryptionConfiguration"):
            return None
        raise
    return next((r["ApplyServerSideEncryptionByDefault"] for r in rules if "ApplyServerSideEncryptionByDefault" in r),
                None)


def read_public_access_block(s3: Any, name: str) -> dict | None:
    """The bucket's public-access block, or None."""
    from botocore.exceptions import ClientError

    try:
        return s3.get_public_access_block(Bucket=name)["PublicAccessBlockConfiguration"]
    except ClientError as exc:
        if _code(exc) == "NoSuchPublicAccessBlockConfiguration":
            return None
        raise


def read_policy(s3: Any, name: str) -> dict | None:
    """The bucket's policy document, or None."""
    from botocore.exceptions import ClientError

    try:
        return json.loads(s3.get_bucket_policy(Bucket=name)["Policy"])
    except ClientError as exc:
        if _code(exc) == "NoSuchBucketPolicy":
            return None
        raise


def table(dynamodb: Any, spec: Table, prefix: str, say: Say) -> None:
    """One table of the read model, made if missing, its TTL and point-in-time recovery switched on."""
    from botocore.exceptions import ClientError

    name = spec.name(prefix)
    try:
        dynamodb.describe_table(TableName=name)
    except ClientError as exc:
        if _code(exc) != "ResourceNotFoundException":
            raise
        keys = [{"AttributeName": spec.hash_key, "KeyType": "HASH"}]
        if spec.range_key:
            keys.append({"AttributeName": spec.range_key, "KeyType": "RANGE"})
        args: dict[str, Any] = {
            "TableName": name, "KeySchema": keys, "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": [{"AttributeName": a, "AttributeType": spec.type_of(a)} for a in spec.attributes()],
            "SSESpecification": {"Enabled": True, "SSEType": "KMS"},
        }
        if spec.indexes:
            args["GlobalSecondaryIndexes"] = [
                {"IndexName": index, "Projection": {"ProjectionType": "ALL"},
                 "KeySchema": [{"AttributeName": hash_key, "KeyType": "HASH"},
                               {"AttributeName": range_key, "KeyType": "RANGE"}]}
                for index, hash_key, range_key in spec.indexes]
        if spec.local_indexes:
            args["LocalSecondaryIndexes"] = [
                {"IndexName": index, "Projection": {"ProjectionType": "ALL"},
                 "KeySchema": [{"AttributeName": spec.hash_key, "KeyType": "HASH"},
                               {"AttributeName": range_key, "KeyType": "RANGE"}]}
                for index, range_key in spec.local_indexes]
        dynamodb.create_table(**args)
        dynamodb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
        say(f"created table {name}")
    if spec.ttl:
        ttl = dynamodb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
        if ttl.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING") or ttl.get("AttributeName") != spec.ttl:
            dynamodb.update_time_to_live(TableName=name,
                                         TimeToLiveSpecification={"Enabled": True, "AttributeName": spec.ttl})
            say(f"{name}: items expire at their {spec.ttl}")
    backups = dynamodb.describe_continuous_backups(TableName=name)["ContinuousBackupsDescription"]
    if backups.get("PointInTimeRecoveryDescription", {}).get("PointInTimeRecoveryStatus") != "ENABLED":
        dynamodb.update_continuous_backups(TableName=name,
                                           PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True})
        say(f"{name}: point-in-time recovery on")


def provision(s3: Any, dynamodb: Any, bucket_name: str, table_prefix: str, lock_mode: str, lock_days: int,
              say: Say = print, require_tls: bool = True) -> None:
    """Everything: the bucket, then the tables."""
    bucket(s3, bucket_name, lock_mode, lock_days, say, require_tls)
    for spec in TABLES:
        table(dynamodb, spec, table_prefix, say)
