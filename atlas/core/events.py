"""Events: what the OMS and the venue tell each other and the world.

- `atlas.venue.orders` (key = symbol): `VenueRequest`s from the OMS, and the venue's own
  `VenueTick`s and `VenueParamsChange`s, so one symbol's whole input is one ordered log.
- `atlas.venue.reports` (key = account_id): `VenueReport`s from the venue, several of one
  input about one account as one `VenueReports` message.
- `atlas.executions` (key = account_id): `ExecutionReport`s, FIX ExecType / OrdStatus.
- `atlas.deadletter` (key = source key): `DeadLetter`s for input that failed validation.
"""
from __future__ import annotations

import enum
from typing import Annotated, Literal, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from atlas.core.control import VenueControl
from atlas.core.values import Dec, Int, OrderType, Side, TimeInForce, integral


class OrdStatus(str, enum.Enum):
    PENDING_NEW = "PENDING_NEW"
    NEW = "NEW"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    PENDING_CANCEL = "PENDING_CANCEL"
    CANCELED = "CANCELED"
    PENDING_REPLACE = "PENDING_REPLACE"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"

    @property
    def is_closed(self) -> bool:
        return self in _CLOSED


_CLOSED = frozenset({OrdStatus.FILLED, OrdStatus.CANCELED, OrdStatus.REJECTED, OrdStatus.EXPIRED})


class ExecType(str, enum.Enum):
    PENDING_NEW = "PENDING_NEW"
    NEW = "NEW"
    TRADE = "TRADE"
    PENDING_CANCEL = "PENDING_CANCEL"
    CANCELED = "CANCELED"
    PENDING_REPLACE = "PENDING_REPLACE"
    REPLACED = "REPLACED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"
    # FIX sends these as OrderCancelReject (35=9); one report type keeps consumers simple.
    CANCEL_REJECTED = "CANCEL_REJECTED"
    REPLACE_REJECTED = "REPLACE_REJECTED"


class ExecutionReport(BaseModel):
    """One step of an order's life, as a client sees it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    exec_id: str
    seq: Int = Field(description="Position of this report in the order's history, from 1")
    cause_id: str = Field(description="command_id or venue report_id that caused this report")
    order_id: str
    client_order_id: str
    account_id: str
    # None only in reports about an order the OMS never accepted the terms of
    # (a cancel of an unknown order, a malformed Kafka submission).
    symbol: str | None
    side: Side | None
    type: OrderType | None
    time_in_force: TimeInForce | None
    exec_type: ExecType
    status: OrdStatus
    quantity: Dec | None
    price: Dec | None
    last_qty: Dec
    last_px: Dec | None
    cum_qty: Dec
    leaves_qty: Dec
    avg_px: Dec | None
    reason: str | None = None
    ts: Int = Field(description="Milliseconds since the epoch, from the causing message")


class VenueRequest(BaseModel):
    """What the OMS asks of the venue: a new order, a cancel or a replace."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    request: Literal["new", "cancel", "replace"]
    request_id: str = Field(description="exec_id of the OMS report that made this request")
    order_id: str
    account_id: str
    symbol: str
    side: Side
    type: OrderType
    time_in_force: TimeInForce
    quantity: Dec
    price: Dec | None
    # A market order may not trade beyond this price (the OMS reserved funds at it).
    limit_guard: Dec | None = None
    ts: Int


class VenueTick(BaseModel):
    """A heartbeat of the synthetic market: the mid moves and the maker re-quotes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    request: Literal["tick"]
    symbol: str
    ts: Int


class VenueParamsChange(VenueControl):
    """A `VenueControl` copied from `atlas.venue.control` into the symbol's input log; left-out fields stay."""

    request: Literal["params"]


VenueInput = Annotated[Union[VenueRequest, VenueTick, VenueParamsChange], Field(discriminator="request")]
VENUE_INPUT = TypeAdapter(VenueInput)


def decode_venue_input(value: bytes) -> VenueRequest | VenueTick | VenueParamsChange:
    """A message of `atlas.venue.orders`, validated as strictly as its schema (no "1" for a number)."""
    return VENUE_INPUT.validate_json(value, strict=True)


