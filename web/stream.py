"""The live stream: `GET /api/v1/stream`, a WebSocket for the console and any other client.

The client's first message subscribes (browsers cannot set headers on a WebSocket):

    {"op": "subscribe", "key": "<api key>", "since": <offset or null>, "symbols": ["BTC-USD", ...]}

The server answers `{"type": "hello", "account_id", "partition", "since"}` and then pushes:
- `{"type": "execution", "offset": N, "report": {...}}`: the account's execution reports, read from
  its partition of the executions topic. `offset` is the resume token: a client that reconnects
  with `since` = its last offset + 1 receives every report it missed, and none twice. A report the
  OMS sent again after a restart carries `"poss_dup": true` (FIX PossDupFlag); its `exec_id` and
  `seq` are those of the first copy, which the client may have.
- `{"type": "balances", "balances": {...}}`: the account's balances, at subscribe and after reports.
- `{"type": "book" | "trade" | "mid", "symbol", ...}`: market data of the subscribed symbols
  (every symbol by default), as the venue publishes it, from the moment of subscribing.
Errors are `{"type": "error", "code", "detail"}`; a bad subscription then closes with code 4400
(malformed) or 4401 (unknown key), and one past the account's `ATLAS_STREAM_MAX_PER_ACCOUNT` open
streams with 4429. A worker serving `ATLAS_STREAM_MAX_SESSIONS` streams answers the handshake 503. A client that falls more than `MAX_BACKLOG` reports behind is
closed with 4408 (`SLOW_CONSUMER`): it resumes with `since`, and loses nothing.

Each worker reads the executions topic once, for all its subscribers (`ExecutionsFeed`), and the
market-data topic once (`MarketFeed`). A subscriber joins the live feed at the position the feed
has reached at that instant; what it asks for before that (a resume) is read once, by a consumer
of its own that stops where the live feed took over, so no report is lost or sent twice.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import Counter
from typing import Any, Iterator

from aiohttp import WSCloseCode, WSMsgType, web
from aiokafka import AIOKafkaConsumer, TopicPartition
from mode import Service

from atlas.agents.outputs import POSS_DUP
from atlas.analytics.market_history import MarketHistory
from atlas.core.accounts import Scope
from atlas.app import app
from atlas.runtime.kafka import client_options
from atlas.runtime.partitioning import partition_for
from atlas.runtime.reference import directory, instruments
from atlas.settings import settings
from atlas.web.account import balances_doc
from atlas.web.common import FORWARDED_HEADER, POWERS_OF_TWO, log_failed_sign_in, owner_url
from atlas.web.problems import ApiView, Problem

log = logging.getLogger(__name__)
SUBSCRIBE_TIMEOUT_S = 5.0  # for the first message, which holds a handshake slot until it comes
JOIN_TIMEOUT_S = 10.0  # for the executions feed to take a subscriber (it may first seek to the topic's end)
MAX_HANDSHAKES = 128  # connections not subscribed yet, per worker
MAX_HANDSHAKES_PER_ADDRESS = 8
KEY_RECHECK_S = 1.0  # how often an open stream checks that its key still signs in (revocation)
BALANCE_DEBOUNCE_S = 0.05
MARKET_QUEUE = 1_000  # a slow client loses old market data (the next tick replaces it), never reports
MAX_BACKLOG = 10_000  # reports waiting for one client before it is told to resume
PUMPS_STOP_S = 5.0  # for a closed stream's pumps to end once cancelled
CLOSE_ON_STOP_S = 2.0  # for the open streams to be told the worker stops (1001), before the web server stops


class MarketFeed(Service):
    """One consumer of the market-data topic per worker, fanned out to every stream subscribed and kept as history."""

    current: "MarketFeed | None" = None

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.queues: set[asyncio.Queue] = set()
        self.history = MarketHistory(instruments())
        self.refused = 0  # messages of the market-data topic not forwarded
        self._consumer: AIOKafkaConsumer | None = None

    async def on_start(self) -> None:
        # No group: every worker reads every partition, from now on.
        self._consumer = AIOKafkaConsumer(settings.topic("marketdata"), **client_options(),
                                          group_id=None, auto_offset_reset="latest", enable_auto_commit=False,
                                          isolation_level="read_committed", client_id=f"{settings.app_id}-feed")
        await self._consumer.start()
        MarketFeed.current = self

    async def on_stop(self) -> None:
        MarketFeed.current = None
        if self._consumer is not None:
            await self._consumer.stop()

    @Service.task
    async def _fan_out(self) -> None:
        while not self.should_stop:
            try:
                fetched = await self._consumer.getmany(timeout_ms=500)
            except Exception as exc:  # a broker hiccup: the feed is best effort, the next tick follows
                log.warning("market feed: %r", exc)
                await self.sleep(1.0)
                continue
            for messages in fetched.values():
                for m in messages:
                    # The key is the symbol: each stream filters on it without parsing the value again.
                    item = (m.key.decode(errors="replace") if m.key else "", m.value.decode(errors="replace"))
                    if not self.history.record(*item):  # only what the venue writes reaches a browser
                        self.refused += 1
                        if self.refused in POWERS_OF_TWO:
                            log.warning("market feed: %d messages that are not the venue's market data skipped, "
                                        "the latest at %s/%d offset %d", self.refused, m.topic, m.partition, m.offset)
                        continue
                    for queue in list(self.queues):
                        if queue.full():
                            queue.get_nowait()
                        queue.put_nowait(item)


app.service(MarketFeed)


class Overflow:
    """Put in a subscriber's queue, last, when it fell `MAX_BACKLOG` reports behind and was dropped."""


