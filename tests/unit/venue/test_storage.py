"""How a venue is stored: per-message writes that stay small, and a rebuild from any prefix of them."""
from __future__ import annotations

import json
from decimal import Decimal

import pytest

from atlas.core.values import Side, TimeInForce
from atlas.venue.exchange import RECENT_TRADES, SymbolVenue
from atlas.venue.market_maker import MarketParams
from atlas.venue.storage import (
    Stored, Write, bucket_prefix, order_key, order_prefix, rebuild, record_key, request_key, request_prefix,
    save_writes,
)
from tests.book_model import assert_book_invariants
from tests.helpers import T0, btc_venue as venue, instruments, venue_request as request

BTC = instruments()["BTC-USD"]
ACTIVE = MarketParams(volatility=Decimal("0.002"), spread_bps=Decimal(4), liquidity=50, levels=5)


class Store:
    """A table as a dict, fed the writes in order, and read back as the table module reads it."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.log: list[Write] = []

    def apply(self, writes: list[Write]) -> None:
        for key, value in writes:
            self.log.append((key, value))
            if value is None:
                self.data.pop(key, None)
            else:
                self.data[key] = value

    def read(self, symbol: str = "BTC-USD") -> tuple[SymbolVenue, Stored, list[Write]]:
        def under(prefix: str) -> list[tuple[str, bytes]]:
            return sorted((k, v) for k, v in self.data.items() if k.startswith(prefix))
        return rebuild(BTC, self.data[record_key(symbol)], under(order_prefix(symbol)), under(bucket_prefix(symbol)))


def state(v: SymbolVenue) -> tuple:
    return v.record(), sorted(v.client_orders()), list(v.recent_trades)


def trading(v: SymbolVenue, n: int) -> None:
    """One message of a session: a tick or an order that rests, crosses or cancels."""
    if n % 3 == 0:
        v.tick(T0 + 250 * n)
    elif n % 3 == 1:
        side = Side.BUY if n % 2 else Side.SELL
        price = ("65020.00" if n % 4 == 1 else "64900.00") if side is Side.BUY else ("64980.00" if n % 4 == 3 else "65100.00")
        v.handle(request(f"r{n}", side=side, price=price, quantity="0.0150"))
    else:
        v.handle(request(f"r{n - 1}", "cancel", request_id=f"c{n}"))


def session(messages: int) -> tuple[Store, list[tuple]]:
    """A venue run message by message, each saved; the store and the state after each message."""
    v, store, stored, states = venue(ACTIVE, 3), Store(), Stored(), []
    for n in range(messages):
        trading(v, n)
        writes = save_writes(v, stored, n, [["out", n]], None if n % 3 == 0 else f"q{n}")  # ticks carry no request
        store.apply(writes)
        states.append(state(v))
    return store, states


def test_a_venue_rebuilt_from_its_keys_carries_on_exactly_as_the_original():
    store, states = session(40)
    original = venue(ACTIVE, 3)
    for n in range(40):
        trading(original, n)
    restored, stored, _ = store.read()
    assert state(restored) == state(original) == states[-1] and stored.offset == 39
    for n in range(40, 60):
        step = [v.tick(T0 + 250 * n).reports + v.handle(request(f"r{n}", price="65020.00", quantity="0.0150")).reports
                for v in (original, restored)]
        assert step[0] == step[1]
    assert_book_invariants(restored.book)


def test_every_prefix_of_the_writes_rebuilds_the_state_after_a_whole_message():
    store, states = session(30)
    for cut in range(len(store.log) + 1):
        prefix = Store()
        prefix.apply(store.log[:cut])
        if record_key("BTC-USD") not in prefix.data:
            continue
        rebuilt, stored, repairs = prefix.read()
        assert state(rebuilt) == states[stored.offset], f"cut after write {cut}"
        # Once repaired, the keys alone agree with the record: nothing comes back to life later.
        prefix.apply(repairs)
        held = sorted(json.loads(v) for k, v in prefix.data.items() if k.startswith(order_prefix("BTC-USD")))
        assert held == sorted(rebuilt.client_orders()), f"cut after write {cut}"
        # Exactly the requests applied so far are known by their ids, each with the offset that applied it.
        requests = {k: int(v) for k, v in prefix.data.items() if k.startswith(request_prefix("BTC-USD"))}
        assert requests == {request_key("BTC-USD", f"q{n}"): n for n in range(stored.offset + 1) if n % 3}, \
            f"cut after write {cut}"


def test_an_order_leaving_the_book_deletes_its_key_and_one_that_never_rested_writes_none():
    v, stored = venue(), Stored()
    v.handle(request("rests"))
    writes = save_writes(v, stored, 0, [])
    assert (order_key("BTC-USD", "rests"), json.dumps(v.client_orders()[0]).encode()) in writes
    v.handle(request("rests", "cancel"))
    writes = save_writes(v, stored, 1, [])
    assert (order_key("BTC-USD", "rests"), None) in writes and stored.orders == set()
    v.handle(request("ioc", price="60000.00", tif=TimeInForce.IOC))
    writes = save_writes(v, stored, 2, [])
    assert [k for k, _ in writes if k.startswith("o/")] == []


def test_the_latest_hundred_trades_survive_a_rebuild_however_many_one_message_made():
    v, store, stored = venue(MarketParams(volatility=Decimal(0), spread_bps=Decimal(4), liquidity=1, levels=50), 3), Store(), Stored()
    for n in range(3):
        v.tick(T0 + 250 * n)
        v.handle(request(f"sweep{n}", price="66000.00", quantity="0.0050"))
        writes = save_writes(v, stored, n, [])
        store.apply(writes)
    assert v.trade_count > RECENT_TRADES
    rebuilt, _, _ = store.read()
    assert list(rebuilt.recent_trades) == list(v.recent_trades) and rebuilt.trade_count == v.trade_count


@pytest.mark.parametrize("message", ["resting order", "fill", "cancel", "tick"])
def test_bytes_written_per_message_do_not_grow_with_the_depth_of_the_book(message):
    """Measured from the writes themselves: the same message costs the same beside 10 or 10,000 resting orders.

    Only counters that grow by a digit (the book's order sequence numbers) may add a few bytes.
    """

    def cost(depth: int) -> tuple[int, int]:
        v, stored = venue(seed=3), Stored()
        v.tick(T0)
        for n in range(depth):
            v.handle(request(f"deep{n:05d}", price=f"{60000 - n % 500}.00", quantity="0.0010"))
        save_writes(v, stored, 0, [])
        if message == "resting order":
            v.handle(request("probe00000", price="64000.00"))
        elif message == "fill":
            v.handle(request("probe00000", price="66000.00", quantity="0.0010"))
        elif message == "cancel":
            v.handle(request("deep00007", "cancel"))
        else:
            v.tick(T0 + 250)
        writes = save_writes(v, stored, 1, [])
        return len(writes), sum(len(k) + len(val or b"") for k, val in writes)

    shallow, deep = cost(10), cost(10_000)
    assert shallow[0] == deep[0] and abs(deep[1] - shallow[1]) <= 64, (shallow, deep)


def whole_book_record(v: SymbolVenue, offset: int) -> bytes:
    """A symbol as the layout before this one stored it: the whole book and its trades in one value."""
    record = v.record()
    maker = {doc[0] for doc in record["maker"]}
    book = sorted([*record["maker"], *v.client_orders()], key=lambda doc: doc[7])
    old = {k: record[k] for k in ("symbol", "seed", "mid", "tick", "day", "params", "book_seq")}
    old |= {"maker_orders": sorted(maker), "trades": [list(t) for t in v.recent_trades], "book": book}
    return json.dumps({"offset": offset, "venue": old}).encode()


def test_a_symbol_stored_by_the_previous_layout_is_read_and_rewritten_in_this_one():
    original = venue(ACTIVE, 3)
    for n in range(40):
        trading(original, n)
    store = Store()
    store.data[record_key("BTC-USD")] = whole_book_record(original, 39)
    migrated, stored, repairs = store.read()
    assert (migrated.record() | {"trade_count": 0}, sorted(migrated.client_orders()), list(migrated.recent_trades)) == \
        (original.record() | {"trade_count": 0}, sorted(original.client_orders()), list(original.recent_trades))
    assert stored.offset == 39 and stored.orders == {doc[0] for doc in original.client_orders()}
    store.apply(repairs)
    again, _, _ = store.read()
    assert state(again) == state(migrated) and "venue" not in json.loads(store.data[record_key("BTC-USD")])
    for n in range(40, 50):
        assert original.handle(request(f"r{n}", price="65020.00")).reports == \
            again.handle(request(f"r{n}", price="65020.00")).reports