class VenueReportKind(str, enum.Enum):
    ACCEPTED = "ACCEPTED"
    FILL = "FILL"
    CANCELED = "CANCELED"
    REPLACED = "REPLACED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"
    CANCEL_REJECTED = "CANCEL_REJECTED"
    REPLACE_REJECTED = "REPLACE_REJECTED"


# A decimal above zero (a trade's quantity and price): with the wire pattern, which it is checked beside.
_POSITIVE = r"^(0*[1-9][0-9]*(\.[0-9]+)?|0+\.[0-9]*[1-9][0-9]*)$"


def _fill_rule(schema: dict) -> None:
    # The model's `_fill_has_trade`, said in JSON Schema.
    trade = {"type": "string", "pattern": _POSITIVE}
    schema["allOf"] = [{"if": {"properties": {"kind": {"const": "FILL"}}},
                        "then": {"required": ["last_qty", "last_px"],
                                 "properties": {"last_qty": trade, "last_px": trade}}}]


class VenueReport(BaseModel):
    """What the venue tells the OMS about one order."""

    model_config = ConfigDict(frozen=True, extra="forbid", json_schema_extra=_fill_rule)

    report_id: str = Field(min_length=1, max_length=128)
    kind: VenueReportKind
    order_id: str
    account_id: str
    request_id: str | None = None
    last_qty: Dec | None = None
    last_px: Dec | None = None
    # REPLACED carries the order's new terms.
    quantity: Dec | None = None
    price: Dec | None = None
    reason: str | None = None
    ts: Int
    # Where the venue's log put the report: the offset of the input that caused it, and its
    # place among that input's reports. An order's reports rise in it, so a copy is told apart.
    venue_offset: Annotated[int, Field(ge=0), BeforeValidator(integral)] | None = None
    venue_index: Annotated[int, Field(ge=1), BeforeValidator(integral)] | None = None

    @model_validator(mode="after")
    def _fill_has_trade(self) -> "VenueReport":
        if self.kind is VenueReportKind.FILL:
            if self.last_qty is None or self.last_px is None or self.last_qty <= 0 or self.last_px <= 0:
                raise ValueError("a FILL needs positive last_qty and last_px")
        return self


class VenueReports(BaseModel):
    """What one venue input told one account, in order: the venue sends several reports (an ack and a fill) as one message."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    reports: tuple[VenueReport, ...] = Field(min_length=1, max_length=10_000)

    @model_validator(mode="after")
    def _one_account(self) -> "VenueReports":
        if len({r.account_id for r in self.reports}) > 1:
            raise ValueError("the reports of one message are about one account")
        return self


def venue_reports_in(value: bytes) -> tuple[VenueReport, ...]:
    """The venue reports an `atlas.venue.reports` message carries: one `VenueReport`, or a `VenueReports`.

    A message is parsed once: one that holds `"reports"` is read as a `VenueReports` (a
    `VenueReport` has no such field; one that only says the word somewhere is read as itself
    after all), any other as a `VenueReport`.
    """
    if b'"reports"' in value:
        try:
            return VenueReports.model_validate_json(value, strict=True).reports
        except ValidationError as several:
            try:
                return (VenueReport.model_validate_json(value, strict=True),)
            except ValidationError:
                raise several from None
    return (VenueReport.model_validate_json(value, strict=True),)


class DeadLetter(BaseModel):
    """An input message the OMS could not use, with why."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    topic: str
    partition: Int
    offset: Int
    key: str | None
    value: str
    error: str
    ts: Int


def reason_code(reason: str | None) -> str:
    """The stable code a reject or dead-letter reason starts with ("UNKNOWN_SYMBOL: ..." -> "UNKNOWN_SYMBOL"), else OTHER."""
    code = (reason or "").split(":", 1)[0].strip()
    return code if 0 < len(code) <= 40 and code.replace("_", "").isalnum() and code.isupper() else "OTHER"