class FanOut:
    """Which subscriber gets which record of the executions topic, and from which offset on.

    `subscribe` returns the subscriber's queue and `live_from`: every record at or past that offset
    of the partition reaches the queue, every record before it was delivered before the call. The
    caller reads what it wants before `live_from` itself. No `await` runs inside these methods, so a
    subscription falls exactly between two deliveries.
    """

    def __init__(self) -> None:
        self.positions: dict[int, int] = {}  # partition -> the next offset to deliver
        self._queues: dict[tuple[int, bytes], set[asyncio.Queue]] = {}

    def subscribe(self, partition: int, key: bytes) -> tuple[asyncio.Queue, int]:
        queue: asyncio.Queue = asyncio.Queue()
        self._queues.setdefault((partition, key), set()).add(queue)
        return queue, self.positions[partition]

    def unsubscribe(self, partition: int, key: bytes, queue: asyncio.Queue) -> None:
        queues = self._queues.get((partition, key))
        if queues is not None:
            queues.discard(queue)
            if not queues:
                del self._queues[(partition, key)]

    def subscribed(self) -> bool:
        return bool(self._queues)

    def deliver(self, partition: int, records: list) -> None:
        """Hand out a fetched batch of one partition, in offset order.

        Records before the partition's position were handed out already, or come from a fetch that
        was under way when the feed moved to the topic's end: they are dropped.
        """
        position = self.positions.get(partition, 0)
        for record in records:
            if record.offset < position:
                continue
            for queue in list(self._queues.get((partition, record.key), ())):
                if queue.qsize() >= MAX_BACKLOG:
                    self.unsubscribe(partition, record.key, queue)
                    queue.put_nowait(Overflow)
                else:
                    queue.put_nowait(record)
        if records:
            self.positions[partition] = max(position, records[-1].offset + 1)


