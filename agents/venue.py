"""The `venue` agent: the simulated exchange, one ordered input log per symbol.

`atlas.venue.orders` (key = symbol) carries the OMS's requests, the market's ticks (sent by
the `venue_ticker` timer of the worker that owns the symbol) and parameter changes (copied
in from `atlas.venue.control` by `venue_control_copier`). `process` applies one of them to the
symbol's `SymbolVenue` and records the outputs and the new state (see `tables/venue.py`);
the agent then sends reports to `atlas.venue.reports` (key = account; one message per input and
account) and market data to
`atlas.marketdata` (key = symbol): trades as they happen, the book and the mid once per tick.
"""
from __future__ import annotations

import json
import logging
import time

from pydantic import ValidationError

from atlas.agents.outputs import Send, emit, possible_duplicates
from atlas.app import app
from atlas.core.control import VenueControl
from atlas.core.events import (
    DeadLetter, VenueParamsChange, VenueReport, VenueReportKind, VenueReports, VenueRequest, VenueTick,
    decode_venue_input,
)
from atlas.core.values import decimal_text
from atlas.runtime import metrics, tracing
from atlas.runtime.partitioning import partition_for
from atlas.runtime.producer import BrokerUnavailable, CommandProducer
from atlas.runtime.reference import instruments
from atlas.settings import settings
from atlas.tables.venue import applied_request, cached_params, forget_cached, load, outbox, save
from atlas.topics import deadletter, marketdata, venue_control, venue_orders, venue_reports
from atlas.venue.exchange import SymbolVenue, VenueOutput, default_params
from atlas.venue.market_maker import MarketParams

log = logging.getLogger(__name__)
VENUE_ORDERS = settings.topic("venue.orders")
BOOK_LEVELS = 10
_TOPICS = {t.get_topic_name(): t for t in (venue_reports, marketdata, deadletter, venue_orders)}
_EVENTS = metrics.AGENT_EVENTS.labels("venue")
_DEAD_LETTERS = metrics.DEAD_LETTERS.labels("venue")


@app.on_partitions_revoked.connect
async def _partitions_revoked(sender, revoked, **kwargs) -> None:
    forget_cached()


@app.on_rebalance_complete.connect
async def _new_assignment(sender, **kwargs) -> None:
    forget_cached()


@app.agent(venue_orders, concurrency=1)
async def venue(stream):
    """Run each symbol's exchange over its input log."""
    async for event in stream.events():
        if not settings.venue_enabled:
            continue
        message = event.message
        # A request the OMS (or a traced producer) sent is traced; the market's own ticks start no trace.
        sends = tracing.traced("venue", message, _process, starts=False) if tracing.ENABLED else _process(message)
        await emit(sends, message.topic, message.partition)
        _EVENTS.inc()


def _process(message) -> list[Send]:
    return process(message.partition, message.offset, int(message.timestamp * 1000), message.key, message.value)


