"""The `market` agent: keeps the reference GlobalTable (prices, halts, global kill switch)."""
from __future__ import annotations

import logging

from pydantic import ValidationError

from atlas.app import app
from atlas.core.control import GlobalKillSwitch, MidPrice, VenueControl
from atlas.settings import settings
from atlas.tables.market import market_state
from atlas.topics import market_input

log = logging.getLogger(__name__)
_MARKETDATA, _CONTROL, _RISK = settings.topic("marketdata"), settings.topic("venue.control"), settings.topic("risk.control")


@app.agent(market_input, concurrency=1)
async def market(stream):
    """Fold market data and control messages into the reference table."""
    async for event in stream.events():
        message = event.message
        try:
            apply_market_message(message.topic, message.value)
        except (ValidationError, ValueError) as exc:
            # Market data of other types, or malformed control: nothing for the OMS to keep.
            log.debug("market agent ignored a message on %s: %s", message.topic, exc)


def apply_market_message(topic: str, value: bytes) -> None:
    """Update the reference table from one message."""
    if topic == _MARKETDATA:
        if b'"mid"' not in value:
            return  # books and trades: not reference data
        mid = MidPrice.model_validate_json(value)
        market_state[f"ref/{mid.symbol}"] = format(mid.mid, "f")
    elif topic == _CONTROL:
        control = VenueControl.model_validate_json(value)
        if control.halted is not None:
            market_state[f"halt/{control.symbol}"] = control.halted
    elif topic == _RISK:
        kill = GlobalKillSwitch.model_validate_json(value)
        market_state["kill"] = {"engaged": kill.engaged, "reason": kill.reason, "command_id": kill.command_id}