class ExecutionsFeed(Service):
    """One consumer of the executions topic per worker, fanned out to every subscriber.

    It reads only while someone subscribes: an idle worker spends nothing on it. The first
    subscriber after an idle spell starts it at the topic's end.
    """

    current: "ExecutionsFeed | None" = None

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fan_out = FanOut()
        self.consumer: AIOKafkaConsumer | None = None
        self._wanted = asyncio.Event()  # set while anyone subscribes
        self._lock = asyncio.Lock()
        self._catching_up: asyncio.Future | None = None  # the seek to the end a join started

    async def on_start(self) -> None:
        # No group: every partition of the topic.
        self.consumer = AIOKafkaConsumer(settings.topic("executions"), **client_options(),
                                         group_id=None, auto_offset_reset="latest", enable_auto_commit=False,
                                         isolation_level="read_committed", client_id=f"{settings.app_id}-executions")
        await self.consumer.start()
        ExecutionsFeed.current = self

    async def on_stop(self) -> None:
        ExecutionsFeed.current = None
        await close_open_streams()
        self._wanted.set()  # let the reading task see that it should stop
        if self.consumer is not None:
            await self.consumer.stop()

    async def join(self, partition: int, key: bytes) -> tuple[asyncio.Queue, int]:
        """Subscribe to an account's reports: its queue and `live_from` (see `FanOut.subscribe`)."""
        async with self._lock:
            if not self._wanted.is_set():
                # Shielded: a subscriber that gives up (its timeout) leaves the seek running for the next one,
                # which a slow broker would otherwise restart from scratch each time, and never finish.
                stale = self._catching_up is not None and self._catching_up.done() and (
                    self._catching_up.cancelled() or self._catching_up.exception() is not None)
                if self._catching_up is None or stale:
                    self._catching_up = asyncio.ensure_future(self._to_the_end())
                await asyncio.shield(self._catching_up)
                self._catching_up = None
                self._wanted.set()
            return self.fan_out.subscribe(partition, key)

    def leave(self, partition: int, key: bytes, queue: asyncio.Queue) -> None:
        self.fan_out.unsubscribe(partition, key, queue)
        if not self.fan_out.subscribed():
            self._wanted.clear()
            self.consumer.pause(*self.consumer.assignment())  # no fetching in the background either

    async def _to_the_end(self) -> None:
        while not (assigned := self.consumer.assignment()):  # the topic's metadata is not in yet
            await asyncio.sleep(0.2)
        await self.consumer.seek_to_end(*assigned)
        self.consumer.resume(*assigned)
        for tp in assigned:
            self.fan_out.positions[tp.partition] = await self.consumer.position(tp)

    @Service.task
    async def _fan_out(self) -> None:
        while not self.should_stop:
            await self._wanted.wait()
            if self.should_stop:
                return
            try:
                fetched = await self.consumer.getmany(timeout_ms=500)
            except Exception as exc:  # a broker hiccup: the consumer resumes where it was
                log.warning("executions feed: %r", exc)
                await self.sleep(1.0)
                continue
            for tp, records in fetched.items():
                self.fan_out.deliver(tp.partition, records)


app.service(ExecutionsFeed)


@app.page("/api/v1/stream")
class StreamView(ApiView):
    """The account's execution reports (resumable by offset) and balances, and live market data."""

    async def get(self, request: Any) -> Any:
        ws = web.WebSocketResponse(heartbeat=20)
        if not ws.can_prepare(request).ok:
            if "upgrade" in request.headers.get("Connection", "").lower():
                raise Problem(400, "BAD_HANDSHAKE", "the WebSocket handshake is malformed")
            raise Problem(426, "UPGRADE_REQUIRED", "this is a WebSocket: connect with an Upgrade: websocket handshake",
                          headers={"Upgrade": "websocket", "Connection": "Upgrade"})
        address = request.remote or ""
        full = SLOTS.full(address)
        if full:
            raise Problem(503, "TOO_MANY_STREAMS", full, headers={"Retry-After": "5"})
        OPEN.add(ws)
        try:
            with SLOTS.pending(address):  # until it subscribes, or SUBSCRIBE_TIMEOUT_S
                await ws.prepare(request)
                subscription = await _subscription(ws)
            if subscription is None:
                pass
            elif SLOTS.subscribed[subscription[0]] >= settings.stream_max_per_account:
                await _refuse(ws, 4429, "TOO_MANY_STREAMS", f"an account may hold {settings.stream_max_per_account} "
                              "streams at once: close one first")
            else:
                with SLOTS.session(subscription[0]):
                    await Session(ws, *subscription).run()
        except ConnectionResetError:
            log.debug("stream closed while sending (the client left, or the worker stops)")
        finally:
            OPEN.discard(ws)
            if ws.prepared:
                await ws.close()
        return ws


