"""`python -m atlas watch [SYMBOL ...]`: print the live market from `atlas.marketdata` (top of book, trades)."""
from __future__ import annotations

import argparse
import asyncio
import json
import time

from aiokafka import AIOKafkaConsumer

from atlas.runtime.kafka import client_options
from atlas.settings import settings


def line(doc: dict) -> str | None:
    """One market-data message as a line of text (None for the kinds not shown)."""
    if doc.get("type") == "book":
        bid = doc["bids"][0] if doc["bids"] else ["-", "-"]
        ask = doc["asks"][0] if doc["asks"] else ["-", "-"]
        halted = "  HALTED" if doc.get("halted") else ""
        return f"{doc['symbol']:8s} mid {doc['mid']:>12s}   bid {bid[1]:>9s} @ {bid[0]:<12s} ask {ask[1]:>9s} @ {ask[0]}{halted}"
    if doc.get("type") == "trade":
        return f"{doc['symbol']:8s} TRADE {doc['aggressor']:4s} {doc['quantity']:>9s} @ {doc['price']}"
    return None


async def watch(symbols: set[str], seconds: float | None, every_book: int = 4) -> None:
    """Print trades as they happen and every `every_book`-th book update per symbol, for `seconds` (or forever)."""
    consumer = AIOKafkaConsumer(settings.topic("marketdata"), **client_options(),
                                group_id=None, auto_offset_reset="latest")
    await consumer.start()
    books: dict[str, int] = {}
    deadline = None if seconds is None else time.monotonic() + seconds
    try:
        while deadline is None or time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                for record in records:
                    doc = json.loads(record.value)
                    if symbols and doc.get("symbol") not in symbols:
                        continue
                    if doc.get("type") == "book":
                        books[doc["symbol"]] = books.get(doc["symbol"], 0) + 1
                        if books[doc["symbol"]] % every_book:
                            continue
                    text = line(doc)
                    if text:
                        print(text, flush=True)
    finally:
        await consumer.stop()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m atlas watch", description=__doc__.splitlines()[0])
    parser.add_argument("symbols", nargs="*", help="symbols to show (default: all)")
    parser.add_argument("--seconds", type=float, help="stop after this long (default: until Ctrl-C)")
    args = parser.parse_args(argv)
    try:
        asyncio.run(watch(set(args.symbols), args.seconds))
    except KeyboardInterrupt:
        pass
    return 0
