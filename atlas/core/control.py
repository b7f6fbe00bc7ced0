"""Control and market-data messages the OMS reads for its reference state.

- `atlas.marketdata` (key = symbol): the venue's market data; the OMS uses `mid` updates
  as reference prices for collars and market-order reservations.
- `atlas.venue.control` (key = symbol): the venue's live parameters; the OMS reads `halted`.
- `atlas.risk.control` (key = "global"): the global kill switch.
"""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from atlas.core.values import Dec, Int, integral


class MidPrice(BaseModel):
    """The venue's mid price for a symbol (other market-data types are ignored by the OMS)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    type: Literal["mid"]
    symbol: str
    mid: Dec
    ts: Int


class VenueControl(BaseModel):
    """Live venue parameters for one symbol; fields left out keep their value."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    symbol: str
    halted: bool | None = None
    volatility: Dec | None = None
    spread_bps: Dec | None = None
    liquidity: Dec | None = None
    levels: Annotated[int, Field(ge=0, le=50), BeforeValidator(integral)] | None = None
    tick_interval_ms: Annotated[int, Field(ge=10), BeforeValidator(integral)] | None = None
    ts: Int = 0


class GlobalKillSwitch(BaseModel):
    """Stop (or resume) new orders for every account."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    command_id: str
    engaged: bool
    reason: str = Field("", max_length=200)
    ts: Int = 0
