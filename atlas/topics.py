"""Every ATLAS topic, declared once (keys and values are raw bytes: JSON parsed by the models)."""
from __future__ import annotations

from atlas.app import app
from atlas.settings import settings


def _topic(name: str):
    # The worker creates missing topics at start (AtlasApp.ensure_topics), with the
    # configured partition count, before its consumer subscribes.
    return app.declare_topic(settings.topic(name))


commands = _topic("commands")                 # key account_id: SubmitOrder, CancelOrder, ReplaceOrder
admin = _topic("admin")                       # key account_id: SetLimits, SetAccountKillSwitch (operators only)
venue_orders = _topic("venue.orders")         # key symbol: VenueRequest
venue_reports = _topic("venue.reports")       # key account_id: VenueReport
executions = _topic("executions")             # key account_id: ExecutionReport
marketdata = _topic("marketdata")             # key symbol: book, trades, mid
venue_control = _topic("venue.control")       # key symbol: venue parameters, halt
risk_control = _topic("risk.control")         # key "global": the global kill switch
deadletter = _topic("deadletter")             # key as received: DeadLetter

# The OMS reads commands, admin commands and venue reports in one agent, so one account's events
# are strictly ordered and no other coroutine can interleave with its state updates.
oms_input = app.declare_topic(settings.topic("commands"), settings.topic("admin"), settings.topic("venue.reports"))
market_input = app.declare_topic(settings.topic("marketdata"), settings.topic("venue.control"),
                                 settings.topic("risk.control"))

ALL = (commands, admin, venue_orders, venue_reports, executions, marketdata, venue_control, risk_control, deadletter)
