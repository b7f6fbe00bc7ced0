"""`python -m atlas`: the Faust worker commands, plus `submit`, `schemas`, `watch`, `audit`, `cloud` and
`keys`."""
from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid


def _submit(argv: list[str]) -> int:
    from aiokafka import AIOKafkaProducer

    from atlas.core.commands import SubmitOrder
    from atlas.runtime.kafka import client_options
    from atlas.settings import settings

    parser = argparse.ArgumentParser(prog="python -m atlas submit", description="Produce a SubmitOrder to Kafka.")
    parser.add_argument("--account", required=True)
    parser.add_argument("--symbol", required=True)
    parser.add_argument("--side", choices=["BUY", "SELL"], required=True)
    parser.add_argument("--type", choices=["LIMIT", "MARKET"], default="LIMIT")
    parser.add_argument("--quantity", required=True)
    parser.add_argument("--price")
    parser.add_argument("--tif", choices=["GTC", "DAY", "IOC", "FOK"], default="GTC")
    parser.add_argument("--client-order-id", default=None)
    args = parser.parse_args(argv)
    cmd = SubmitOrder(command_id=f"cli-{uuid.uuid4().hex}", account_id=args.account,
                      client_order_id=args.client_order_id or f"cli-{int(time.time() * 1000)}",
                      symbol=args.symbol, side=args.side, type=args.type, quantity=args.quantity,
                      price=args.price, time_in_force=args.tif)

    async def send() -> None:
        producer = AIOKafkaProducer(**client_options(), acks="all", enable_idempotence=True)
        await producer.start()
        try:
            await producer.send_and_wait(settings.topic("commands"), cmd.model_dump_json().encode(),
                                         key=cmd.account_id.encode())
        finally:
            await producer.stop()

    asyncio.run(send())
    print(cmd.model_dump_json())
    return 0


def _schemas(argv: list[str]) -> int:
    from atlas import schemas

    for path in schemas.write():
        print(path)
    return 0


def _watch(argv: list[str]) -> int:
    from atlas import watch

    return watch.main(argv)


def _audit(argv: list[str]) -> int:
    from atlas.audit import cli as audit_cli

    return audit_cli.main(argv)


def _cloud(argv: list[str]) -> int:
    from atlas.cloud import cli as cloud_cli

    return cloud_cli.main(argv)


def _keys(argv: list[str]) -> int:
    from atlas import keys

    return keys.main(argv)


def main() -> None:
    """Dispatch to an ATLAS command, or to Faust's command line (worker, ...)."""
    commands = {"submit": _submit, "schemas": _schemas, "watch": _watch, "audit": _audit, "keys": _keys,
                "cloud": _cloud}
    if len(sys.argv) > 1 and sys.argv[1] in commands:
        sys.exit(commands[sys.argv[1]](sys.argv[2:]))
    import mode.loop

    from atlas.settings import settings

    mode.loop.use(settings.event_loop)  # before the app (and its loop) exists
    from atlas.app import app

    app.main()


if __name__ == "__main__":
    main()
