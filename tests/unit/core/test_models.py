"""Wire models: decimals, commands, the command union, order ids, the accounts file."""
from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from atlas.core.accounts import Directory, Role, hash_key
from atlas.core.commands import ADMIN_COMMAND, COMMAND, CancelOrder, ReplaceOrder, SetAccountKillSwitch, SetLimits, SubmitOrder
from atlas.core.events import VenueReport, venue_reports_in
from atlas.core.instruments import load_instruments
from atlas.core.values import order_id_for, parse_decimal
from tests.helpers import ACCOUNTS_FILE, CONFIG, D, limits, submit

SUBMIT = {"command_id": "c1", "account_id": "alice", "client_order_id": "k1", "symbol": "BTC-USD",
          "side": "BUY", "type": "LIMIT", "quantity": "0.5", "price": "64000"}

# -- decimals ----------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [
    ("0.015", D("0.015")), ("64000", D("64000")), ("-3.5", D("-3.5")), ("9" * 24 + "." + "9" * 18, D("9" * 24 + "." + "9" * 18)),
    (3, D("3")), (0, D("0")), (D("1.10"), D("1.10")),
], ids=["string", "integer-string", "negative", "longest", "int", "zero", "decimal"])
def test_parse_decimal_accepts_plain_digit_strings_and_python_numbers(value, expected):
    parsed = parse_decimal(value)
    assert isinstance(parsed, Decimal) and parsed == expected


@pytest.mark.parametrize(("value", "message"), [
    (0.1, "not floats"),
    (1.0, "not floats"),
    (True, "JSON strings"),
    ("NaN", "plain digits"),
    ("Infinity", "plain digits"),
    ("-Infinity", "plain digits"),
    ("sNaN", "plain digits"),
    ("abc", "'abc' is not a decimal of plain digits"),
    ("", "plain digits"),
    ("1.2.3", "plain digits"),
    ("1e50000000", "plain digits"),
    (" 7.25 ", "plain digits"),
    ("1_000", "plain digits"),
    ("\u0661\u0662\u0663", "plain digits"),
    ("1" * 25, "plain digits"),
    ("0." + "1" * 19, "plain digits"),
    ("+1", "plain digits"),
    (10 ** 24, "below 10\\^24"),
    (None, "expected a decimal string"),
    ([1], "expected a decimal string"),
], ids=["float", "whole-float", "bool", "nan", "inf", "neg-inf", "snan", "word", "empty", "two-points", "exponent",
        "padded", "separator", "arabic-digits", "25-digits", "19-places", "plus", "huge-int", "none", "list"])
def test_parse_decimal_refuses_non_decimals_with_a_clear_message(value, message):
    with pytest.raises(ValueError, match=message):
        parse_decimal(value)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.decimals(min_value=-10 ** 24 + 1, max_value=10 ** 24 - 1, allow_nan=False, allow_infinity=False, places=8))
def test_parse_decimal_round_trips_its_json_form(value):
    text = json.loads(SubmitOrder.model_validate({**SUBMIT, "price": value}).model_dump_json())["price"]
    assert isinstance(text, str) and parse_decimal(text) == value


@pytest.mark.parametrize("quantity", [0.5, 2], ids=["float", "integer"])
def test_submit_order_from_json_refuses_a_number_for_a_decimal(quantity):
    doc = json.dumps({**SUBMIT, "quantity": quantity})
    with pytest.raises(ValidationError, match="must be JSON strings"):
        SubmitOrder.model_validate_json(doc)


def test_submit_order_from_json_accepts_string_decimals_and_from_python_integers():
    order = SubmitOrder.model_validate_json(json.dumps({**SUBMIT, "quantity": "2", "price": "64000.50"}))
    assert (order.quantity, order.price) == (D("2"), D("64000.50"))
    assert SubmitOrder.model_validate({**SUBMIT, "quantity": 2}).quantity == D("2")


def test_decimals_serialize_as_json_strings_without_exponent():
    dumped = json.loads(submit(quantity=D("1E+2"), price=D("6.4E+4")).model_dump_json())
    assert (dumped["quantity"], dumped["price"]) == ("100", "64000")


# -- commands ----------------------------------------------------------------------------