def process(partition: int, offset: int, ts: int, key: bytes | None, value: bytes) -> list[Send]:
    """Everything one input message does to its symbol's venue, and what it must send."""
    try:
        message = decode_venue_input(value)
    except ValidationError as exc:
        return [_dead_letter(partition, offset, ts, key, value, f"INVALID_MESSAGE: {exc.errors()[0]['msg']}")]
    instrument = instruments().get(message.symbol)
    if instrument is None:
        sends = [_dead_letter(partition, offset, ts, key, value, f"UNKNOWN_SYMBOL: {message.symbol}")]
        if isinstance(message, VenueRequest):
            sends.append(_reject(message, f"UNKNOWN_SYMBOL: {message.symbol}", offset))
        return sends
    if key != message.symbol.encode() or partition != partition_for(message.symbol.encode()):
        log.warning("re-keying venue input at %s/%s to symbol %s", partition, offset, message.symbol)
        key = message.symbol.encode()
        return [Send(venue_orders, key, value, partition_for(key))]
    applied, symbol_venue = load(
        instrument, lambda: SymbolVenue(instrument, default_params(message.symbol), settings.venue_seed))
    if offset <= applied:
        # Read again after a restart: applied already; its outputs may not have gone out.
        return _sent_again(message.symbol, offset)
    if isinstance(message, VenueRequest):
        first = applied_request(message.symbol, message.request_id)
        if first is not None:
            # A copy of a request applied already at `first` (the OMS sends its requests again after
            # a restart): that message's outputs again, as copies. Applied twice, an order that had
            # left the book would trade again, against other accounts' resting orders too.
            return _sent_again(message.symbol, first)
        if tracing.ENABLED:
            tracing.annotate(account_id=message.account_id, order_id=message.order_id, symbol=message.symbol,
                             venue_request=message.request)
        out = symbol_venue.handle(message)
    elif isinstance(message, VenueTick):
        out = symbol_venue.tick(message.ts)
    else:
        symbol_venue.set_params(_changed(symbol_venue, message))
        out = VenueOutput()
    sends = _sends(symbol_venue, out, offset, book=isinstance(message, VenueTick), ts=message.ts)
    save(symbol_venue, offset, [_encode_send(s) for s in sends],
         request_id=message.request_id if isinstance(message, VenueRequest) else None,
         prune=isinstance(message, VenueTick) and symbol_venue.tick_no % 1000 == 0)
    return sends


def _changed(symbol_venue: SymbolVenue, change: VenueParamsChange) -> MarketParams:
    liquidity = None if change.liquidity is None else symbol_venue.lots(change.liquidity)
    return symbol_venue.params.updated(
        halted=change.halted, volatility=change.volatility, spread_bps=change.spread_bps,
        liquidity=max(1, liquidity) if liquidity is not None else None, levels=change.levels,
        tick_interval_ms=change.tick_interval_ms)


def _sent_again(symbol: str, offset: int) -> list[Send]:
    """The outputs of the message at `offset`, applied already, as copies.

    Nothing once its outbox is pruned; a copied request's id can outlive its outbox only through a
    crash inside a prune (outboxes go first).
    """
    sent = outbox(symbol, offset)
    if sent is None:
        log.warning("%s: the outbox of offset %s is gone: nothing sent again", symbol, offset)
    return possible_duplicates([_decode_send(raw) for raw in sent or []])


def _sends(symbol_venue: SymbolVenue, out: VenueOutput, offset: int, *, book: bool, ts: int) -> list[Send]:
    symbol = symbol_venue.instrument.symbol.encode()
    # Each report is stamped with its place in the symbol's log, which the OMS dedupes by; an
    # account's reports from one input go as one message (an ack and its fill: one OMS event).
    by_account: dict[str, list[VenueReport]] = {}
    for i, r in enumerate(out.reports, start=1):
        by_account.setdefault(r.account_id, []).append(r.model_copy(update={"venue_offset": offset, "venue_index": i}))
    sends = [Send(venue_reports, account.encode(), _reports_message(reports)) for account, reports in by_account.items()]
    for trade in out.trades:
        doc = {"type": "trade", "symbol": trade.symbol, "price": decimal_text(trade.price),
               "quantity": decimal_text(trade.quantity),
               "aggressor": trade.aggressor.value, "ts": trade.ts}
        sends.append(Send(marketdata, symbol, json.dumps(doc).encode()))
    if book:
        bids, asks = symbol_venue.book.depth(BOOK_LEVELS)
        doc = {"type": "book", "symbol": symbol_venue.instrument.symbol,
               "bids": [[decimal_text(symbol_venue.price(p)), decimal_text(symbol_venue.quantity(q))] for p, q in bids],
               "asks": [[decimal_text(symbol_venue.price(p)), decimal_text(symbol_venue.quantity(q))] for p, q in asks],
               "mid": decimal_text(symbol_venue.mid_price), "halted": symbol_venue.params.halted, "ts": ts}
        sends.append(Send(marketdata, symbol, json.dumps(doc).encode()))
        mid = {"type": "mid", "symbol": symbol_venue.instrument.symbol, "mid": decimal_text(symbol_venue.mid_price),
               "ts": ts}
        sends.append(Send(marketdata, symbol, json.dumps(mid).encode()))
    return sends


