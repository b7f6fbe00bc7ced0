"""The `venue` agent's `process` over an in-memory venue table: what a copy of a request does."""
from __future__ import annotations

import json
from typing import Iterator

import pytest

from atlas.agents import venue as agent
from atlas.agents.outputs import POSS_DUP, possible_duplicates
from atlas.core.events import VenueTick, venue_reports_in
from atlas.core.values import OrderType, Side, TimeInForce
from atlas.runtime.partitioning import partition_for
from atlas.tables import venue as tables
from atlas.venue.storage import outbox_key, record_key, request_key
from tests.helpers import T0, venue_request
from tests.unit.agents.oms_harness import MemoryTable

BTC = b"BTC-USD"


@pytest.fixture
def table(monkeypatch) -> Iterator[MemoryTable]:
    table = MemoryTable()
    monkeypatch.setattr(tables, "venue_table", table)
    tables.forget_cached()
    yield table
    tables.forget_cached()


def feed(offset: int, message) -> list:
    return agent.process(partition_for(BTC), offset, T0, BTC, message.model_dump_json().encode())


def reports(sends: list) -> list:
    return [report for send in sends if send.topic is agent.venue_reports for report in venue_reports_in(send.value)]


def test_a_request_sent_again_gets_its_first_reports_again_and_trades_nothing_twice(table):
    feed(0, VenueTick(request="tick", symbol="BTC-USD", ts=T0))  # the maker quotes
    buy = venue_request("o-1", order_type=OrderType.MARKET, tif=TimeInForce.IOC, price=None, quantity="0.0100",
                        side=Side.BUY, request_id="o-1-1")
    first = feed(1, buy)
    assert [r.kind.value for r in reports(first)][-1] == "FILL"
    venue = tables._venues["BTC-USD"][0]
    assert "o-1" not in venue.book.orders  # it traded, and left the book
    trades, stored = venue.trade_count, dict(table)

    again = feed(2, buy)  # the OMS, restarted, sends it again: a new offset, the same request id
    assert again == possible_duplicates(first) and all(send.headers == POSS_DUP for send in again)
    assert tables._venues["BTC-USD"][0].trade_count == trades  # no second trade against the book
    assert dict(table) == stored  # nothing applied, nothing written

    tables.forget_cached()  # and so after a restart of the venue too
    assert feed(3, buy) == possible_duplicates(first)
    # And after a crash that stopped the save before the request's id: the record's delta names it.
    del table[request_key("BTC-USD", "o-1-1").encode()]
    tables.forget_cached()
    assert feed(4, buy) == possible_duplicates(first)
    assert int(table[request_key("BTC-USD", "o-1-1").encode()]) == 1
    assert json.loads(table[record_key("BTC-USD").encode()])["offset"] == 1


def test_request_ids_are_dropped_with_the_outboxes_they_point_to(table, monkeypatch):
    monkeypatch.setattr(tables, "OUTBOX_KEEP", 2)
    feed(0, venue_request("o-1", price="60000.00", request_id="o-1-1"))  # rest, far from the market
    feed(1, venue_request("o-2", price="60000.00", request_id="o-2-1"))
    venue = tables._venues["BTC-USD"][0]
    venue.tick_no = 999  # the next tick is the thousandth: it prunes what is 2 offsets or more behind it
    feed(3, VenueTick(request="tick", symbol="BTC-USD", ts=T0 + 3))
    assert outbox_key("BTC-USD", 0).encode() not in table and request_key("BTC-USD", "o-1-1").encode() not in table
    assert outbox_key("BTC-USD", 1).encode() in table and int(table[request_key("BTC-USD", "o-2-1").encode()]) == 1
    # Past the window a copy is a new request: this one is refused as a duplicate order (it still rests).
    assert [r.reason for r in reports(feed(4, venue_request("o-1", price="60000.00", request_id="o-1-1")))] \
        == ["DUPLICATE_ORDER"]