def test_submit_limit_order_without_price_is_refused():
    with pytest.raises(ValidationError, match="a LIMIT order needs a price"):
        SubmitOrder.model_validate({**SUBMIT, "price": None})


def test_submit_market_order_with_price_is_refused():
    with pytest.raises(ValidationError, match="a MARKET order takes no price"):
        SubmitOrder.model_validate({**SUBMIT, "type": "MARKET"})


def test_submit_market_order_without_price_is_accepted():
    assert SubmitOrder.model_validate({**SUBMIT, "type": "MARKET", "price": None}).price is None


@pytest.mark.parametrize("model, doc", [
    (SubmitOrder, SUBMIT),
    (CancelOrder, {"command_id": "c", "account_id": "alice", "order_id": "O1"}),
    (VenueReport, {"report_id": "r", "kind": "ACCEPTED", "order_id": "O1", "account_id": "alice", "ts": 1}),
], ids=["submit", "cancel", "venue-report"])
def test_model_with_an_unknown_field_is_refused(model, doc):
    model.model_validate(doc)
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        model.model_validate({**doc, "leverage": "100"})


def test_limits_with_an_unknown_field_are_refused():
    with pytest.raises(ValidationError):
        limits(max_leverage="10")


@pytest.mark.parametrize("bad", ["", "has space", "x" * 65, "semi;colon"], ids=["empty", "space", "too-long", "symbol"])
def test_command_with_a_malformed_id_is_refused(bad):
    with pytest.raises(ValidationError):
        SubmitOrder.model_validate({**SUBMIT, "command_id": bad})


def test_replace_without_quantity_or_price_is_refused():
    with pytest.raises(ValidationError, match="a replace needs a new quantity or a new price"):
        ReplaceOrder(command_id="c", account_id="alice", order_id="O1")


def test_venue_fill_without_positive_quantity_and_price_is_refused():
    base = {"report_id": "r", "kind": "FILL", "order_id": "O1", "account_id": "alice", "ts": 1}
    VenueReport.model_validate({**base, "last_qty": "1", "last_px": "2"})
    for trade in ({}, {"last_qty": "1"}, {"last_qty": "0", "last_px": "2"}, {"last_qty": "1", "last_px": "-2"}):
        with pytest.raises(ValidationError, match="a FILL needs positive last_qty and last_px"):
            VenueReport.model_validate({**base, **trade})


@pytest.mark.parametrize(("doc", "model"), [
    (SUBMIT | {"command": "SubmitOrder"}, SubmitOrder),
    ({"command": "CancelOrder", "command_id": "c", "account_id": "alice", "order_id": "O1"}, CancelOrder),
    ({"command": "ReplaceOrder", "command_id": "c", "account_id": "alice", "order_id": "O1", "price": "1"},
     ReplaceOrder),
], ids=lambda v: v.__name__ if isinstance(v, type) else None)
def test_command_union_dispatches_on_command(doc, model):
    assert type(COMMAND.validate_python(doc)) is model
    assert type(COMMAND.validate_json(json.dumps(doc))) is model


ADMIN_DOCS = [
    ({"command": "SetLimits", "command_id": "c", "account_id": "alice", "limits": {"max_order_notional": "5"}},
     SetLimits),
    ({"command": "SetAccountKillSwitch", "command_id": "c", "account_id": "alice", "engaged": True},
     SetAccountKillSwitch),
]


@pytest.mark.parametrize(("doc", "model"), ADMIN_DOCS, ids=lambda v: v.__name__ if isinstance(v, type) else None)
def test_admin_commands_decode_from_the_admin_union_only(doc, model):
    assert type(ADMIN_COMMAND.validate_json(json.dumps(doc))) is model
    with pytest.raises(ValidationError, match="does not match any of the expected tags"):
        COMMAND.validate_json(json.dumps(doc))


def test_command_union_refuses_an_unknown_command():
    with pytest.raises(ValidationError, match="does not match any of the expected tags"):
        COMMAND.validate_python({"command": "DepositFunds", "command_id": "c", "account_id": "alice"})


def test_command_union_checks_the_chosen_model():
    with pytest.raises(ValidationError, match="a LIMIT order needs a price"):
        COMMAND.validate_python({**SUBMIT, "command": "SubmitOrder", "price": None})


