"""`python -m atlas cloud provision|verify|project`: make what ATLAS needs in AWS, check it, fill the read model.

Both act on the S3 audit sink (`ATLAS_AUDIT_SINK=s3://bucket[/prefix]`) and the read model's tables
(`ATLAS_CLOUD_TABLE_PREFIX`), through boto3 configured the usual AWS way (`AWS_PROFILE`,
`AWS_REGION`, `AWS_ENDPOINT_URL` for an S3 or DynamoDB of your own). `verify` also asks the Kafka
cluster of the settings for ATLAS's topics. Exit 1 when a check fails, 2 when AWS cannot be asked at all.
`project` runs the read model's projector (`atlas.cloud.projector`) until SIGTERM or SIGINT.
"""
from __future__ import annotations

import argparse
import sys

from atlas.audit.sql import TOPICS
from atlas.cloud import provision as make
from atlas.cloud import verify as check
from atlas.cloud.resources import split_sink
from atlas.runtime.kafka import client_options
from atlas.settings import settings


def _project(table_prefix: str) -> int:
    import asyncio
    import logging
    import signal

    import boto3

    from atlas.cloud import projector

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    async def serve() -> None:
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        await projector.run(boto3.client("dynamodb"), table_prefix, client_options(), settings.topic("executions"),
                            settings.oms_changelog, settings.projector_group, stop)

    asyncio.run(serve())
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m atlas cloud", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sink", default=settings.audit_sink, help="the audit sink: s3://bucket[/prefix]")
    parser.add_argument("--prefix", default=settings.audit_prefix, help="key prefix of the trail in the sink")
    parser.add_argument("--table-prefix", default=settings.cloud_table_prefix, help="prefix of the tables' names")
    parser.add_argument("--lock-mode", choices=("COMPLIANCE", "GOVERNANCE"),
                        default=settings.audit_lock_mode or "COMPLIANCE", help="the bucket's default retention mode")
    commands = parser.add_subparsers(dest="command", required=True)
    parser.add_argument("--lock-days", type=int, default=settings.audit_lock_days,
                        help="the bucket's default retention, in days (provision never shortens one; verify wants "
                             "at least this)")
    commands.add_parser("provision", help="create or bring up to date the bucket and the tables")
    checked = commands.add_parser("verify", help="check every property; a table of checks, exit 1 on a failure")
    checked.add_argument("--no-kafka", action="store_true", help="leave the Kafka cluster out")
    commands.add_parser("project", help="follow the OMS's outputs into the read model's tables, until stopped")
    args = parser.parse_args(argv)
    if args.command == "project":
        return _project(args.table_prefix)
    try:
        bucket, sink_prefix = split_sink(args.sink)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    prefix = "/".join(p for p in (sink_prefix, args.prefix.strip("/")) if p)

    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    session = boto3.Session()
    try:
        if args.command == "provision":
            make.provision(session.client("s3"), session.client("dynamodb"), bucket, args.table_prefix,
                           args.lock_mode, args.lock_days, require_tls=settings.cloud_require_tls)
            print(f"provisioned: s3://{bucket} and the tables {args.table_prefix}-*")
            return 0
        kafka = None if args.no_kafka else client_options()
        checks = check.verify(session.client("sts"), session.client("s3"), session.client("dynamodb"), bucket,
                              prefix, args.table_prefix, args.lock_mode, kafka,
                              [settings.topic(t) for t in TOPICS], settings.partitions, settings.cloud_require_tls,
                              args.lock_days)
    except make.ProvisionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (BotoCoreError, ClientError) as exc:
        print(f"error: AWS: {exc}", file=sys.stderr)
        return 2
    print(check.render(checks), end="")
    return 0 if all(c.ok for c in checks) else 1
