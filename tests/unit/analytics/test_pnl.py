"""atlas.analytics.pnl: fills from orders, average-cost positions, exposures and the account's totals."""
from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atlas.analytics.pnl import Exposure, Fill, Position, exposures, fills_of, positions, summary
from atlas.core.events import ExecType
from atlas.core.values import Side
from tests.helpers import T0, Book, D, instruments

_seq = iter(range(1, 1_000_000))


def fill(side: Side | str, qty: str, px: str, symbol: str = "BTC-USD", ts: int | None = None) -> Fill:
    n = next(_seq)
    return Fill(ts=T0 + n if ts is None else ts, exec_id=f"x-{n:06d}", symbol=symbol, side=Side(side),
                quantity=D(qty), price=D(px))


def position(*fills: Fill, mark: str | None = None, symbol: str = "BTC-USD") -> Position:
    marks = {} if mark is None else {symbol: D(mark)}
    return positions(fills, instruments(), marks)[symbol]


# fills_of

def test_fills_of_takes_each_trade_of_each_order_with_the_orders_symbol_and_side():
    book = Book()
    buy = book.place(quantity="1", price="64000")
    sell = book.place(side=Side.SELL, symbol="ETH-USD", quantity="2", price="3200")
    book.venue(buy.order_id, "FILL", last_qty="0.4", last_px="63990", ts=T0 + 1)
    book.venue(sell.order_id, "FILL", last_qty="2", last_px="3201", ts=T0 + 2)
    book.venue(buy.order_id, "FILL", last_qty="0.6", last_px="64000", ts=T0 + 3)

    fills = fills_of(r for oid in book.orders for r in book.executions(oid))

    assert [(f.ts, f.symbol, f.side, f.quantity, f.price) for f in fills] == [
        (T0 + 1, "BTC-USD", Side.BUY, D("0.4"), D("63990")),
        (T0 + 2, "ETH-USD", Side.SELL, D("2"), D("3201")),
        (T0 + 3, "BTC-USD", Side.BUY, D("0.6"), D("64000")),
    ]


def test_fills_of_ignores_reports_that_are_not_trades():
    book = Book()
    order = book.place()
    book.venue(order.order_id, "CANCELED")
    assert {r.exec_type for r in book.executions(order.order_id)} >= {ExecType.NEW, ExecType.CANCELED}
    assert fills_of(book.executions(order.order_id)) == []


def test_fills_of_orders_trades_by_time_then_order_then_seq_whatever_order_they_come_in():
    book = Book()
    order = book.place(quantity="1")
    template = book.fill(order.order_id, "0.1", "64000").reports[0]
    # Seq 10 after seq 9 in the same millisecond (their exec ids would sort the other way as text).
    reports = [template.model_copy(update={"exec_id": f"{order.order_id}-{seq}", "seq": seq, "ts": ts})
               for seq, ts in [(10, T0 + 5), (3, T0 + 1), (9, T0 + 5)]]

    assert [f.exec_id.rsplit("-", 1)[1] for f in fills_of(reports)] == ["3", "9", "10"]
    assert fills_of(reports[::-1]) == fills_of(reports)


def test_fill_with_a_quantity_of_zero_is_refused():
    with pytest.raises(ValueError, match="positive"):
        fill("BUY", "0", "100")


# positions: longs

def test_buys_while_flat_or_long_average_the_cost():
    p = position(fill("BUY", "1", "100"), fill("BUY", "3", "120"))
    assert (p.quantity, p.avg_price, p.realised) == (D("4"), D("115"), D("0"))
    assert (p.bought, p.sold, p.fills) == (D("4"), D("0"), 2)


def test_sell_while_long_realises_against_the_average_cost():
    p = position(fill("BUY", "1", "100"), fill("BUY", "1", "120"), fill("SELL", "0.5", "130"))
    assert p.realised == D("10")  # (130 - 110) * 0.5
    assert (p.quantity, p.avg_price) == (D("1.5"), D("110"))


