"""JSON Schemas of every message type, generated from the models into `schemas/`."""
from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from atlas.core.commands import ADMIN_COMMAND, COMMAND, CancelOrder, ReplaceOrder, SetAccountKillSwitch, SetLimits, SubmitOrder
from atlas.core.control import GlobalKillSwitch, MidPrice, VenueControl
from atlas.core.events import (
    VENUE_INPUT, DeadLetter, ExecutionReport, VenueParamsChange, VenueReport, VenueReports, VenueRequest, VenueTick,
)
from atlas.settings import ROOT

SCHEMA_DIR = ROOT / "schemas"
MODELS: dict[str, type[BaseModel]] = {
    "SubmitOrder": SubmitOrder, "CancelOrder": CancelOrder, "ReplaceOrder": ReplaceOrder,
    "SetLimits": SetLimits, "SetAccountKillSwitch": SetAccountKillSwitch,
    "ExecutionReport": ExecutionReport, "VenueRequest": VenueRequest, "VenueReport": VenueReport,
    "VenueReports": VenueReports,
    "DeadLetter": DeadLetter, "MidPrice": MidPrice, "VenueControl": VenueControl, "GlobalKillSwitch": GlobalKillSwitch,
    "VenueTick": VenueTick, "VenueParamsChange": VenueParamsChange,
}


def render() -> dict[str, str]:
    """File name -> schema text, for every message type, the command union and the venue's input union."""
    docs = {name: model.model_json_schema() for name, model in MODELS.items()}
    docs["Command"] = COMMAND.json_schema()
    docs["AdminCommand"] = ADMIN_COMMAND.json_schema()
    docs["VenueInput"] = VENUE_INPUT.json_schema()
    out = {}
    for name, doc in docs.items():
        doc = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": f"{name}.schema.json", **doc}
        out[f"{name}.schema.json"] = json.dumps(doc, indent=2, sort_keys=True) + "\n"
    return out


def write(folder: Path = SCHEMA_DIR) -> list[Path]:
    """Write the schemas; returns the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render().items():
        path = folder / name
        path.write_text(text)
        written.append(path)
    return written
