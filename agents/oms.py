"""The `oms` agent: commands and venue reports in, execution reports and venue requests out.

A thin loop over `process`, which is synchronous: it reads the account's state, decides
with the pure core and writes the state with no `await` in between, so nothing can
interleave with an account's update. The agent takes what the consumer has delivered as a
batch (up to `ATLAS_BATCH_MAX` events): it processes every event, writes the batch's state
once per key (`tables.oms.batch`), then sends the outputs in event order; the offsets are
committed after that.
"""
from __future__ import annotations

import json
import logging
import os
import re
import time

from pydantic import ValidationError

from atlas.agents.faults import checkpoint
from atlas.agents.outputs import Send, emit, possible_duplicates
from atlas.analytics.telemetry import process_telemetry
from atlas.app import app
from atlas.core.commands import SubmitOrder, decode_admin_command, decode_command
from atlas.core.events import DeadLetter, ExecType, venue_reports_in
from atlas.core.values import order_id_for
from atlas.oms.engine import (
    apply_command, apply_venue_report, needs_open_orders, new_account, orders_needed, unknown_order_report,
)
from atlas.runtime import metrics, tracing
from atlas.runtime.logs import CURRENT as LOG_IDS, JSON as JSON_LOGS, NO_IDS
from atlas.runtime.partitioning import partition_for
from atlas.runtime.reference import DEFAULT_LIMITS, directory, instruments
from atlas.settings import settings
from atlas.tables.market import current_market
from atlas.tables.oms import (
    archive, batch, forget_cached, history, load_account, load_order, needs_migration, open_orders, retention, save,
)
from atlas.tables.oms_migrate import migrate
from atlas.tables.write_behind import processing
from atlas.topics import admin, commands, deadletter, executions, oms_input, venue_orders, venue_reports

log = logging.getLogger(__name__)
COMMANDS_TOPIC = settings.topic("commands")
# Per input topic: how its messages decode into events, and the topic a misrouted one is moved
# back onto. A trader's command on `commands`, an operator's on `admin` (where ACLs let only the
# admin path write): a SetLimits on `commands` is refused, whoever could write it there.
_INPUTS = {
    COMMANDS_TOPIC: (lambda value: (decode_command(value),), commands),
    settings.topic("admin"): (lambda value: (decode_admin_command(value),), admin),
}
_REPORTS = (venue_reports_in, venue_reports)
_EVENTS = metrics.AGENT_EVENTS.labels("oms")
_BATCH_SECONDS = metrics.AGENT_BATCH_SECONDS.labels("oms")
_DEAD_LETTERS = metrics.DEAD_LETTERS.labels("oms")


# Accounts this worker has written since its partitions were last assigned: the first write
# after an assignment starts a new epoch (see AccountState.epochs).
_touched: set[str] = set()


@app.on_partitions_revoked.connect
async def _partitions_revoked(sender, revoked, **kwargs) -> None:
    forget_cached()


@app.on_rebalance_complete.connect
async def _new_assignment(sender, **kwargs) -> None:
    _touched.clear()
    forget_cached()


@app.agent(oms_input, concurrency=1)
async def oms(stream):
    """Apply each batch of commands and venue reports to their accounts, then send what they caused."""
    async for events in stream.take_events(settings.batch_max, settings.batch_wait_ms / 1000):
        await handle(events)


async def handle(events: list) -> None:
    """Process one batch: its state written once per key, then its outputs in event order; a failure stops the worker."""
    try:
        started = time.perf_counter()
        done = []
        with batch():
            for event in events:
                message = event.message
                with processing(event):
                    done.append((message, tracing.traced("oms", message, _process, _order_of) if tracing.ENABLED
                                         else _process(message)))
                if JSON_LOGS:
                    LOG_IDS.set(NO_IDS)
        await checkpoint("oms-state-written", len(events))
        for message, sends in done:
            await emit(sends, message.topic, message.partition)
        await checkpoint("oms-outputs-sent", len(events))
        _EVENTS.inc(len(events))
        _BATCH_SECONDS.observe(time.perf_counter() - started)
    except BaseException as exc:
        _touched.clear()  # the batch's epochs may never have been written: start new ones
        if isinstance(exc, Exception):
            _stop_at_once(exc, events)
        raise