OPEN: set[web.WebSocketResponse] = set()  # the streams this worker holds, handshaking or subscribed


async def close_open_streams() -> None:
    """Tell every open stream that the worker stops (1001 GOING_AWAY: connect to another worker, or again later).

    Its handler then ends, so the web server's shutdown does not wait for it (aiohttp waits up to a minute).
    """
    prepared = [ws for ws in OPEN if ws.prepared]  # a handshake not answered yet ends on its own
    if prepared:
        log.info("stopping: closing %d open streams (1001)", len(prepared))
        closing = [asyncio.ensure_future(ws.close(code=WSCloseCode.GOING_AWAY, message=b"the worker is stopping"))
                   for ws in prepared]
        done, _ = await asyncio.wait(closing, timeout=CLOSE_ON_STOP_S)  # a client that does not answer is left
        _collected(done)


class StreamSlots:
    """The streams a worker holds: subscribed ones per account, and handshakes not subscribed yet per address.

    Subscribed streams count against `ATLAS_STREAM_MAX_SESSIONS`; handshakes have their own small caps,
    so connections that never subscribe (no key needed for that) cannot take the subscribers' places.
    """

    def __init__(self) -> None:
        self.subscribed: Counter[str] = Counter()
        self.handshaking: Counter[str] = Counter()

    def full(self, address: str) -> str | None:
        """Why a new connection from `address` is refused now, or None."""
        if self.subscribed.total() >= settings.stream_max_sessions:
            return f"this worker serves {settings.stream_max_sessions} streams at most: try another worker, or later"
        if self.handshaking.total() >= MAX_HANDSHAKES or self.handshaking[address] >= MAX_HANDSHAKES_PER_ADDRESS:
            return "too many connections waiting to subscribe: subscribe within the first message, then connect more"
        return None

    def pending_count(self) -> int:
        """Connections that have not subscribed yet."""
        return self.handshaking.total()

    @contextlib.contextmanager
    def pending(self, address: str) -> Iterator[None]:
        with self._held(self.handshaking, address):
            yield

    @contextlib.contextmanager
    def session(self, account_id: str) -> Iterator[None]:
        with self._held(self.subscribed, account_id):
            yield

    @staticmethod
    @contextlib.contextmanager
    def _held(counts: Counter[str], key: str) -> Iterator[None]:
        counts[key] += 1
        try:
            yield
        finally:
            counts[key] -= 1
            if not counts[key]:
                del counts[key]


SLOTS = StreamSlots()


async def _subscription(ws: web.WebSocketResponse) -> tuple[str, str, int | None, set[str]] | None:
    """The first message, checked: (account, key, since, symbols), or None after telling the client why."""
    try:
        doc = await ws.receive_json(timeout=SUBSCRIBE_TIMEOUT_S)
    except (asyncio.TimeoutError, TypeError, ValueError):
        return await _refuse(ws, 4400, "BAD_SUBSCRIPTION", "send {\"op\": \"subscribe\", \"key\": ...} first, as JSON")
    if not isinstance(doc, dict) or doc.get("op") != "subscribe" or not isinstance(doc.get("key"), str):
        return await _refuse(ws, 4400, "BAD_SUBSCRIPTION", "the first message must be {\"op\": \"subscribe\", \"key\": ...}")
    caller = directory().authenticate(doc["key"])
    if caller is None:
        log_failed_sign_in("stream subscription", doc["key"])
        return await _refuse(ws, 4401, "UNAUTHENTICATED", "the API key is not valid")
    if not caller.may(Scope.READ):
        return await _refuse(ws, 4403, "FORBIDDEN", "this key may not read")
    since = doc.get("since")
    if since is not None and (not isinstance(since, int) or isinstance(since, bool) or since < 0):
        return await _refuse(ws, 4400, "BAD_SUBSCRIPTION", "since must be an offset (a whole number) or null")
    known = set(instruments())
    symbols = doc.get("symbols") or sorted(known)
    if not isinstance(symbols, list) or not all(isinstance(s, str) for s in symbols) or not set(symbols) <= known:
        return await _refuse(ws, 4400, "UNKNOWN_SYMBOL", f"symbols must be a list of: {', '.join(sorted(known))}")
    return caller.account_id, doc["key"], since, set(symbols)