def test_sell_of_the_whole_long_leaves_it_flat_with_no_average():
    p = position(fill("BUY", "2", "100"), fill("SELL", "2", "90"), mark="95")
    assert (p.quantity, p.cost, p.avg_price) == (D("0"), D("0"), None)
    assert p.realised == D("-20")
    assert p.unrealised == 0


def test_partial_close_at_a_repeating_average_keeps_the_rest_at_that_average():
    p = position(fill("BUY", "1", "100"), fill("BUY", "2", "101"), fill("SELL", "1", "110"))
    assert abs(p.avg_price - D(302) / 3) < D("1e-24")  # the cost share is taken at 28 digits
    assert p.realised - p.cost == D("110") - D("100") - D("202")  # the cash flow: nothing lost to the division


# positions: shorts and crossing zero

def test_sells_while_flat_or_short_open_a_short_at_the_average_price():
    p = position(fill("SELL", "1", "100"), fill("SELL", "1", "110"))
    assert (p.quantity, p.avg_price, p.cost, p.realised) == (D("-2"), D("105"), D("-210"), D("0"))


def test_buy_while_short_realises_the_average_less_the_price():
    p = position(fill("SELL", "2", "105"), fill("BUY", "0.5", "100"))
    assert p.realised == D("2.5")
    assert (p.quantity, p.avg_price) == (D("-1.5"), D("105"))


def test_sell_through_zero_realises_the_long_and_opens_a_short_at_the_fill_price():
    p = position(fill("BUY", "1", "100"), fill("SELL", "3", "110"))
    assert p.realised == D("10")
    assert (p.quantity, p.avg_price) == (D("-2"), D("110"))


def test_buy_through_zero_realises_the_short_and_opens_a_long_at_the_fill_price():
    p = position(fill("SELL", "2", "100"), fill("BUY", "5", "90"))
    assert p.realised == D("20")
    assert (p.quantity, p.avg_price) == (D("3"), D("90"))


def test_positions_are_kept_per_symbol_with_the_instruments_assets():
    book = positions([fill("BUY", "1", "100"), fill("SELL", "4", "10", symbol="SOL-USD")], instruments(), {})
    assert {s: (p.base, p.quote, p.quantity) for s, p in book.items()} == {
        "BTC-USD": ("BTC", "USD", D("1")), "SOL-USD": ("SOL", "USD", D("-4"))}


def test_fill_on_an_unknown_symbol_is_refused():
    with pytest.raises(ValueError, match="DOGE-USD"):
        positions([fill("BUY", "1", "1", symbol="DOGE-USD")], instruments(), {})


# positions: marking

def test_long_with_a_mark_is_unrealised_at_the_mark_less_the_average():
    assert position(fill("BUY", "2", "100"), mark="103").unrealised == D("6")


def test_short_with_a_mark_gains_when_the_mark_falls():
    assert position(fill("SELL", "2", "100"), mark="97").unrealised == D("6")


def test_position_without_a_mark_has_no_unrealised():
    p = position(fill("BUY", "2", "100"))
    assert (p.mark, p.unrealised) == (None, None)


def test_position_public_is_json_with_decimal_strings_and_pnl_to_ten_places():
    p = position(fill("BUY", "1", "100"), fill("BUY", "2", "101"), fill("SELL", "1", "110"), mark="100")
    public = p.public()
    assert json.loads(json.dumps(public)) == public
    assert public == {
        "symbol": "BTC-USD", "base": "BTC", "quote": "USD", "quantity": "2", "avg_price": "100.6666666667",
        "realised": "9.3333333333", "unrealised": "-1.3333333333", "mark": "100",
        "bought": "3", "sold": "1", "fills": 3,
    }


