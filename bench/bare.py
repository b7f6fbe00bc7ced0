"""The baseline: a bare aiokafka consume → json-parse → produce loop over the same hops as the OMS.

`python -m bench.bare --bootstrap HOST:PORT --source T --sink T --group G` reads each command,
parses it, writes one small report keyed like the input, and commits the consumed offsets every
`--commit-interval` seconds once everything produced before has been acknowledged (at least once,
as Faust does). It touches no state, so it is the floor any stream processor on this broker pays.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import signal
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from atlas.runtime.kafka import sign_in_options


async def run(args: argparse.Namespace) -> None:
    consumer = AIOKafkaConsumer(args.source, bootstrap_servers=args.bootstrap, **sign_in_options(), group_id=args.group,
                                enable_auto_commit=False, auto_offset_reset="earliest")
    producer = AIOKafkaProducer(bootstrap_servers=args.bootstrap, **sign_in_options(), acks="all", linger_ms=args.linger_ms)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await producer.start()
    await consumer.start()
    try:
        last_commit = time.monotonic()
        ready = False
        while not stopping.is_set():
            batch = await consumer.getmany(timeout_ms=100)
            for records in batch.values():
                for record in records:
                    doc = json.loads(record.value)
                    # The command id travels on, so bare loops chain (one per hop of the ATLAS pipeline).
                    report = {"client_order_id": doc["client_order_id"], "account_id": doc["account_id"],
                              "command_id": doc["command_id"], "cause_id": doc["command_id"],
                              "exec_type": args.status, "status": args.status}
                    await producer.send(args.sink, json.dumps(report).encode(), key=record.key)
            if not ready and consumer.assignment():
                Path(args.ready_file).write_text("ready\n")
                ready = True
            if time.monotonic() - last_commit >= args.commit_interval:
                # 1. everything produced so far is acknowledged, 2. only then the input is marked done.
                await producer.flush()
                await consumer.commit()
                last_commit = time.monotonic()
    finally:
        await producer.flush()
        await consumer.commit()
        await consumer.stop()
        await producer.stop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bare", description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--source", required=True)
    parser.add_argument("--sink", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--commit-interval", type=float, default=2.8)
    parser.add_argument("--linger-ms", type=int, default=0)
    parser.add_argument("--ready-file", required=True)
    parser.add_argument("--status", default="PENDING_NEW", help="exec_type and status of the reports written")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