def _reports_message(reports: list[VenueReport]) -> bytes:
    """One report as itself; several as a `VenueReports`."""
    if len(reports) == 1:
        return reports[0].model_dump_json().encode()
    return VenueReports(reports=tuple(reports)).model_dump_json().encode()


def _encode_send(send: Send) -> list:
    return [send.topic.get_topic_name(), None if send.key is None else send.key.decode(), send.value.decode(),
            send.partition]


def _decode_send(raw: list) -> Send:
    topic, key, value, partition = raw
    return Send(_TOPICS[topic], None if key is None else key.encode(), value.encode(), partition)


def _reject(request: VenueRequest, reason: str, offset: int) -> Send:
    report = VenueReport(report_id=f"{request.request_id}/1", kind=VenueReportKind.REJECTED, order_id=request.order_id,
                         account_id=request.account_id, request_id=request.request_id, reason=reason, ts=request.ts,
                         venue_offset=offset, venue_index=1)
    return Send(venue_reports, request.account_id.encode(), report.model_dump_json().encode())


def _dead_letter(partition: int, offset: int, ts: int, key: bytes | None, value: bytes, error: str) -> Send:
    letter = DeadLetter(topic=VENUE_ORDERS, partition=partition, offset=offset,
                        key=key.decode(errors="replace") if key is not None else None,
                        value=value.decode(errors="replace"), error=error, ts=ts)
    _DEAD_LETTERS.inc()
    if tracing.ENABLED:
        tracing.dead_lettered(error)
    return Send(deadletter, key, letter.model_dump_json().encode())


# -- the inputs the venue gives itself --------------------------------------------------------

_last_tick: dict[str, float] = {}


@app.timer(0.05)
async def venue_ticker() -> None:
    """Send each owned symbol's tick when its interval is up (into its own input log, so ticks are replayable)."""
    if not settings.venue_enabled or app.consumer is None:
        return
    owned = {tp.partition for tp in app.consumer.assignment() if tp.topic == VENUE_ORDERS}
    now = time.monotonic()
    for symbol in instruments():
        if partition_for(symbol.encode()) not in owned:
            continue
        interval = _tick_interval(symbol) / 1000
        if now - _last_tick.get(symbol, 0.0) < interval:
            continue
        _last_tick[symbol] = now
        tick = VenueTick(request="tick", symbol=symbol, ts=int(time.time() * 1000))
        await _send_input(symbol, tick.model_dump_json().encode())


def _tick_interval(symbol: str) -> int:
    params = cached_params(symbol) or default_params(symbol)
    return params.tick_interval_ms


@app.agent(venue_control, concurrency=1)
async def venue_control_copier(stream):
    """Copy control-center changes into the symbol's input log, in order with its orders and ticks."""
    async for event in stream.events():
        if not settings.venue_enabled:
            continue
        try:
            control = VenueControl.model_validate_json(event.message.value)
        except ValidationError:
            continue  # the market agent dead-letters nothing here either; the admin view validated it
        change = VenueParamsChange(request="params", **control.model_dump(exclude_none=True))
        await _send_input(control.symbol, change.model_dump_json().encode())


async def _send_input(symbol: str, value: bytes) -> None:
    """Add to a symbol's input log the way the gateway adds commands: outside any transaction.

    Under exactly_once, Faust would put it in the transaction of its destination partition,
    which commits only with new offsets of that partition: the venue, reading committed
    messages only, would never see the tick that was to give it those offsets.
    """
    producer = CommandProducer.current
    if producer is None:
        return  # not started yet (or stopping): the next timer round sends it
    try:
        await producer.send(VENUE_ORDERS, symbol, value)
    except BrokerUnavailable as exc:
        log.warning("venue input for %s not sent: %s", symbol, exc)
