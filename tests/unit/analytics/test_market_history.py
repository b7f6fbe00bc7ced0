"""A worker's market history: what it keeps of each known symbol's market data, and the flow per minute."""
from __future__ import annotations

import json

import pytest

from atlas.analytics.market_history import HISTORY_S, MarketHistory, flow_per_minute, market_message
from atlas.core.values import Side
from tests.helpers import T0, D


def message(**doc) -> str:
    return json.dumps(doc)


def test_record_keeps_mids_trades_the_latest_book_and_a_spread_per_second():
    history = MarketHistory(["BTC-USD"])
    history.record("BTC-USD", message(type="mid", symbol="BTC-USD", mid="100.25", ts=T0))
    history.record("BTC-USD", message(type="trade", symbol="BTC-USD", price="100.5", quantity="0.2",
                                      aggressor="BUY", ts=T0 + 10))
    for ts, ask in ((T0, "100.5"), (T0 + 400, "100.4"), (T0 + 1000, "100.3")):
        history.record("BTC-USD", message(type="book", symbol="BTC-USD", bids=[["100", "1"]], asks=[[ask, "1"]],
                                          mid="100.2", halted=False, ts=ts))
    btc = history.get("BTC-USD")
    assert [m.mid for m in btc.mids] == [D("100.25")]
    assert [(t.price, t.aggressor) for t in btc.trades] == [(D("100.5"), Side.BUY)]
    assert btc.book.asks[0].price == D("100.3") and btc.halted is False
    # The last book of each second: 40 bps (100.4 vs 100) in the first, 30 in the next.
    assert [bps for _, bps in btc.spreads] == [D("39.92"), D("29.96")]


def test_record_ignores_unknown_symbols_and_garbage():
    history = MarketHistory(["BTC-USD"])
    history.record("DOGE-USD", message(type="mid", symbol="DOGE-USD", mid="1", ts=T0))
    history.record("BTC-USD", "not json")
    history.record("BTC-USD", message(type="mid", mid="lots", ts=T0))
    history.record("BTC-USD", message(type="trade", price="1", quantity="1", aggressor="SIDEWAYS", ts=T0))
    assert set(history.symbols) == {"BTC-USD"} and not history.get("BTC-USD").mids
    assert not history.get("BTC-USD").trades and history.get("DOGE-USD").book is None


def test_mids_older_than_the_history_are_forgotten():
    history = MarketHistory(["BTC-USD"])
    for ts in (T0, T0 + HISTORY_S * 1000, T0 + HISTORY_S * 1000 + 1):
        history.record("BTC-USD", message(type="mid", symbol="BTC-USD", mid="100", ts=ts))
    assert [m.ts for m in history.get("BTC-USD").mids] == [T0 + HISTORY_S * 1000, T0 + HISTORY_S * 1000 + 1]


def test_flow_per_minute_sums_each_side_by_minute_from_the_start():
    history = MarketHistory(["BTC-USD"])
    minute = T0 // 60_000 * 60_000
    for offset, side, qty in ((0, "BUY", "1"), (10_000, "SELL", "0.5"), (30_000, "BUY", "0.25"), (60_000, "SELL", "2"),
                              (-60_000, "BUY", "9")):
        history.record("BTC-USD", message(type="trade", symbol="BTC-USD", price="100", quantity=qty, aggressor=side,
                                          ts=minute + offset))
    assert flow_per_minute(history.get("BTC-USD").trades, since_ms=minute) == [
        {"t": minute // 1000, "buy": "1.25", "sell": "0.5"}, {"t": minute // 1000 + 60, "buy": "0", "sell": "2"}]


BOOK = {"type": "book", "symbol": "BTC-USD", "bids": [["100", "1"]], "asks": [["100.5", "2"]], "mid": "100.25",
        "halted": False, "ts": T0}


@pytest.mark.parametrize("doc", [
    BOOK,
    {"type": "mid", "symbol": "BTC-USD", "mid": "100.25", "ts": T0},
    {"type": "trade", "symbol": "BTC-USD", "price": "100.5", "quantity": "0.2", "aggressor": "SELL", "ts": T0},
])
def test_the_venues_market_data_passes_as_it_is(doc):
    assert market_message("BTC-USD", json.dumps(doc)) == doc


@pytest.mark.parametrize("change", [
    {"bids": [["100", "<img src=x onerror=alert(1)>"]]},  # markup where a quantity goes (issue 14, finding 5)
    {"asks": [["<b>100</b>", "1"]]},
    {"mid": "1e5"}, {"mid": 100.25}, {"mid": "١٠٠"},
    {"bids": [["100", "1", "extra"]]}, {"bids": "100"}, {"bids": [["100", "1"]] * 101},
    {"halted": "no"}, {"ts": "now"}, {"ts": True}, {"ts": -1},
    {"symbol": "ETH-USD"},  # not the key's symbol
    {"note": "<script>alert(1)</script>"},  # a field the venue does not write
    {"type": "news"},
])
def test_anything_else_on_the_market_data_topic_is_refused(change):
    assert market_message("BTC-USD", json.dumps({**BOOK, **change})) is None


def test_a_refused_message_is_not_recorded():
    history = MarketHistory(["BTC-USD"])
    assert history.record("BTC-USD", json.dumps(BOOK)) is True
    assert history.record("BTC-USD", json.dumps({**BOOK, "asks": [["1", "<i>"]], "ts": T0 + 1})) is False
    assert history.get("BTC-USD").book.asks[0].price == D("100.5")
