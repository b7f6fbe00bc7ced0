"""The console in a real browser against a real worker: sign in, trade, amend, cancel, fills, reconnects."""
from __future__ import annotations

import re
import time
from decimal import Decimal as D
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.live import Api

pytestmark = [pytest.mark.integration, pytest.mark.browser]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def mid(api: Api, symbol: str = "BTC-USD") -> D:
    return D(api.wait_for(f"/api/v1/marketdata/{symbol}", lambda b: b.get("mid") is not None)["mid"])


def sign_in(page: Page, url: str, key: str) -> None:
    page.goto(url)
    page.fill("#api-key", key)
    page.click("#signin-form button[type=submit]")
    expect(page.get_by_test_id("connection")).to_have_text("live", timeout=15_000)


def expect_amount(locator, amount: D, timeout: float = 15.0) -> None:
    """Wait until the cell shows `amount` (compared as a decimal: the API keeps trailing zeros)."""
    deadline = time.monotonic() + timeout
    while True:
        shown = locator.text_content() if locator.count() else None
        if shown is not None and shown.strip() not in ("", "-") and D(shown) == amount:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"expected {amount}, the page shows {shown!r}")
        time.sleep(0.1)


def row(page: Page, order_id: str):
    return page.locator(f"#orders tr[data-order='{order_id}']")


def place(page: Page, side: str, quantity: str, price: str) -> None:
    page.check(f"input[name=side][value={side}]")
    page.select_option("#type", "LIMIT")
    page.fill("#quantity", quantity)
    page.fill("#price", price)
    page.click("#submit")


def newest_order_id(api: Api) -> str:
    return max(api.get("/api/v1/orders?status=all").body["orders"], key=lambda o: o["created_at"])["order_id"]


def test_place_amend_and_cancel_a_resting_order(console_cluster, page):
    api = Api(console_cluster.workers[0].url, console_cluster.keys["trader-10"])
    sign_in(page, console_cluster.workers[0].url, console_cluster.keys["trader-10"])
    expect(page.get_by_test_id("account")).to_have_text("trader-10")
    # live depth from the stream: a bid price in the first row
    expect(page.locator("#book tbody tr").first.locator("td.bid.level")).to_have_text(re.compile(r"^\d+\.\d+$"),
                                                                                      timeout=15_000)
    price = str((mid(api) * D("0.95")).quantize(D("0.01")))
    place(page, "BUY", "0.0100", price)
    expect(page.locator("#orders tbody tr .status").first).to_have_text("NEW", timeout=15_000)
    order_id = newest_order_id(api)
    expect(row(page, order_id).locator(".status")).to_have_text("NEW")
    reserved = D("0.01") * D(price)
    expect_amount(page.locator("#balances tr[data-asset=USD] .reserved"), reserved)

    amended = str(D(price) - D("1.00"))
    page.once("dialog", lambda dialog: dialog.accept(amended))
    row(page, order_id).locator("button.amend").click()
    expect_amount(row(page, order_id).locator("td").nth(8), D(amended))

    row(page, order_id).locator("button.cancel").click()
    expect(row(page, order_id)).to_have_count(0, timeout=15_000)  # gone from the open orders
    page.check("input[name=filter][value=closed]")
    expect(row(page, order_id).locator(".status")).to_have_text("CANCELED")
    assert api.get(f"/api/v1/orders/{order_id}").body["status"] == "CANCELED"


def test_a_marketable_order_fills_and_the_balance_moves(console_cluster, page):
    key = console_cluster.keys["trader-11"]
    api = Api(console_cluster.workers[0].url, key)
    sign_in(page, console_cluster.workers[0].url, key)
    btc = page.locator("#balances tr[data-asset=BTC] .available")
    expect_amount(btc, D("10"))
    place(page, "BUY", "0.0100", str((mid(api) * D("1.03")).quantize(D("0.01"))))
    page.check("input[name=filter][value=all]")
    expect(page.locator("#orders tbody tr .status").first).to_have_text("FILLED", timeout=15_000)
    expect_amount(btc, D("10.01"))
    assert D(api.get("/api/v1/balances").body["balances"]["BTC"]["available"]) == D("10.01")
    # The fill was a trade: the chart plots it (with the trades before it), from the API and the stream.
    page.wait_for_function("chart.price.data().length > 0", timeout=15_000)
    expect(page.locator("#trades tbody tr").first).to_be_visible()
    expect(page.locator("#health [data-check=venue] b")).to_have_text("ok")
    resting = (mid(api) * D("0.95")).quantize(D("0.01"))
    place(page, "BUY", "0.0100", str(resting))  # one resting order too, for the picture
    expect(page.locator("#orders tbody tr .status").first).to_have_text("NEW", timeout=15_000)
    expect_amount(page.locator("#balances tr[data-asset=USD] .reserved"), D("0.01") * resting)
    page.screenshot(path=str(SCREENSHOTS / "console.png"))


def test_footer_shows_the_health_of_each_part(console_cluster, page):
    sign_in(page, console_cluster.workers[0].url, console_cluster.keys["trader-14"])
    health = page.get_by_test_id("health")
    for name in ("broker", "oms", "venue"):
        expect(health.locator(f"[data-check={name}] b")).to_have_text("ok", timeout=15_000)
    expect(health.locator("[data-check=exporter] b")).to_have_text("off")  # this test worker runs none


def test_client_side_validation_matches_the_server(console_cluster, page):
    sign_in(page, console_cluster.workers[0].url, console_cluster.keys["trader-12"])
    place(page, "BUY", "0.00001", "64000.00")
    expect(page.locator("#order-error")).to_contain_text("lot size")
    place(page, "BUY", "0.0100", "64000.001")
    expect(page.locator("#order-error")).to_contain_text("tick size")
    assert page.locator("#orders tbody tr").count() == 0


def test_a_dropped_stream_reconnects_and_loses_no_report(console_cluster, page):
    key = console_cluster.keys["trader-13"]
    api = Api(console_cluster.workers[0].url, key)
    sign_in(page, console_cluster.workers[0].url, key)
    price = str((mid(api) * D("0.95")).quantize(D("0.01")))
    page.evaluate("state.ws.close()")  # the page reconnects by itself, resuming from its last offset
    placed = api.order(price=price)
    assert placed.status == 202
    expect(page.get_by_test_id("connection")).to_have_text("live", timeout=15_000)
    expect(row(page, placed.body["order_id"]).locator(".status")).to_have_text("NEW", timeout=15_000)


def test_a_bad_key_is_refused_with_a_reason(console_cluster, page):
    page.goto(console_cluster.workers[0].url)
    page.fill("#api-key", "not-a-key")
    page.click("#signin-form button[type=submit]")
    expect(page.locator("#signin-error")).to_contain_text("not valid")
    expect(page.locator("#console")).to_be_hidden()
