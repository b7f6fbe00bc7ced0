"""The hot-path codecs, pydantic (what ATLAS uses) beside msgspec: µs per decode and encode, same process.

    python -m bench.codecs [--rounds 20000] [--out bench/REPORT.md]

Decodes a `SubmitOrder` command and a venue ack-and-fill message, and encodes a FILLED
execution report: with the pydantic models the engine works on (`decode_command`,
`venue_reports_in`, `model_dump_json`), and with msgspec Structs of the same fields and
constraints, alone and followed by what the engine would need from them (its pydantic models,
built with `model_construct`, which skips validation). Issue 13 asks for msgspec "or a library
at least as fast"; this is the measurement behind keeping pydantic. It asserts nothing.
"""
from __future__ import annotations

import argparse
import json
import timeit
from decimal import Decimal
from pathlib import Path
from typing import Annotated

import msgspec

from atlas.core.commands import SubmitOrder, decode_command
from atlas.core.events import ExecType, ExecutionReport, OrdStatus, VenueReport, VenueReportKind, venue_reports_in
from atlas.core.values import DECIMAL_PATTERN, OrderType, Side, TimeInForce, decimal_text
from bench.report import machine, markers, write_section

ID = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:\-]+$")]
DEC = Annotated[str, msgspec.Meta(pattern=DECIMAL_PATTERN)]

COMMAND = json.dumps({"command": "SubmitOrder", "command_id": "c-1", "account_id": "acct-1", "client_order_id": "co-1",
                      "symbol": "BTC-USD", "side": "BUY", "type": "LIMIT", "quantity": "0.0100", "price": "65000.5",
                      "time_in_force": "GTC"}).encode()
ACK_AND_FILL = json.dumps({"reports": [
    {"report_id": "v-1/1", "kind": "ACCEPTED", "order_id": "O1", "account_id": "acct-1", "request_id": "x", "ts": 1,
     "venue_offset": 5, "venue_index": 1},
    {"report_id": "v-1/2", "kind": "FILL", "order_id": "O1", "account_id": "acct-1", "last_qty": "0.01",
     "last_px": "65000", "ts": 1, "venue_offset": 5, "venue_index": 2}]}).encode()
REPORT = ExecutionReport(
    exec_id="O123:3", seq=3, cause_id="v-1/2", order_id="O123", client_order_id="co-1", account_id="acct-1",
    symbol="BTC-USD", side=Side.BUY, type=OrderType.LIMIT, time_in_force=TimeInForce.GTC, exec_type=ExecType.TRADE,
    status=OrdStatus.FILLED, quantity=Decimal("0.01"), price=Decimal("65000.5"), last_qty=Decimal("0.01"),
    last_px=Decimal("65000.5"), cum_qty=Decimal("0.01"), leaves_qty=Decimal("0"), avg_px=Decimal("65000.5"), ts=1)


class Submit(msgspec.Struct, tag_field="command", tag="SubmitOrder", forbid_unknown_fields=True):
    command_id: ID
    account_id: ID
    client_order_id: ID
    symbol: Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
    side: Side
    type: OrderType
    quantity: DEC
    price: DEC | None = None
    time_in_force: TimeInForce = TimeInForce.GTC


class Report(msgspec.Struct, forbid_unknown_fields=True):
    report_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    kind: VenueReportKind
    order_id: str
    account_id: str
    ts: int
    request_id: str | None = None
    last_qty: DEC | None = None
    last_px: DEC | None = None
    quantity: DEC | None = None
    price: DEC | None = None
    reason: str | None = None
    venue_offset: Annotated[int, msgspec.Meta(ge=0)] | None = None
    venue_index: Annotated[int, msgspec.Meta(ge=1)] | None = None


class Reports(msgspec.Struct, forbid_unknown_fields=True):
    reports: Annotated[list[Report], msgspec.Meta(min_length=1, max_length=10_000)]


SUBMIT_DECODER = msgspec.json.Decoder(Submit)
REPORTS_DECODER = msgspec.json.Decoder(Reports)
ENCODER = msgspec.json.Encoder()


def _dec(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)


def msgspec_command_to_model() -> SubmitOrder:
    s = SUBMIT_DECODER.decode(COMMAND)
    return SubmitOrder.model_construct(command_id=s.command_id, account_id=s.account_id,
                                       client_order_id=s.client_order_id, symbol=s.symbol, side=s.side, type=s.type,
                                       quantity=Decimal(s.quantity), price=_dec(s.price), time_in_force=s.time_in_force)


def msgspec_reports_to_models() -> list[VenueReport]:
    return [VenueReport.model_construct(report_id=r.report_id, kind=r.kind, order_id=r.order_id, account_id=r.account_id,
                                        request_id=r.request_id, last_qty=_dec(r.last_qty), last_px=_dec(r.last_px),
                                        quantity=_dec(r.quantity), price=_dec(r.price), reason=r.reason, ts=r.ts,
                                        venue_offset=r.venue_offset, venue_index=r.venue_index)
            for r in REPORTS_DECODER.decode(ACK_AND_FILL).reports]


def msgspec_encode_report() -> bytes:
    return ENCODER.encode({k: decimal_text(v) if isinstance(v, Decimal) else v for k, v in REPORT.__dict__.items()})


CASES = [
    ("decode a SubmitOrder", [("pydantic (`decode_command`)", lambda: decode_command(COMMAND)),
                              ("msgspec Struct only", lambda: SUBMIT_DECODER.decode(COMMAND)),
                              ("msgspec, then the engine's model", msgspec_command_to_model)]),
    ("decode an ack and its fill", [("pydantic (`venue_reports_in`)", lambda: venue_reports_in(ACK_AND_FILL)),
                                    ("msgspec Structs only", lambda: REPORTS_DECODER.decode(ACK_AND_FILL)),
                                    ("msgspec, then the engine's models", msgspec_reports_to_models)]),
    ("encode a FILLED report", [("pydantic (`model_dump_json`)", lambda: REPORT.model_dump_json().encode()),
                                ("msgspec, from the model's fields", msgspec_encode_report)]),
]


def measure(rounds: int) -> list[tuple[str, str, float]]:
    assert json.loads(msgspec_encode_report()) == json.loads(REPORT.model_dump_json())  # the same document
    assert msgspec_command_to_model() == decode_command(COMMAND)
    results = []
    for case, variants in CASES:
        for name, call in variants:
            best = min(timeit.repeat(call, number=rounds, repeat=5)) / rounds * 1e6
            results.append((case, name, best))
    return results


def render(results: list[tuple[str, str, float]], rounds: int) -> str:
    start, end = markers("codecs")
    lines = [start, "## Hot-path codecs: pydantic beside msgspec (`python -m bench.codecs`)", "",
             f"Best of 5 × {rounds:,} calls, one core, same process; µs per call.", "",
             "| message | codec | µs |", "|---|---|---|"]
    lines += [f"| {case} | {name} | {us:.1f} |" for case, name, us in results]
    info = machine("n/a")
    lines += ["", "The engine works on pydantic models: a msgspec decode pays for them afterwards "
                  "(`model_construct`, no validation), and encoding pays for the Decimal fields in Python either way.",
              "", f"Machine: {info['CPUs (nproc)']} CPUs, {info['CPU model']}, Python {info['Python']}.", end]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.codecs", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20_000)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("REPORT.md"))
    args = parser.parse_args()
    results = measure(args.rounds)
    for case, name, us in results:
        print(f"{case:<28} {name:<36} {us:6.1f} µs")
    write_section(args.out, render(results, args.rounds), name="codecs")
    print(json.dumps({"written": str(args.out)}))


if __name__ == "__main__":
    main()
