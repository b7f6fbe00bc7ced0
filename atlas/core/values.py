"""Value types shared by the wire models and the pure core.

Money and quantities are `Decimal`. On the wire they are JSON strings of plain digits
("0.015": at most 24 before the point and 18 after it). JSON numbers are refused: a binary
float cannot carry an exact price, and JSON Schema cannot tell 1 from 1.0. So are exponents
("1e3"), padding, `_` separators and digits other than ASCII ones: the schemas' pattern is
the grammar, and a value's size is bounded before it is parsed. Python callers may pass
`Decimal`s and integers.
"""
from __future__ import annotations

import enum
import hashlib
import re
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, NewType

from pydantic import BeforeValidator, PlainSerializer, ValidationInfo, WithJsonSchema

AccountId = NewType("AccountId", str)
OrderId = NewType("OrderId", str)
ClientOrderId = NewType("ClientOrderId", str)
ExecId = NewType("ExecId", str)
CommandId = NewType("CommandId", str)

ZERO = Decimal(0)


# The wire grammar of a decimal string, and the bound of a decimal integer: the schemas say the same.
DECIMAL_PATTERN = r"^-?[0-9]{1,24}(\.[0-9]{1,18})?$"
_DECIMAL = re.compile(DECIMAL_PATTERN)
DECIMAL_INT_MAX = 10 ** 24 - 1


def parse_decimal(value: Any) -> Decimal:
    """Parse a decimal from a string, a Python integer or a Decimal; refuse floats, booleans, NaN and infinities."""
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, bool) or isinstance(value, float):
        raise ValueError("decimal values must be JSON strings such as \"0.1\", not floats")
    elif isinstance(value, int):
        if abs(value) > DECIMAL_INT_MAX:
            raise ValueError("decimal integers must be below 10^24")
        result = Decimal(value)
    elif isinstance(value, str):
        # Searched the way the schemas' validators search their pattern; the length test first keeps it cheap.
        if len(value) > 44 or _DECIMAL.search(value) is None:
            raise ValueError(f"{value[:50]!r} is not a decimal of plain digits (at most 24 before the point and 18 "
                             "after it, as \"0.015\")")
        try:
            result = Decimal(value)
        except InvalidOperation:
            raise ValueError(f"{value!r} is not a decimal number") from None
    else:
        raise ValueError("expected a decimal string")
    if not result.is_finite():
        raise ValueError("decimal values must be finite")
    return result


def integral(value: Any) -> Any:
    """A JSON number with a zero fraction (1.0) as the integer it is: JSON Schema counts it an integer too."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# An integer of a wire model; under strict validation strings and booleans stay refused. (A
# constrained optional one is `Annotated[int, Field(ge=0), BeforeValidator(integral)] | None`:
# constraints after the validator would be lost, in the schema and in validation.)
Int = Annotated[int, BeforeValidator(integral)]


# Validation context of state ATLAS stored itself (tables, the audit trail): read as it was written.
STORED = {"stored": True}


def _validate_decimal(value: Any, info: ValidationInfo) -> Decimal:
    """`parse_decimal`, except that in JSON a decimal is a string, and stored state is read leniently.

    A JSON number is refused, since JSON Schema cannot tell an integer from a float with a
    zero fraction (1 from 1.0). Under the `STORED` context (limits and reports written before
    the wire grammar was this strict) any finite decimal is read.
    """
    if info.context is not None and info.context.get("stored"):
        return parse_stored_decimal(value)
    if info.mode == "json" and not isinstance(value, str):
        raise ValueError("decimal values must be JSON strings such as \"0.1\", not numbers")
    return parse_decimal(value)


def parse_stored_decimal(value: Any) -> Decimal:
    """Parse a decimal of stored state (any finite decimal string or integer): what the OMS computed.

    State holds quotients (an average cost) with more digits than the wire grammar allows;
    it is written by ATLAS only, so it is read as it was written.
    """
    if isinstance(value, str):
        try:
            value = Decimal(value)
        except InvalidOperation:
            raise ValueError(f"{value[:50]!r} is not a decimal number") from None
    return parse_decimal(value)  # never in JSON mode: a stored integer is read as it was written


def decimal_text(value: Decimal | None) -> str | None:
    """A decimal as the wire carries it: plain digits, never exponent form ("0.015"); None stays None."""
    return None if value is None else format(value, "f")


StoredDec = Annotated[
    Decimal,
    BeforeValidator(parse_stored_decimal),
    PlainSerializer(decimal_text, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string"}),
]

Dec = Annotated[
    Decimal,
    BeforeValidator(_validate_decimal),
    PlainSerializer(decimal_text, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "pattern": DECIMAL_PATTERN}),
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
