"""Value types shared by the wire models and the pure core.

Money and quantities are `Decimal`. On the wire they are JSON strings ("0.015"); JSON
integers are accepted too, JSON floats are refused because a binary float cannot carry
an exact price.
"""
from __future__ import annotations

import enum
import hashlib
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, NewType

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

AccountId = NewType("AccountId", str)
OrderId = NewType("OrderId", str)
ClientOrderId = NewType("ClientOrderId", str)
ExecId = NewType("ExecId", str)
CommandId = NewType("CommandId", str)

ZERO = Decimal(0)


def parse_decimal(value: Any) -> Decimal:
    """Parse a decimal from a JSON string or integer; refuse floats, booleans, NaN and infinities."""
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, bool) or isinstance(value, float):
        raise ValueError("decimal values must be JSON strings such as \"0.1\", not floats")
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, str):
        try:
            result = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError(f"{value!r} is not a decimal number") from None
    else:
        raise ValueError("expected a decimal string")
    if not result.is_finite():
        raise ValueError("decimal values must be finite")
    return result


def decimal_text(value: Decimal | None) -> str | None:
    """A decimal as the wire carries it: plain digits, never exponent form ("0.015"); None stays None."""
    return None if value is None else format(value, "f")


Dec = Annotated[
    Decimal,
    BeforeValidator(parse_decimal),
    PlainSerializer(decimal_text, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "pattern": r"^-?\d+(\.\d+)?$"}),
]


class Side(str, enum.Enum):
    BUY = "BUY"
    SELL = "SELL"


class OrderType(str, enum.Enum):
    LIMIT = "LIMIT"
    MARKET = "MARKET"


class TimeInForce(str, enum.Enum):
    GTC = "GTC"
    DAY = "DAY"
    IOC = "IOC"
    FOK = "FOK"


def order_id_for(account_id: str, client_order_id: str) -> OrderId:
    """Derive the order id from account and client order id, so racing duplicates collide."""
    digest = hashlib.sha256(f"{account_id}\x00{client_order_id}".encode()).hexdigest()
    return OrderId("O" + digest[:24])