_ORDER_ID = re.compile(rb'"order_id"\s*:\s*"([^"\\]{1,128})"')


def _order_of(message) -> str | None:
    """The order a venue report is about (the first one's, for several), read without decoding; None for a command."""
    if message.topic in _INPUTS:
        return None
    found = _ORDER_ID.search(message.value) if isinstance(message.value, bytes) else None
    return found.group(1).decode(errors="replace") if found else None


def _process(message) -> list[Send]:
    return process(message.topic, message.partition, message.offset, int(message.timestamp * 1000), message.key,
                   message.value)


EXIT_BATCH_FAILED = 70  # EX_SOFTWARE
_exit = os._exit


def _stop_at_once(exc: Exception, events: list) -> None:
    """End the worker process now: a batch failed (a bug, an invariant broken, the producer gone).

    Left to Faust, the exception would end the agent's `take_events` loop, whose `finally` acks
    the batch's events as if processed (a commit then moves past them: lost), and Faust would
    restart the agent on the next events. Exiting at once commits nothing more: the next start
    restores the tables from their changelogs (a prefix of them is always a consistent state)
    and reads the batch again.
    """
    first, last = events[0].message, events[-1].message
    log.critical("a batch of %d events (%s/%s@%s to %s/%s@%s) failed; the worker stops at once so that no offset "
                 "is committed past it, and reads it again when started", len(events), first.topic, first.partition,
                 first.offset, last.topic, last.partition, last.offset, exc_info=exc)
    logging.shutdown()
    _exit(EXIT_BATCH_FAILED)


def process(topic: str, partition: int, offset: int, ts: int, key: bytes | None, value: bytes) -> list[Send]:
    """Everything one input message does to the OMS state, and what it must send.

    A message is a command, or what one venue input told one account: one venue report or
    several, applied in order. It is read again (after a crash) when the account has
    recorded its offset, which it does with the message's last event.
    """
    decode, home = _INPUTS.get(topic, _REPORTS)
    is_command = home is not venue_reports
    try:
        events = decode(value)
    except ValidationError as exc:
        return _invalid(topic, partition, offset, ts, key, value, _describe(exc), is_command)
    account_id = events[0].account_id
    if JSON_LOGS:
        LOG_IDS.set((account_id, getattr(events[0], "order_id", None)))
    wanted_key = account_id.encode()
    if key != wanted_key or partition != partition_for(wanted_key):
        # A producer that keyed or hashed differently: move the message to its account's
        # partition rather than apply it where that account's state does not live.
        log.warning("re-keying %s message at %s/%s to account %s", topic, partition, offset, account_id)
        return [Send(home, wanted_key, value, partition_for(wanted_key))]
    account = load_account(account_id, cached=True)
    if account is None:
        if directory().get(account_id) is None:
            return _invalid(topic, partition, offset, ts, key, value, f"UNKNOWN_ACCOUNT: no account {account_id}", is_command)
    elif needs_migration(account):
        account = migrate(account)
    source = f"{topic}/{partition}"
    reread = account is not None and account.has_read(source, offset)
    sends: list[Send] = []
    for n, event in enumerate(events, start=1):
        read_at = (source, offset) if n == len(events) and not reread else None
        outcome, encoded = _apply(account_id, event, is_command, reread, read_at, ts)
        outputs = [_dead_letter(topic, partition, offset, ts, key, value, outcome.dead_letter)] \
            if outcome.dead_letter else []
        if tracing.ENABLED:
            tracing.describe(outcome.reports)
            if outcome.dead_letter:
                tracing.dead_lettered(outcome.dead_letter)
        outputs += [Send(executions, wanted_key, raw) for raw in encoded]
        outputs.extend(Send(venue_orders, v.symbol.encode(), v.model_dump_json().encode()) for v in outcome.venue)
        sends.extend(possible_duplicates(outputs) if outcome.replayed else outputs)
        _measure(outcome)
    return sends


