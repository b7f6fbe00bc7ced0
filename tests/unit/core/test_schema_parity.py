"""`schemas/` is the public contract: the hot-path decoders accept exactly the documents the schemas accept.

Each hot-path message starts from valid documents; every field is then dropped, replaced by
each of a set of awkward JSON values (numbers for decimals, floats for integers, exponents,
padding, non-ASCII digits, oversized strings, wrong types), and nested values are mutated the
same way; hypothesis adds random replacements. The schema (validated with `jsonschema`, as
written to `schemas/`) and the decoder the agents use must agree on every document.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from pydantic import ValidationError

from atlas.core.commands import decode_admin_command, decode_command
from atlas.core.events import ExecutionReport, VenueReport, VenueReports, decode_venue_input, venue_reports_in

SCHEMAS = Path(__file__).resolve().parents[3] / "schemas"

REPORT = {"report_id": "r1", "kind": "FILL", "order_id": "O1", "account_id": "alice", "request_id": "x",
          "last_qty": "1", "last_px": "64000.5", "quantity": None, "price": None, "reason": None, "ts": 1,
          "venue_offset": 0, "venue_index": 1}
LIMITS = {"max_order_notional": "100", "max_order_quantity": {"BTC-USD": "1"}, "max_position": {"BTC": "2"},
          "price_collar_bps": 100, "max_orders_per_second": 5, "max_open_orders": 10, "restricted_symbols": ["X"]}

# schema name -> (the decoder the agents use, valid documents to mutate)
CODECS: dict[str, tuple[Callable[[bytes], Any], list[dict]]] = {
    "Command": (decode_command, [
        {"command": "SubmitOrder", "command_id": "c1", "account_id": "alice", "client_order_id": "k1",
         "symbol": "BTC-USD", "side": "BUY", "type": "LIMIT", "quantity": "0.5", "price": "64000",
         "time_in_force": "GTC"},
        {"command": "SubmitOrder", "command_id": "c1", "account_id": "alice", "client_order_id": "k1",
         "symbol": "BTC-USD", "side": "SELL", "type": "MARKET", "quantity": "2"},
        {"command": "CancelOrder", "command_id": "c1", "account_id": "alice", "order_id": "O1"},
        {"command": "ReplaceOrder", "command_id": "c1", "account_id": "alice", "order_id": "O1", "quantity": "1",
         "price": "2"},
    ]),
    "AdminCommand": (decode_admin_command, [
        {"command": "SetAccountKillSwitch", "command_id": "c1", "account_id": "alice", "engaged": True, "reason": "x"},
        {"command": "SetLimits", "command_id": "c1", "account_id": "alice", "limits": LIMITS},
    ]),
    "VenueInput": (decode_venue_input, [
        {"request": "new", "request_id": "r", "order_id": "O1", "account_id": "alice", "symbol": "BTC-USD",
         "side": "SELL", "type": "MARKET", "time_in_force": "IOC", "quantity": "1", "price": None,
         "limit_guard": "5", "ts": 1},
        {"request": "tick", "symbol": "BTC-USD", "ts": 1},
        {"request": "params", "symbol": "BTC-USD", "volatility": "0.001", "levels": 5, "tick_interval_ms": 100,
         "halted": False, "ts": 1},
    ]),
    "VenueReport": (lambda raw: venue_reports_in(raw)[0] if b'"reports"' not in raw else
                    VenueReport.model_validate_json(raw, strict=True), [REPORT, {**REPORT, "kind": "ACCEPTED"}]),
    "VenueReports": (lambda raw: VenueReports.model_validate_json(raw, strict=True),
                     # One report: a second with another account would break the one rule beyond JSON Schema.
                     [{"reports": [REPORT]}, {"reports": [{**REPORT, "kind": "CANCELED", "last_qty": None}]}]),
    "ExecutionReport": (lambda raw: ExecutionReport.model_validate_json(raw, strict=True), [
        {"exec_id": "e", "seq": 1, "cause_id": "c", "order_id": "O", "client_order_id": "k", "account_id": "alice",
         "symbol": "BTC-USD", "side": "BUY", "type": "LIMIT", "time_in_force": "GTC", "exec_type": "NEW",
         "status": "NEW", "quantity": "1", "price": "2", "last_qty": "0", "last_px": None, "cum_qty": "0",
         "leaves_qty": "1", "avg_px": None, "reason": None, "ts": 1},
    ]),
}

AWKWARD = [
    None, True, False, 0, 1, -1, 1.0, 1.5, 10 ** 20, 1e300, "", "x", "1", "0.1", "-0", "-0.5", "1e3", "1E-3", " 1",
    "1 ", "1\t", "\u0661\u0662", "1_000", "1.", ".5", "+1", "0x10", "NaN", "Infinity", "1" * 24, "1" * 25,
    "0." + "1" * 18, "0." + "1" * 19, "A" * 64, "A" * 65, "9" * 100, "a b", [], {}, ["x"], [1], {"a": 1}, "BUY",
    "LIMIT", "MARKET", "GTC", "FILL", "SubmitOrder", "tick",
]


def _mutations(doc: dict) -> Iterator[dict]:
    yield doc
    yield {**doc, "unexpected": 1}
    for key, value in doc.items():
        yield {k: v for k, v in doc.items() if k != key}
        for awkward in AWKWARD:
            yield {**doc, key: awkward}
        if isinstance(value, dict):
            yield from ({**doc, key: inner} for inner in _mutations(value))
        if isinstance(value, list) and value and isinstance(value[0], dict):
            yield from ({**doc, key: [inner, *value[1:]]} for inner in _mutations(value[0]))


def _validator(name: str) -> Draft202012Validator:
    schema = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def _decodes(decode: Callable[[bytes], Any], doc: Any) -> bool:
    try:
        decode(json.dumps(doc).encode())
    except ValidationError:
        return False
    return True


def _disagreements(name: str, docs: Iterator[Any]) -> list[tuple[str, str]]:
    validator, (decode, _) = _validator(name), CODECS[name]
    found = []
    for doc in docs:
        by_schema, by_codec = validator.is_valid(doc), _decodes(decode, doc)
        if by_schema != by_codec:
            found.append(("schema accepts, codec refuses" if by_schema else "codec accepts, schema refuses",
                          json.dumps(doc)[:300]))
    return found


@pytest.mark.parametrize("name", sorted(CODECS))
def test_schema_and_codec_accept_and_refuse_the_same_documents(name):
    docs = [doc for base in CODECS[name][1] for doc in _mutations(base)]
    validator = _validator(name)
    # The mutations reach both sides of the contract, or the test would prove little.
    accepted = sum(validator.is_valid(doc) for doc in docs)
    assert 0 < accepted < len(docs) and len(docs) > 300
    assert _disagreements(name, iter(docs)) == []


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                    max_leaves=6)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_schema_and_codec_agree_on_random_replacements(data):
    name = data.draw(st.sampled_from(sorted(CODECS)))
    base = data.draw(st.sampled_from(CODECS[name][1]))
    key = data.draw(st.sampled_from(sorted(base)))
    doc = {**base, key: data.draw(JSON)}
    assert _disagreements(name, iter([doc])) == []


def test_the_one_rule_beyond_json_schema_is_stated_in_the_description():
    """One `VenueReports` message is about one account: JSON Schema cannot compare items, the description says it."""
    doc = {"reports": [REPORT, {**REPORT, "report_id": "r2", "account_id": "bob"}]}
    assert _validator("VenueReports").is_valid(doc) and not _decodes(CODECS["VenueReports"][0], doc)
    assert "one account" in json.loads((SCHEMAS / "VenueReports.schema.json").read_text())["description"]
