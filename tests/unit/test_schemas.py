"""The JSON Schemas in `schemas/`: current with the models, and true of real messages."""
from __future__ import annotations

import json
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from pydantic import ValidationError

from atlas.core.commands import COMMAND
from atlas.core.control import GlobalKillSwitch, MidPrice, VenueControl
from atlas.core.events import DeadLetter, VenueParamsChange, VenueReports, VenueTick
from atlas.schemas import MODELS, render
from tests.helpers import SCHEMAS, T0, Book, cancel, kill_switch, limits, replace, set_limits, submit, venue_report

RENDERED = render()


def test_schema_files_are_exactly_the_rendered_ones():
    on_disk = sorted(p.name for p in SCHEMAS.glob("*.schema.json"))
    assert on_disk == sorted(RENDERED), "schemas/ drifted from the models: run `python -m atlas schemas`"


@pytest.mark.parametrize("name", sorted(RENDERED))
def test_schema_file_matches_the_models(name):
    path = SCHEMAS / name
    assert path.exists() and path.read_text() == RENDERED[name], (
        f"schemas/{name} drifted from the models: run `python -m atlas schemas`")


def _instances() -> dict[str, dict[str, Any]]:
    """One real message of every type, as JSON, from the models and the core."""
    book = Book()
    new = book.command(submit(client_order_id="schema-1"))
    order_id = new.reports[0].order_id
    book.venue(order_id, "ACCEPTED")
    fill = venue_report(order_id, "FILL", last_qty="0.1", last_px="63999.5")
    book.report(fill)
    messages = {
        "SubmitOrder": submit(), "CancelOrder": cancel(order_id), "ReplaceOrder": replace(order_id, price="64100"),
        "SetLimits": set_limits(limits(restricted_symbols=["SOL-USD"])),
        "SetAccountKillSwitch": kill_switch(True, "ops"),
        "ExecutionReport": book.executions(order_id)[-1], "VenueRequest": new.venue[0], "VenueReport": fill,
        "VenueReports": VenueReports(reports=(venue_report(order_id, "ACCEPTED"), fill)),
        "DeadLetter": DeadLetter(topic="atlas.commands", partition=3, offset=42, key="alice", value="{",
                                 error="INVALID", ts=T0),
        "MidPrice": MidPrice(type="mid", symbol="BTC-USD", mid="65000.5", ts=T0),
        "VenueControl": VenueControl(symbol="BTC-USD", halted=True, spread_bps="2.5"),
        "GlobalKillSwitch": GlobalKillSwitch(command_id="g1", engaged=True, reason="drill"),
        "VenueTick": VenueTick(request="tick", symbol="BTC-USD", ts=T0),
        "VenueParamsChange": VenueParamsChange(request="params", symbol="BTC-USD", volatility="0.001", levels=4, ts=T0),
    }
    return {name: json.loads(message.model_dump_json()) for name, message in messages.items()}


INSTANCES = _instances()
# Each breaks one rule of its schema: a missing field, a float for a decimal, a wrong enum value.
BREAKS = {
    "SubmitOrder": lambda d: {**d, "quantity": 0.5},
    "CancelOrder": lambda d: {k: v for k, v in d.items() if k != "order_id"},
    "ReplaceOrder": lambda d: {**d, "price": "64,100"},
    "SetLimits": lambda d: {**d, "limits": {**d["limits"], "price_collar_bps": 0}},
    "SetAccountKillSwitch": lambda d: {k: v for k, v in d.items() if k != "engaged"},
    "ExecutionReport": lambda d: {**d, "status": "HALF_FILLED"},
    "VenueRequest": lambda d: {**d, "request": "amend"},
    "VenueReport": lambda d: {**d, "kind": "PARTIAL"},
    "VenueReports": lambda d: {**d, "reports": []},
    "DeadLetter": lambda d: {k: v for k, v in d.items() if k != "error"},
    "MidPrice": lambda d: {**d, "mid": 65000.5},
    "VenueControl": lambda d: {**d, "tick_interval_ms": 1},
    "GlobalKillSwitch": lambda d: {**d, "sabotage": True},
    "VenueTick": lambda d: {k: v for k, v in d.items() if k != "symbol"},
    "VenueParamsChange": lambda d: {**d, "levels": 51},
}


def _validator(name: str) -> Draft202012Validator:
    schema = json.loads((SCHEMAS / name).read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def test_every_message_type_has_an_instance_and_a_break():
    assert set(INSTANCES) == set(BREAKS) == set(MODELS)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_schema_accepts_a_real_message(name):
    errors = [e.message for e in _validator(f"{name}.schema.json").iter_errors(INSTANCES[name])]
    assert errors == []


@pytest.mark.parametrize("name", sorted(MODELS))
def test_schema_rejects_a_broken_message(name):
    broken = BREAKS[name](INSTANCES[name])
    assert list(_validator(f"{name}.schema.json").iter_errors(broken)), f"{name} schema accepted {broken}"
    with pytest.raises(ValueError):  # and so does the model (pydantic's ValidationError is a ValueError)
        MODELS[name].model_validate_json(json.dumps(broken))


@pytest.mark.parametrize("name", ["SubmitOrder", "CancelOrder", "ReplaceOrder"])
def test_command_union_schema_accepts_every_trader_command_and_no_admin_command(name):
    assert list(_validator("Command.schema.json").iter_errors(INSTANCES[name])) == []
    assert list(_validator("AdminCommand.schema.json").iter_errors(INSTANCES[name]))


@pytest.mark.parametrize("name", ["SetLimits", "SetAccountKillSwitch"])
def test_admin_command_union_schema_accepts_every_admin_command_and_no_trader_command(name):
    assert list(_validator("AdminCommand.schema.json").iter_errors(INSTANCES[name])) == []
    assert list(_validator("Command.schema.json").iter_errors(INSTANCES[name]))


def test_command_union_schema_rejects_an_unknown_command():
    doc = {**INSTANCES["CancelOrder"], "command": "DepositFunds"}
    assert list(_validator("Command.schema.json").iter_errors(doc))


def test_command_union_schema_and_model_agree_on_a_submit_without_command():
    doc = {k: v for k, v in INSTANCES["SubmitOrder"].items() if k != "command"}
    schema_accepts = not list(_validator("Command.schema.json").iter_errors(doc))
    try:
        COMMAND.validate_python(doc)
        model_accepts = True
    except ValidationError:
        model_accepts = False
    assert schema_accepts == model_accepts, f"schema accepts: {schema_accepts}, model accepts: {model_accepts}"


@pytest.mark.parametrize("name", ["VenueRequest", "VenueTick", "VenueParamsChange"])
def test_venue_input_union_schema_accepts_every_venue_input(name):
    assert list(_validator("VenueInput.schema.json").iter_errors(INSTANCES[name])) == []
