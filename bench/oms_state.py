"""What an order costs the OMS beside an account's history: CPU, records and bytes per filled order.

    python -m bench.oms_state [--closed 100000] [--open 10000 100000] [--orders 2000] [--out bench/REPORT.md]

One account first gets its history through the `oms` agent's own step (`agents.oms.process`,
over an in-memory OMS table, in batches of 50 inputs as a poll would bring them): `closed`
orders that fill (the retention keeps the newest 10,000 and archives the rest, as the worker
does by default), or `open` orders that rest. Then `orders` more orders are each submitted,
acknowledged and filled (the venue's ack and fill as one message, as it sends them); the
figures are CPU per order (the agent's step, Kafka and Faust left out), and the table's
records and bytes per order counted from its writes, plus the bytes of the outputs, each
beside the empty account in the same run. It measures; it asserts nothing.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from atlas.agents import oms as agent
from atlas.core.events import VenueReport, VenueReportKind
from atlas.oms.state import Retention
from atlas.tables import oms as tables
from atlas.tables import oms_migrate
from bench.report import machine, markers, write_section
from tests import helpers
from tests.unit.agents.oms_harness import MemoryTable, Worker, submit_id

BATCH = 50  # inputs per batch
BALANCES = {"USD": "1000000000000", "BTC": "1000000"}


class Account:
    """One account's OMS state in memory, driven through the agent's step."""

    def __init__(self, account_id: str = "alice", table: MemoryTable | None = None) -> None:
        self.account_id = account_id
        self.table = table if table is not None else MemoryTable()
        tables.oms_table = oms_migrate.oms_table = self.table
        agent.current_market = lambda _: helpers.market()
        agent.retention = lambda: Retention(keep=10_000)  # the worker's default, whatever this environment says
        agent._touched.clear()
        tables.forget_cached()
        limits = helpers.limits(max_open_orders=1_000_000, max_orders_per_second=1_000_000,
                                max_order_notional="1000000000000", max_position={"BTC": "1000000000"})
        self.table[tables.account_key(account_id)] = \
            helpers.account(BALANCES, limits, account_id=account_id).model_dump_json().encode()
        self.worker = Worker(self.table, account_id)
        self.inputs = 0
        self.venue_offset = 0
        self.output_bytes = 0
        self.rejected = 0

    def _input(self, send) -> None:
        if self.inputs % BATCH == 0:
            self.worker.open_batch()
        sent = send()
        self.output_bytes += sum(len(s.value) for s in sent)
        self.rejected += sum(b'"status":"REJECTED"' in s.value for s in sent)  # a bytes search: cheap in the timing
        self.inputs += 1

    def order(self, n: int, fill: bool) -> None:
        """Submit one order of 0.001 BTC (buys and sells in turn), then the venue's ack (and fill)."""
        side = "BUY" if n % 2 else "SELL"
        # A resting order within the price collar (10% of the 65,000 reference), away from the fills' 64,000.
        price = "64000" if fill else ("60000" if side == "BUY" else "70000")
        cmd = helpers.submit(quantity="0.001", price=price, side=side, client_order_id=f"c{n}",
                             account_id=self.account_id)
        order_id = submit_id(cmd)
        self._input(lambda: self.worker.command(cmd))
        self.venue_offset += 1
        reports = [VenueReport(report_id=f"v{n}/1", kind=VenueReportKind.ACCEPTED, order_id=order_id,
                               account_id=self.account_id, ts=helpers.T0, venue_offset=self.venue_offset,
                               venue_index=1)]
        if fill:
            reports.append(VenueReport(report_id=f"v{n}/2", kind=VenueReportKind.FILL, order_id=order_id,
                                       account_id=self.account_id, last_qty="0.001", last_px=price, ts=helpers.T0,
                                       venue_offset=self.venue_offset, venue_index=2))
        self._input(lambda: self.worker.reports(reports))

    def done(self) -> None:
        self.worker.close_batch()