def test_position_public_writes_whole_amounts_without_an_exponent():
    p = position(fill("BUY", "1", "100"), fill("SELL", "1", "200"), mark="1E+3")
    assert (p.public()["realised"], p.public()["mark"], p.public()["avg_price"]) == ("100", "1000", None)


# exposures

def test_exposures_mark_each_base_at_its_mid_and_the_quote_asset_at_one():
    result = exposures({"BTC": D("2"), "USD": D("-1000.50")}, instruments(), {"BTC-USD": D("65000.5")})
    assert result == {
        "BTC": Exposure(asset="BTC", total=D("2"), quote="USD", mark=D("65000.5"), value=D("130001.0")),
        "USD": Exposure(asset="USD", total=D("-1000.50"), quote="USD", mark=D("1"), value=D("-1000.50")),
    }


def test_exposure_without_a_mid_or_an_instrument_has_no_value():
    result = exposures({"ETH": D("3"), "XYZ": D("1")}, instruments(), {})
    assert (result["ETH"].quote, result["ETH"].mark, result["ETH"].value) == ("USD", None, None)
    assert (result["XYZ"].quote, result["XYZ"].mark, result["XYZ"].value) == (None, None, None)
    assert result["ETH"].public() == {"asset": "ETH", "total": "3", "quote": "USD", "mark": None, "value": None}


# summary

def test_summary_sums_pnl_over_positions_and_values_over_non_quote_assets():
    fills = [fill("BUY", "1", "100"), fill("SELL", "0.5", "110"), fill("SELL", "2", "10", symbol="SOL-USD")]
    marks = {"BTC-USD": D("120"), "SOL-USD": D("9")}
    held = exposures({"BTC": D("0.5"), "SOL": D("-2"), "USD": D("1000")}, instruments(), marks)

    totals = summary(positions(fills, instruments(), marks), held)["USD"]

    assert totals.realised == D("5")  # BTC (110 - 100) * 0.5
    assert totals.unrealised == D("12")  # BTC 0.5 * 20, SOL -2 * (9 - 10)
    assert totals.total == D("17")
    assert totals.net_exposure == D("42")  # 0.5 * 120 - 2 * 9; the 1000 USD is not exposure
    assert totals.public() == {"quote": "USD", "realised": "5", "unrealised": "12", "total": "17",
                               "net_exposure": "42"}


def test_summary_has_no_unrealised_total_when_an_open_position_has_no_mark():
    book = positions([fill("BUY", "1", "100"), fill("SELL", "1", "110"), fill("BUY", "1", "5", symbol="SOL-USD")],
                     instruments(), {})
    totals = summary(book, {})["USD"]
    assert (totals.realised, totals.unrealised, totals.total) == (D("10"), None, None)


def test_summary_of_nothing_is_empty():
    assert summary({}, {}) == {}


# the cash-flow identity

_amounts = st.integers(min_value=1, max_value=10**7)


@st.composite
def fill_runs(draw) -> tuple[list[Fill], Decimal]:
    steps = draw(st.lists(st.tuples(st.sampled_from([Side.BUY, Side.SELL]), _amounts, _amounts), max_size=40))
    fills = [Fill(ts=T0 + i, exec_id=f"x-{i:03d}", symbol="BTC-USD", side=side,
                  quantity=Decimal(qty).scaleb(-4), price=Decimal(px).scaleb(-2))
             for i, (side, qty, px) in enumerate(steps)]
    return fills, Decimal(draw(_amounts)).scaleb(-2)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(fill_runs())
def test_realised_plus_unrealised_is_the_cash_flow_plus_the_position_at_the_mark(run):
    fills, mark = run
    if not fills:
        return
    p = position(*fills, mark=str(mark))

    cash = sum((f.quantity * f.price * (1 if f.side is Side.SELL else -1) for f in fills), Decimal(0))
    net = sum((f.quantity * (1 if f.side is Side.BUY else -1) for f in fills), Decimal(0))

    assert p.quantity == net
    assert p.realised + p.unrealised == cash + net * mark