async def _refuse(ws: web.WebSocketResponse, code: int, error: str, detail: str) -> None:
    if ws.closed:  # closed already (the worker stops): nothing to tell
        return None
    await ws.send_json({"type": "error", "code": error, "detail": detail})
    await ws.close(code=code, message=error.encode())
    return None


async def _stop(pumps: list[asyncio.Task], account_id: str) -> None:
    """Cancel a session's pumps and wait until they end, cancelling again those that swallowed a cancel.

    A cancel that lands in aiohttp's `send_json` can be swallowed there: the pump went on to wait
    for its queue, which nobody fills any more, and its session held a slot until the worker
    stopped (and made the web server's shutdown wait for it).
    """
    for wait_s in (1.0, PUMPS_STOP_S):
        for task in pumps:
            task.cancel()
        done, pending = await asyncio.wait(pumps, timeout=wait_s)
        _collected(done)
        if not pending:
            return
        pumps = list(pending)
    log.warning("stream of %s: %s did not stop when cancelled twice", account_id,
                ", ".join(sorted(t.get_coro().__qualname__ for t in pumps)))


def _collected(tasks: set[asyncio.Task]) -> None:
    """Take the exceptions of finished tasks (a send to a closing socket fails, as expected), so none goes unread."""
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            log.debug("stream task ended: %r", task.exception())