def measure(closed: int, resting: int, orders: int) -> dict:
    """Per-order CPU, records and bytes of `orders` filled orders, after `closed` filled and `resting` open ones."""
    account = Account()
    n = 0
    for n in range(n + 1, n + 1 + closed):
        account.order(n, fill=True)
    for n in range(n + 1, n + 1 + resting):
        account.order(n, fill=False)
    account.done()
    writes_before, bytes_before, out_before = len(account.table.writes), sum(s for _, s in account.table.writes), \
        account.output_bytes
    cpu = time.process_time()
    for n in range(n + 1, n + 1 + orders):
        account.order(n, fill=True)
    account.done()
    cpu = time.process_time() - cpu
    state = account.worker.account()
    # Every order of the history and of the measurement was accepted (none refused by a limit).
    assert state.open_count == resting and state.closed == closed + orders, (state.open_count, state.closed)
    assert account.rejected == 0, f"{account.rejected} orders were rejected"
    writes = account.table.writes[writes_before:]
    return {"closed": closed, "resting": resting, "cpu_us": cpu / orders * 1e6, "records": len(writes) / orders,
            "bytes": (sum(s for _, s in writes) + sum(len(k) for k, _ in writes)) / orders,
            "output_bytes": (account.output_bytes - out_before) / orders,
            "held_closed": state.closed - state.archived, "archived": state.archived, "open": state.open_count,
            "keys": len(account.table)}


def render(results: list[dict], orders: int) -> str:
    start, end = markers("oms-state")
    base = results[0]
    lines = [start, "## OMS state per order beside an account's history (`python -m bench.oms_state`)", "",
             f"{orders} orders submitted, acknowledged and filled through the `oms` agent's step (`agents.oms.process`) "
             "over an in-memory table, in batches of 50 inputs, after the account's history; one core; Kafka and "
             "Faust left out (their cost per order does not depend on the history); records and bytes counted from "
             "the table's writes; ratios against the first row, same run.", "",
             "| account before | held closed / archived / open orders | CPU µs/order | table records/order | "
             "table bytes/order | output bytes/order | vs first: CPU, bytes |", "|---|---|---|---|---|---|---|"]
    for r in results:
        what = ", ".join(part for part in (f"{r['closed']:,} filled" if r["closed"] else "",
                                           f"{r['resting']:,} open" if r["resting"] else "") if part) or "empty"
        lines.append(f"| {what} | {r['held_closed']:,} / {r['archived']:,} / {r['open']:,} | {r['cpu_us']:,.0f} | "
                     f"{r['records']:.2f} | {r['bytes']:,.0f} | {r['output_bytes']:,.0f} | "
                     f"{r['cpu_us'] / base['cpu_us']:.2f}, {r['bytes'] / base['bytes']:.2f} |")
    info = machine("n/a")
    lines += ["", f"Machine: {info['CPUs (nproc)']} CPUs, {info['CPU model']}, Python {info['Python']}.", end]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.oms_state", description=__doc__.splitlines()[0])
    parser.add_argument("--closed", type=int, nargs="+", default=[100_000], help="filled orders before (besides 0)")
    parser.add_argument("--open", type=int, nargs="+", default=[10_000, 100_000], help="open orders before")
    parser.add_argument("--orders", type=int, default=2_000)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("REPORT.md"))
    args = parser.parse_args()
    scenarios = [(0, 0)] + [(c, 0) for c in args.closed] + [(0, o) for o in args.open]
    results = []
    for closed, resting in scenarios:
        started = time.monotonic()
        results.append(measure(closed, resting, args.orders))
        r = results[-1]
        print(f"{closed:>7,} filled, {resting:>7,} open before: {r['cpu_us']:,.0f} µs CPU, {r['records']:.2f} records, "
              f"{r['bytes']:,.0f} table bytes, {r['output_bytes']:,.0f} output bytes per order "
              f"({time.monotonic() - started:,.0f} s)", flush=True)
    write_section(args.out, render(results, args.orders), name="oms-state")
    print(json.dumps({"written": str(args.out)}))


if __name__ == "__main__":
    main()
