"""Matching-engine microbenchmark: operations per second and per-operation latency, one core, fixed seed.

    python -m bench.engine [--ops 300000] [--seed 7]

A book around a mid price gets a mix of passive adds (60%), cancels of resting orders (25%)
and aggressive orders that match (15%), from a few accounts. Each kind is also timed alone.
It measures; it asserts nothing.
"""
from __future__ import annotations

import argparse
import random
import time
from dataclasses import dataclass

from hdrh.histogram import HdrHistogram

from atlas.core.values import OrderType, Side, TimeInForce
from atlas.venue.matching import Book, Trade

MID = 100_000
ACCOUNTS = [f"acct-{n}" for n in range(16)]


@dataclass(frozen=True)
class Op:
    kind: str
    args: tuple


def make_ops(count: int, seed: int, mix: dict[str, float]) -> list[Op]:
    """A replayable operation stream; cancels name orders added earlier in it."""
    rng = random.Random(seed)
    kinds, weights = list(mix), list(mix.values())
    ops, live = [], []
    for n in range(count):
        kind = rng.choices(kinds, weights)[0]
        if kind == "cancel" and live:
            ops.append(Op("cancel", (live.pop(rng.randrange(len(live))),)))
            continue
        side = rng.choice((Side.BUY, Side.SELL))
        account = rng.choice(ACCOUNTS)
        if kind == "match":
            # Crosses into the resting orders: trades against one or more of them.
            price = MID + rng.randint(1, 60) if side is Side.BUY else MID - rng.randint(1, 60)
            ops.append(Op("submit", (f"m{n}", account, side, OrderType.LIMIT, TimeInForce.IOC, rng.randint(1, 20), price)))
        else:
            price = MID - rng.randint(0, 60) if side is Side.BUY else MID + 1 + rng.randint(0, 60)
            order_id = f"a{n}"
            live.append(order_id)
            ops.append(Op("submit", (order_id, account, side, OrderType.LIMIT, TimeInForce.GTC, rng.randint(1, 20), price)))
    return ops


def seed_book(seed: int, orders: int) -> Book:
    """A book with resting liquidity on both sides near the mid, so matches find something."""
    book = Book("BENCH")
    rng = random.Random(seed + 1)
    for n in range(orders):
        side = Side.BUY if n % 2 else Side.SELL
        price = MID - rng.randint(0, 30) if side is Side.BUY else MID + 1 + rng.randint(0, 30)
        book.submit(f"seed{n}", "maker", side, OrderType.LIMIT, TimeInForce.GTC, rng.randint(5, 50), price)
    return book


def run(ops: list[Op], book: Book) -> tuple[float, HdrHistogram]:
    """Seconds for the whole stream, and a histogram of each op's nanoseconds."""
    hist = HdrHistogram(1, 10_000_000_000, 3)
    submit, cancel, clock = book.submit, book.cancel, time.perf_counter_ns
    started = clock()
    for op in ops:
        t0 = clock()
        if op.kind == "submit":
            submit(*op.args)
        else:
            cancel(*op.args)
        hist.record_value(max(1, clock() - t0))
    return (clock() - started) / 1e9, hist


def throughput(ops: list[Op], book: Book) -> float:
    """Ops per second without per-op timing."""
    submit, cancel = book.submit, book.cancel
    started = time.perf_counter()
    for op in ops:
        if op.kind == "submit":
            submit(*op.args)
        else:
            cancel(*op.args)
    return len(ops) / (time.perf_counter() - started)


def count_trades(ops: list[Op], book: Book) -> int:
    """The trades the stream makes (an untimed replay: the book is deterministic)."""
    calls = {"submit": book.submit, "cancel": book.cancel}
    return sum(isinstance(e, Trade) for op in ops for e in calls[op.kind](*op.args))


MIXES = {
    "mixed (60% add, 25% cancel, 15% match)": {"add": 0.60, "cancel": 0.25, "match": 0.15},
    "add (passive)": {"add": 1.0},
    "add then cancel": {"add": 0.5, "cancel": 0.5},
    "aggressive match": {"match": 1.0},
}


@dataclass(frozen=True)
class EngineRun:
    """One operation mix's figures."""

    mix: str
    ops: int
    ops_per_s: float
    trades_per_op: float
    p50_us: float
    p99_us: float
    p999_us: float
    max_us: float


def measure(count: int, seed: int) -> list[EngineRun]:
    """Every mix, each on a fresh book: ops/s untimed per op, then per-op latency in a second pass."""
    runs = []
    for label, mix in MIXES.items():
        ops = make_ops(count, seed, mix)
        # Enough resting liquidity that every aggressive order of the stream finds some.
        depth = 2_000 + int(count * mix.get("match", 0))
        rate = throughput(ops, seed_book(seed, depth))
        trades = count_trades(ops, seed_book(seed, depth))
        _, hist = run(ops, seed_book(seed, depth))
        runs.append(EngineRun(label, count, rate, trades / count, hist.get_value_at_percentile(50) / 1000,
                              hist.get_value_at_percentile(99) / 1000, hist.get_value_at_percentile(99.9) / 1000,
                              hist.get_max_value() / 1000))
    return runs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.engine", description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=300_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    print(f"matching engine, {args.ops} ops per run, seed {args.seed}")
    for r in measure(args.ops, args.seed):
        print(f"  {r.mix:40s} {r.ops_per_s:>9,.0f} ops/s  {r.trades_per_op:4.2f} trades/op  p50 {r.p50_us:.1f} µs  "
              f"p99 {r.p99_us:.1f} µs  p99.9 {r.p999_us:.1f} µs  max {r.max_us:,.0f} µs")


if __name__ == "__main__":
    main()