def _apply(account_id: str, event, is_command: bool, reread: bool, read_at: tuple[str, int] | None, ts: int):
    """Apply one event to its account (already known to exist) and store what it did.

    Returns the outcome and its reports encoded, once: the same bytes go to the table and to `atlas.executions`.
    """
    account = load_account(account_id, cached=True) or new_account(directory().get(account_id), DEFAULT_LIMITS)
    fresh = account_id not in _touched
    if fresh:
        account = account.new_epoch()
    if needs_open_orders(event):
        orders = {o.order_id: o for o in open_orders(account)}
    else:
        orders = {oid: load_order(account, oid, cached=True) for oid in orders_needed(event)}
    market = current_market(instruments())
    if is_command:
        outcome = apply_command(account, orders, event, market, ts, history=history, reread=reread)
    else:
        outcome = apply_venue_report(account, orders, event, market, history=history, reread=reread)
    encoded = tuple(r.model_dump_json().encode() for r in outcome.reports)
    if not reread or fresh:
        _save(account, outcome, encoded, orders, read_at, ts)
    return outcome, encoded


def _save(account, outcome, encoded: tuple[bytes, ...], orders, read_at: tuple[str, int] | None, ts: int) -> None:
    """Store what an event did, with the offset it was read at and the closed orders it archives."""
    after = outcome.account
    if read_at is not None:
        source, offset = read_at
        after = after.model_copy(update={"offsets": {**after.offsets, source: offset}})
    after, archived = archive(after, ts, retention(), {o.order_id for o in outcome.orders}, account.closed)
    # A replay's reports are stored already.
    reports = () if outcome.replayed else tuple(zip(outcome.reports, encoded))
    save(after.model_copy(update={"seq": account.seq + 1}), outcome.orders, orders, reports, archived)
    _touched.add(account.account_id)


def _measure(outcome) -> None:
    """Record the event in this worker's telemetry; a failure there must never cost the event its sends."""
    if outcome.replayed:
        return  # counted when it was first applied
    try:
        now_ms = int(time.time() * 1000)
        process_telemetry.observe(outcome.reports, outcome.orders, now_ms, metrics.observe_report)
    except Exception:
        log.exception("telemetry failed; the event is unaffected")


def _measure_refusal(report) -> None:
    """Count the REJECTED report of a refused message; a failure there must never cost the message its sends."""
    try:
        metrics.observe_report(report)
    except Exception:
        log.exception("metrics failed; the message is unaffected")


def _describe(exc: ValidationError) -> str:
    problems = [f"{'.'.join(str(p) for p in e['loc']) or 'message'}: {e['msg']}" for e in exc.errors()[:5]]
    return "INVALID_MESSAGE: " + "; ".join(problems)


def _dead_letter(topic, partition, offset, ts, key, value, error) -> Send:
    letter = DeadLetter(topic=topic, partition=partition, offset=offset,
                        key=key.decode(errors="replace") if key is not None else None,
                        value=value.decode(errors="replace") if isinstance(value, bytes) else str(value),
                        error=error, ts=ts)
    _DEAD_LETTERS.inc()
    return Send(deadletter, key, letter.model_dump_json().encode())


def _invalid(topic, partition, offset, ts, key, value, error, is_command) -> list[Send]:
    """A dead letter, plus a REJECTED report when the message names an account and a new order."""
    sends = [_dead_letter(topic, partition, offset, ts, key, value, error)]
    if tracing.ENABLED:
        tracing.dead_lettered(error)
    named = _named_submission(value) if is_command else None
    if named is not None:
        account_id, client_order_id, command_id = named
        order_id = order_id_for(account_id, client_order_id)
        account = load_account(account_id)
        if account is None or load_order(account, order_id) is None:
            report = unknown_order_report(account_id, order_id, client_order_id, ExecType.REJECTED,
                                          command_id or f"{topic}-{partition}-{offset}", error, ts)
            _measure_refusal(report)
            if tracing.ENABLED:
                tracing.describe((report,))
            sends.append(Send(executions, account_id.encode(), report.model_dump_json().encode()))
    return sends


def _named_submission(value: bytes) -> tuple[str, str, str | None] | None:
    try:
        doc = json.loads(value)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(doc, dict) or doc.get("command", SubmitOrder.model_fields["command"].default) != "SubmitOrder":
        return None
    account_id, client_order_id, command_id = doc.get("account_id"), doc.get("client_order_id"), doc.get("command_id")
    if not (isinstance(account_id, str) and account_id and isinstance(client_order_id, str) and client_order_id):
        return None
    return account_id, client_order_id, command_id if isinstance(command_id, str) else None
