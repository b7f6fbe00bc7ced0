"""What one venue input message costs to store, beside books of different depths: records, bytes and CPU.

    python -m bench.venue_state [--depths 0 10000 100000] [--messages 2000] [--out bench/REPORT.md]

A BTC-USD venue gets `depth` resting client orders far from the market, then a replayable mix
of messages: ticks, resting orders, marketable orders that fill against the maker, and cancels.
Each message is applied and its writes computed (`atlas.venue.storage.save_writes`, what the
agent writes to the changelog); the figures are records and bytes per message, counted from the
writes, and CPU per message (handle plus writes plus encoding), each beside the empty book in the
same run. Also the cost of a restart's rebuild from the keys. It measures; it asserts nothing.
"""
from __future__ import annotations

import argparse
import json
import time
from decimal import Decimal
from pathlib import Path

from atlas.core.events import VenueRequest
from atlas.core.values import OrderType, Side, TimeInForce
from atlas.runtime.reference import instruments
from atlas.venue.exchange import SymbolVenue
from atlas.venue.market_maker import MarketParams
from atlas.venue.storage import Stored, bucket_prefix, order_prefix, rebuild, record_key, save_writes
from bench.report import machine, markers, write_section

PARAMS = MarketParams(volatility=Decimal("0.0005"), spread_bps=Decimal(4), liquidity=500, levels=10)
T0 = 1_700_000_000_000


def _request(n: int, kind: str, order_id: str, side: Side, price: str, quantity: str = "0.0010") -> VenueRequest:
    return VenueRequest(request=kind, request_id=f"q{n}", order_id=order_id, account_id=f"acct-{n % 16}",
                        symbol="BTC-USD", side=side, type=OrderType.LIMIT, time_in_force=TimeInForce.GTC,
                        quantity=Decimal(quantity), price=Decimal(price), ts=T0 + n)


def _deep_venue(depth: int) -> tuple[SymbolVenue, Stored, dict[str, bytes]]:
    venue = SymbolVenue(instruments()["BTC-USD"], PARAMS, 7, mid=Decimal("65000.00"))
    venue.tick(T0)
    for n in range(depth):
        side = Side.BUY if n % 2 else Side.SELL
        price = f"{50000 - n % 1000}.00" if side is Side.BUY else f"{80000 + n % 1000}.00"
        venue.handle(_request(n, "new", f"deep-{n}", side, price))
    stored = Stored()
    table = {k: v for k, v in save_writes(venue, stored, 0, []) if v is not None}
    return venue, stored, table


def _message(venue: SymbolVenue, n: int) -> str | None:
    """Apply message `n`; the id of the request it carried (None for a tick)."""
    kind = n % 4
    if kind == 0:
        venue.tick(T0 + 250 * n)
        return None
    if kind == 1:
        request = _request(n, "new", f"rest-{n}", Side.BUY, "60000.00")
    elif kind == 2:
        request = _request(n, "new", f"take-{n}", Side.BUY if n % 8 == 2 else Side.SELL,
                           "70000.00" if n % 8 == 2 else "60000.00")
    else:
        request = _request(n, "cancel", f"rest-{n - 2}", Side.BUY, "60000.00")
    venue.handle(request)
    return request.request_id


def measure(depth: int, messages: int) -> dict:
    """Per-message records, bytes and CPU beside `depth` resting orders, and the rebuild's time."""
    venue, stored, table = _deep_venue(depth)
    records = size = 0
    cpu = time.process_time()
    for n in range(1, messages + 1):
        request_id = _message(venue, 1_000_000 + n)
        writes = save_writes(venue, stored, n, [], request_id)
        records += len(writes)
        size += sum(len(k) + len(v or b"") for k, v in writes)
        for key, value in writes:
            if value is None:
                table.pop(key, None)
            else:
                table[key] = value
    cpu = time.process_time() - cpu
    started = time.process_time()
    under = lambda prefix: [(k, v) for k, v in table.items() if k.startswith(prefix)]  # noqa: E731
    rebuild(venue.instrument, table[record_key("BTC-USD")], under(order_prefix("BTC-USD")),
            under(bucket_prefix("BTC-USD")))
    # What the layout before this one wrote per message: the whole book and the last hundred trades in one value.
    whole = venue.record() | {"book": venue.client_orders(), "trades": list(venue.recent_trades)}
    return {"depth": depth, "records": records / messages, "bytes": size / messages, "whole_book": len(json.dumps(whole)),
            "cpu_us": cpu / messages * 1e6, "rebuild_ms": (time.process_time() - started) * 1000,
            "resting": len(venue.client_orders())}


def render(results: list[dict], messages: int) -> str:
    start, end = markers("venue-state")
    base = results[0]
    lines = [start, "## Venue state per message (`python -m bench.venue_state`)", "",
             f"{messages} messages (ticks, resting orders, fills against the maker, cancels) per depth, one core; "
             "records and bytes counted from the writes the agent makes; ratios against the first depth, same run.", "",
             "| resting client orders | records/message | bytes/message | CPU µs/message | vs first: bytes, CPU | "
             "rebuild after restart | the previous layout's state value per message |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['resting']:,} | {r['records']:.2f} | {r['bytes']:,.0f} | {r['cpu_us']:,.0f} | "
                     f"{r['bytes'] / base['bytes']:.2f}, {r['cpu_us'] / base['cpu_us']:.2f} | {r['rebuild_ms']:,.0f} ms | "
                     f"{r['whole_book']:,} bytes |")
    info = machine("n/a")
    lines += ["", f"Machine: {info['CPUs (nproc)']} CPUs, {info['CPU model']}, Python {info['Python']}.", end]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.venue_state", description=__doc__.splitlines()[0])
    parser.add_argument("--depths", type=int, nargs="+", default=[0, 10_000, 100_000])
    parser.add_argument("--messages", type=int, default=2_000)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("REPORT.md"))
    args = parser.parse_args()
    results = []
    for depth in args.depths:
        results.append(measure(depth, args.messages))
        r = results[-1]
        print(f"depth {r['resting']:>7,}: {r['records']:.2f} records, {r['bytes']:,.0f} bytes, "
              f"{r['cpu_us']:,.0f} µs CPU per message; rebuild {r['rebuild_ms']:,.0f} ms; "
              f"the previous layout wrote {r['whole_book']:,} bytes of state per message", flush=True)
    write_section(args.out, render(results, args.messages), name="venue-state")
    print(json.dumps({"written": str(args.out)}))


if __name__ == "__main__":
    main()
