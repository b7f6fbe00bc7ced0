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
(malformed) or 4401 (unknown key).
"""
from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiohttp import WSMsgType, web
from aiokafka import AIOKafkaConsumer, TopicPartition
from mode import Service

from atlas.agents.outputs import POSS_DUP_HEADER
from atlas.analytics.market_history import MarketHistory
from atlas.app import app
from atlas.runtime.partitioning import partition_for
from atlas.runtime.reference import directory, instruments
from atlas.settings import settings
from atlas.web.problems import ApiView

log = logging.getLogger(__name__)
SUBSCRIBE_TIMEOUT_S = 10.0
BALANCE_DEBOUNCE_S = 0.05
MARKET_QUEUE = 1_000  # a slow client loses old market data (the next tick replaces it), never reports


class MarketFeed(Service):
    """One consumer of the market-data topic per worker, fanned out to every stream subscribed and kept as history."""

    current: "MarketFeed | None" = None

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.queues: set[asyncio.Queue] = set()
        self.history = MarketHistory(instruments())
        self._consumer: AIOKafkaConsumer | None = None

    async def on_start(self) -> None:
        # No group: every worker reads every partition, from now on.
        self._consumer = AIOKafkaConsumer(settings.topic("marketdata"), bootstrap_servers=settings.bootstrap_servers,
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
                    # The key is the symbol: each stream filters on it without parsing the value.
                    item = (m.key.decode() if m.key else None, m.value.decode())
                    if item[0] is not None:
                        self.history.record(*item)
                    for queue in list(self.queues):
                        if queue.full():
                            queue.get_nowait()
                        queue.put_nowait(item)


app.service(MarketFeed)


@app.page("/api/v1/stream")
class StreamView(ApiView):
    """The account's execution reports (resumable by offset) and balances, and live market data."""

    async def get(self, request: Any) -> Any:
        ws = web.WebSocketResponse(heartbeat=20)
        await ws.prepare(request)
        try:
            subscription = await _subscription(ws)
            if subscription is not None:
                await Session(ws, *subscription).run()
        finally:
            await ws.close()
        return ws


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
        return await _refuse(ws, 4401, "UNAUTHENTICATED", "the API key is not valid")
    since = doc.get("since")
    if since is not None and (not isinstance(since, int) or isinstance(since, bool) or since < 0):
        return await _refuse(ws, 4400, "BAD_SUBSCRIPTION", "since must be an offset (a whole number) or null")
    known = set(instruments())
    symbols = doc.get("symbols") or sorted(known)
    if not isinstance(symbols, list) or not set(symbols) <= known:
        return await _refuse(ws, 4400, "UNKNOWN_SYMBOL", f"symbols must be a list of: {', '.join(sorted(known))}")
    return caller.account_id, doc["key"], since, set(symbols)


async def _refuse(ws: web.WebSocketResponse, code: int, error: str, detail: str) -> None:
    await ws.send_json({"type": "error", "code": error, "detail": detail})
    await ws.close(code=code, message=error.encode())
    return None


class Session:
    """One subscribed connection: three pumps into one socket, until the client leaves."""

    def __init__(self, ws: web.WebSocketResponse, account_id: str, key: str, since: int | None, symbols: set[str]):
        self.ws, self.account_id, self.key, self.since, self.symbols = ws, account_id, key, since, symbols
        self.partition = TopicPartition(settings.topic("executions"), partition_for(account_id.encode()))
        self._balances_due = asyncio.Event()

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers, group_id=None,
                                    enable_auto_commit=False, isolation_level="read_committed",
                                    client_id=f"{settings.app_id}-stream")
        await consumer.start()
        queue: asyncio.Queue = asyncio.Queue(MARKET_QUEUE)
        feed = MarketFeed.current
        if feed is not None:
            feed.queues.add(queue)
        try:
            consumer.assign([self.partition])
            start = await self._start_offset(consumer)
            await self.ws.send_json({"type": "hello", "account_id": self.account_id,
                                     "partition": self.partition.partition, "since": start})
            self._balances_due.set()
            pumps = [asyncio.create_task(p) for p in (self._reports(consumer), self._market(queue), self._balances())]
            try:
                await self._until_closed()
            finally:
                for task in pumps:
                    task.cancel()
                await asyncio.gather(*pumps, return_exceptions=True)
        finally:
            if feed is not None:
                feed.queues.discard(queue)
            await consumer.stop()

    async def _start_offset(self, consumer: AIOKafkaConsumer) -> int:
        """From `since` if the broker still has it, else from its oldest report (a resume), or from now."""
        first = (await consumer.beginning_offsets([self.partition]))[self.partition]
        end = (await consumer.end_offsets([self.partition]))[self.partition]
        start = end if self.since is None else min(max(self.since, first), end)
        consumer.seek(self.partition, start)
        return start

    async def _until_closed(self) -> None:
        async for message in self.ws:  # the client says nothing more; reading notices its close
            if message.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                return

    async def _reports(self, consumer: AIOKafkaConsumer) -> None:
        wanted = self.account_id.encode()
        while True:
            fetched = await consumer.getmany(self.partition, timeout_ms=1000)
            sent = False
            for m in fetched.get(self.partition, ()):
                if m.key != wanted:
                    continue  # another account of the same partition
                doc = {"type": "execution", "offset": m.offset, "report": json.loads(m.value)}
                if (POSS_DUP_HEADER, b"Y") in (m.headers or ()):
                    doc["poss_dup"] = True  # sent again after a restart: the client may have it already
                await self.ws.send_json(doc)
                sent = True
            if sent:
                self._balances_due.set()

    async def _market(self, queue: asyncio.Queue) -> None:
        while True:
            symbol, text = await queue.get()
            if symbol in self.symbols:
                await self.ws.send_str(text)

    async def _balances(self) -> None:
        """Push the balances after each burst of reports (read through the API: the owner has them)."""
        url = f"{str(app.conf.canonical_url).rstrip('/')}/api/v1/balances"
        while True:
            await self._balances_due.wait()
            await asyncio.sleep(BALANCE_DEBOUNCE_S)
            self._balances_due.clear()
            try:
                async with app.http_client.get(url, headers={"X-API-Key": self.key}) as response:
                    doc = await response.json()
            except Exception as exc:  # the owner is moving: the next report asks again
                log.info("stream: balances of %s unavailable: %r", self.account_id, exc)
                continue
            if response.status == 200:
                await self.ws.send_json({"type": "balances", "balances": doc["balances"]})