class Session:
    """One subscribed connection: three pumps into one socket, until the client leaves."""

    def __init__(self, ws: web.WebSocketResponse, account_id: str, key: str, since: int | None, symbols: set[str]):
        self.ws, self.account_id, self.key, self.since, self.symbols = ws, account_id, key, since, symbols
        self.partition = TopicPartition(settings.topic("executions"), partition_for(account_id.encode()))
        self._balances_due = asyncio.Event()

    async def run(self) -> None:
        feed = ExecutionsFeed.current
        if feed is None:
            return await _refuse(self.ws, 1013, "UNAVAILABLE", "the worker is starting or stopping: try again")
        wanted = self.account_id.encode()
        try:
            reports, live_from = await asyncio.wait_for(feed.join(self.partition.partition, wanted), JOIN_TIMEOUT_S)
        except asyncio.TimeoutError:
            return await _refuse(self.ws, 1013, "UNAVAILABLE", "the executions topic is not readable yet: try again")
        market: asyncio.Queue = asyncio.Queue(MARKET_QUEUE)
        market_feed = MarketFeed.current
        if market_feed is not None:
            market_feed.queues.add(market)
        try:
            start = await self._start_offset(feed.consumer)
            await self.ws.send_json({"type": "hello", "account_id": self.account_id,
                                     "partition": self.partition.partition, "since": start})
            self._balances_due.set()
            pumps = [asyncio.create_task(p) for p in (self._reports(reports, start, live_from), self._market(market),
                                                      self._balances())]
            try:
                await self._until_closed(pumps[0])
            finally:
                await _stop(pumps, self.account_id)
        finally:
            feed.leave(self.partition.partition, wanted, reports)
            if market_feed is not None:
                market_feed.queues.discard(market)

    async def _start_offset(self, consumer: AIOKafkaConsumer) -> int:
        """From `since` if the broker still has it, else from its oldest report (a resume), or from now."""
        first = (await consumer.beginning_offsets([self.partition]))[self.partition]
        end = (await consumer.end_offsets([self.partition]))[self.partition]
        return end if self.since is None else min(max(self.since, first), end)

    async def _until_closed(self, reports: asyncio.Task) -> None:
        """Until the client leaves, the report pump ends (a client too slow to keep up), or the key is revoked."""
        reading = asyncio.ensure_future(self._read_until_closed())
        revoked = asyncio.ensure_future(self._until_key_revoked())
        try:
            await asyncio.wait([reading, reports, revoked], return_when=asyncio.FIRST_COMPLETED)
        finally:
            reading.cancel()
            revoked.cancel()
        if revoked.done() and not revoked.cancelled():
            await _refuse(self.ws, 4401, "UNAUTHENTICATED", "the API key no longer signs in (revoked)")
        elif reports.done() and not reports.cancelled() and reports.exception() is None:
            await _refuse(self.ws, 4408, "SLOW_CONSUMER",
                          f"more than {MAX_BACKLOG} reports behind: subscribe again with since = your last offset + 1")

    async def _until_key_revoked(self) -> None:
        while (found := directory().authenticate(self.key)) is not None and found.may(Scope.READ):
            await asyncio.sleep(KEY_RECHECK_S)

    async def _read_until_closed(self) -> None:
        async for message in self.ws:  # the client says nothing more; reading notices its close
            if message.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                return

    async def _reports(self, live: asyncio.Queue, start: int, live_from: int) -> None:
        """What the client missed (read once, up to where the live feed took over), then the live feed's reports."""
        if start < live_from:
            await self._catch_up(start, live_from)
        while True:
            record = await live.get()
            if record is Overflow:
                return
            if record.offset >= start:
                await self._send_report(record)
                if live.empty():
                    self._balances_due.set()

    async def _catch_up(self, start: int, end: int) -> None:
        consumer = AIOKafkaConsumer(**client_options(), group_id=None,
                                    enable_auto_commit=False, isolation_level="read_committed",
                                    client_id=f"{settings.app_id}-stream-resume")
        await consumer.start()
        try:
            consumer.assign([self.partition])
            consumer.seek(self.partition, start)
            wanted = self.account_id.encode()
            while await consumer.position(self.partition) < end:
                fetched = await consumer.getmany(self.partition, timeout_ms=1000)
                for record in fetched.get(self.partition, ()):
                    if record.offset >= end:
                        break
                    if record.key == wanted:  # not another account of the same partition
                        await self._send_report(record)
            self._balances_due.set()
        finally:
            await consumer.stop()

    async def _send_report(self, record: Any) -> None:
        doc = {"type": "execution", "offset": record.offset, "report": json.loads(record.value)}
        if POSS_DUP[0] in (record.headers or ()):
            doc["poss_dup"] = True  # sent again after a restart: the client may have it already
        await self.ws.send_json(doc)

    async def _market(self, queue: asyncio.Queue) -> None:
        while True:
            symbol, text = await queue.get()
            if symbol in self.symbols:
                await self.ws.send_str(text)

    async def _balances(self) -> None:
        """Push the balances after each burst of reports (read through the API: the owner has them)."""
        while True:
            await self._balances_due.wait()
            await asyncio.sleep(BALANCE_DEBOUNCE_S)
            self._balances_due.clear()
            try:
                balances = await self._read_balances()
            except Exception as exc:  # the owner is moving: the next report asks again (never log the request: its key)
                log.info("stream: balances of %s unavailable: %s", self.account_id, type(exc).__name__)
                continue
            if balances is not None:
                await self.ws.send_json({"type": "balances", "balances": balances})

    async def _read_balances(self) -> dict | None:
        """From this worker's table when it owns the account (no request at all), else from the owner's API."""
        owner = owner_url(self.account_id)
        if owner is None:
            return balances_doc(self.account_id)["balances"]
        async with app.http_client.get(f"{owner}/api/v1/balances",
                                       headers={"X-API-Key": self.key, FORWARDED_HEADER: "1"}) as response:
            return (await response.json())["balances"] if response.status == 200 else None
