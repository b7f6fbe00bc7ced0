"""Commands on `atlas.commands` (key = account_id): what clients ask the OMS to do.

Every command carries a unique `command_id`; the OMS applies a command id once.
"""
from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from atlas.core.accounts import Limits
from atlas.core.values import Dec, OrderType, Side, TimeInForce

_ID = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:\-]+$")


def _command_is_required(schema: dict) -> None:
    # `command` has a default for Python callers, but on the wire the union needs it.
    required = schema.setdefault("required", [])
    if "command" not in required:
        required.insert(0, "command")


class _Command(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", json_schema_extra=_command_is_required)

    command_id: str = _ID
    account_id: str = _ID


def _price_rule(schema: dict) -> None:
    # The model's `_price_matches_type`, said in JSON Schema.
    _command_is_required(schema)
    schema["allOf"] = [
        {"if": {"properties": {"type": {"const": "LIMIT"}}},
         "then": {"required": ["price"], "properties": {"price": {"type": "string"}}}},
        {"if": {"properties": {"type": {"const": "MARKET"}}},
         "then": {"properties": {"price": {"type": "null"}}}},
    ]


def _change_rule(schema: dict) -> None:
    # The model's `_changes_something`, said in JSON Schema.
    _command_is_required(schema)
    schema["anyOf"] = [{"required": [name], "properties": {name: {"type": "string"}}} for name in ("quantity", "price")]


class SubmitOrder(_Command):
    """Place a new order."""

    model_config = ConfigDict(json_schema_extra=_price_rule)

    command: Literal["SubmitOrder"] = "SubmitOrder"
    client_order_id: str = _ID
    symbol: str = Field(min_length=1, max_length=32)
    side: Side
    type: OrderType
    quantity: Dec
    price: Dec | None = None
    time_in_force: TimeInForce = TimeInForce.GTC

    @model_validator(mode="after")
    def _price_matches_type(self) -> "SubmitOrder":
        if self.type is OrderType.LIMIT and self.price is None:
            raise ValueError("a LIMIT order needs a price")
        if self.type is OrderType.MARKET and self.price is not None:
            raise ValueError("a MARKET order takes no price")
        return self


class CancelOrder(_Command):
    """Cancel the rest of an open order."""

    command: Literal["CancelOrder"] = "CancelOrder"
    order_id: str = _ID


class ReplaceOrder(_Command):
    """Change the quantity and/or price of an open order."""

    model_config = ConfigDict(json_schema_extra=_change_rule)

    command: Literal["ReplaceOrder"] = "ReplaceOrder"
    order_id: str = _ID
    quantity: Dec | None = None
    price: Dec | None = None

    @model_validator(mode="after")
    def _changes_something(self) -> "ReplaceOrder":
        if self.quantity is None and self.price is None:
            raise ValueError("a replace needs a new quantity or a new price")
        return self


class SetLimits(_Command):
    """Replace an account's risk limits (admin)."""

    command: Literal["SetLimits"] = "SetLimits"
    limits: Limits


class SetAccountKillSwitch(_Command):
    """Stop (or resume) an account's trading; engaging it also cancels its open orders."""

    command: Literal["SetAccountKillSwitch"] = "SetAccountKillSwitch"
    engaged: bool
    reason: str = Field("", max_length=200)


# A trader's commands: what `atlas.commands` carries, which order producers may write.
Command = Annotated[Union[SubmitOrder, CancelOrder, ReplaceOrder], Field(discriminator="command")]
COMMAND = TypeAdapter(Command)
# An operator's commands: what `atlas.admin` carries, which only the admin path may write (ACLs).
AdminCommand = Annotated[Union[SetLimits, SetAccountKillSwitch], Field(discriminator="command")]
ADMIN_COMMAND = TypeAdapter(AdminCommand)


def decode_command(value: bytes) -> SubmitOrder | CancelOrder | ReplaceOrder:
    """A message of `atlas.commands`, validated as strictly as its schema (no "1" for a number)."""
    return COMMAND.validate_json(value, strict=True)


def decode_admin_command(value: bytes) -> SetLimits | SetAccountKillSwitch:
    """A message of `atlas.admin`, validated as strictly as its schema."""
    return ADMIN_COMMAND.validate_json(value, strict=True)