# -- order ids ---------------------------------------------------------------------------


def test_order_id_for_is_deterministic():
    assert order_id_for("alice", "k1") == order_id_for("alice", "k1")
    assert order_id_for("alice", "k1").startswith("O") and len(order_id_for("alice", "k1")) == 25


def test_order_id_for_differs_per_account_and_per_client_order_id():
    assert order_id_for("alice", "k1") != order_id_for("bob", "k1")
    assert order_id_for("alice", "k1") != order_id_for("alice", "k2")
    # The separator keeps ("ab", "c") and ("a", "bc") apart.
    assert order_id_for("ab", "c") != order_id_for("a", "bc")


# -- accounts and instruments files ------------------------------------------------------


@pytest.fixture(scope="module")
def directory() -> Directory:
    return Directory.load(ACCOUNTS_FILE)


@pytest.mark.parametrize(("key", "account_id", "role"), [
    ("alice-demo-key", "alice", Role.TRADER),
    ("bob-demo-key", "bob", Role.TRADER),
    ("admin-demo-key", "admin", Role.ADMIN),
])
def test_authenticate_with_right_key_returns_its_principal(directory, key, account_id, role):
    principal = directory.authenticate(key)
    assert (principal.account_id, principal.role, principal.is_admin) == (account_id, role, role is Role.ADMIN)


@pytest.mark.parametrize("key", ["alice-demo-key ", "ALICE-DEMO-KEY", "mallory-key", hash_key("alice-demo-key")],
                         ids=["trailing-space", "upper-case", "unknown", "the-stored-digest"])
def test_authenticate_with_wrong_key_returns_none(directory, key):
    assert directory.authenticate(key) is None


@pytest.mark.parametrize("key", [None, ""], ids=["none", "empty"])
def test_authenticate_without_key_returns_none(directory, key):
    assert directory.authenticate(key) is None


def test_accounts_file_stores_key_digests_not_clear_keys():
    text = ACCOUNTS_FILE.read_text()
    for key in ("alice-demo-key", "bob-demo-key", "admin-demo-key"):
        assert key not in text
        assert hash_key(key) in text


def test_accounts_file_gives_alice_her_deposits_and_limits(directory):
    alice = directory.get("alice")
    assert alice.balances["USD"] == D("1000000") and alice.limits == limits()
    assert directory.get("admin").limits is None
    assert directory.get("nobody") is None


def test_instruments_file_loads_every_symbol_on_its_grid():
    loaded = load_instruments(CONFIG / "instruments.json")
    assert sorted(loaded) == ["BTC-USD", "ETH-USD", "SOL-USD"]
    btc = loaded["BTC-USD"]
    assert (btc.base, btc.quote, btc.tick_size, btc.lot_size) == ("BTC", "USD", D("0.01"), D("0.0001"))
    assert btc.price_on_tick(D("64000.01")) and not btc.price_on_tick(D("64000.001"))
    assert btc.quantity_on_lot(D("0.0003")) and not btc.quantity_on_lot(D("0.00031"))


# -- venue report messages -----------------------------------------------------------------

_REPORT = {"report_id": "r1", "kind": "ACCEPTED", "order_id": "O1", "account_id": "alice", "ts": 1}


def test_venue_message_of_one_report_or_several_is_read_as_such():
    second = {**_REPORT, "report_id": "r2", "kind": "FILL", "last_qty": "1", "last_px": "64000"}
    assert [r.report_id for r in venue_reports_in(json.dumps(_REPORT).encode())] == ["r1"]
    assert [r.report_id for r in venue_reports_in(json.dumps({"reports": [_REPORT, second]}).encode())] == ["r1", "r2"]


def test_venue_report_that_only_says_reports_is_read_as_one_report():
    report = {**_REPORT, "kind": "REJECTED", "reason": "reports"}
    assert [r.reason for r in venue_reports_in(json.dumps(report).encode())] == ["reports"]


def test_invalid_venue_reports_message_is_refused_with_its_own_error():
    with pytest.raises(ValidationError) as refused:
        venue_reports_in(json.dumps({"reports": []}).encode())
    assert refused.value.title == "VenueReports"
