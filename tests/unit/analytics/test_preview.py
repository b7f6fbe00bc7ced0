"""The pre-trade risk preview: the OMS's verdict, the reservation, balances after, exposure and warnings.

Defaults (helpers): alice holds 1,000,000 USD and 10 BTC; BTC-USD reference 65000, collar
1000 bps, so limit prices in [58500, 71500]; max notional 1,000,000; max BTC position 50.
"""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from atlas.analytics.preview import preview_order
from atlas.core.values import OrderType, Side
from atlas.oms.risk import check_order
from tests.helpers import D, account, limits, market, submit


def codes(preview) -> list[str]:
    return [w.code for w in preview.warnings]


def test_preview_of_a_limit_buy_reserves_quote_at_the_limit_price():
    preview = preview_order(submit(quantity="0.5", price="64000"), account(), market())
    assert preview.block is None
    assert (preview.required_asset, preview.required) == ("USD", D("32000"))
    assert preview.after["USD"].available == D("968000") and preview.after["USD"].reserved == D("32000")
    assert preview.after["BTC"] == preview.before["BTC"]
    assert (preview.exposure_before, preview.exposure_after) == (D("10"), D("10.5"))
    assert preview.notional == D("32000") and preview.collar == (D("58500"), D("71500"))
    assert codes(preview) == []


def test_preview_of_a_sell_requires_the_base_asset():
    preview = preview_order(submit(side=Side.SELL, quantity="2", price="66000"), account(), market())
    assert (preview.required_asset, preview.required) == ("BTC", D("2"))
    assert preview.after["BTC"].available == D("8") and preview.after["USD"] == preview.before["USD"]
    assert preview.exposure_after == D("8")


def test_preview_of_a_market_buy_reserves_at_the_collar_high():
    preview = preview_order(submit(type=OrderType.MARKET, quantity="1"), account(), market())
    assert preview.required == D("71500") and preview.notional == D("65000")


def test_preview_beyond_buying_power_is_blocked_with_the_oms_reason():
    poor = account(balances={"USD": "1000", "BTC": "0"})
    preview = preview_order(submit(quantity="0.5", price="64000"), poor, market())
    assert preview.block is not None and preview.block.code.value == "INSUFFICIENT_FUNDS"
    assert preview.public()["accepted"] is False
    assert preview.public()["block"]["code"] == "INSUFFICIENT_FUNDS"


def test_preview_outside_the_collar_is_blocked():
    preview = preview_order(submit(price="80000"), account(), market())
    assert preview.block.code.value == "PRICE_COLLAR"


def test_preview_over_max_quantity_and_notional_are_blocked():
    assert preview_order(submit(quantity="11"), account(), market()).block.code.value == "MAX_ORDER_QUANTITY"
    tight = account(limits=limits(max_order_notional="10000"))
    assert preview_order(submit(quantity="0.5"), tight, market()).block.code.value == "MAX_ORDER_NOTIONAL"


def test_preview_under_a_kill_switch_is_blocked():
    killed = account().model_copy(update={"killed": True, "kill_reason": "drill"})
    assert preview_order(submit(), killed, market()).block.code.value == "KILL_SWITCH"
    assert preview_order(submit(), account(), market(global_kill=True)).block.code.value == "KILL_SWITCH_GLOBAL"


def test_preview_of_an_unknown_symbol_is_blocked_without_balances():
    preview = preview_order(submit(symbol="DOGE-USD"), account(), market())
    assert preview.block.code.value == "UNKNOWN_SYMBOL" and preview.after == {}
    assert preview.public()["required"] is None


def test_preview_near_the_notional_limit_warns_high_notional():
    tight = account(limits=limits(max_order_notional="40000"))
    preview = preview_order(submit(quantity="0.5", price="64000"), tight, market())
    assert preview.block is None and codes(preview) == ["HIGH_NOTIONAL"]


def test_preview_using_most_of_a_balance_warns_low_buffer():
    preview = preview_order(submit(side=Side.SELL, quantity="9.5", price="65000"), account(), market())
    assert preview.block is None and "LOW_BUFFER" in codes(preview)


def test_preview_near_the_collar_edge_warns():
    assert "NEAR_COLLAR" in codes(preview_order(submit(price="71000"), account(), market()))
    assert "NEAR_COLLAR" not in codes(preview_order(submit(price="65500"), account(), market()))


def test_preview_near_the_position_limit_warns():
    capped = account(limits=limits(max_position={"BTC": "11"}))
    assert "NEAR_POSITION_LIMIT" in codes(preview_order(submit(quantity="0.5"), capped, market()))


def test_preview_public_form_has_decimal_strings_only():
    doc = preview_order(submit(), account(), market()).public()
    assert doc["required"] == {"asset": "USD", "amount": "32000.0"}
    assert doc["exposure"] == {"asset": "BTC", "before": "10", "after": "10.5", "change": "0.5"}
    assert doc["balances_after"]["USD"] == {"available": "968000.0", "reserved": "32000.0", "total": "1000000.0"}


@given(quantity=st.integers(1, 200_000), ticks=st.integers(5_000_000, 7_500_000), sell=st.booleans())
def test_preview_block_is_exactly_the_oms_check(quantity, ticks, sell):
    order = submit(quantity=D(quantity) / 10_000, price=D(ticks) / 100, side=Side.SELL if sell else Side.BUY)
    preview = preview_order(order, account(), market())
    assert preview.block == check_order(order, account(), market())
    if preview.block is None:
        assert preview.after[preview.required_asset].available >= 0
        assert preview.after[preview.required_asset].total == preview.before[preview.required_asset].total


def test_preview_of_terms_off_the_instrument_is_blocked_without_arithmetic():
    huge = submit(quantity=D("9E999999"), price="2")
    preview = preview_order(huge, account(), market())
    assert preview.block.code.value == "INVALID_QUANTITY" and preview.required is None
    assert preview_order(submit(price="64000.001"), account(), market()).block.code.value == "INVALID_PRICE"
