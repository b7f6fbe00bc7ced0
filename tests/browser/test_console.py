"""The console in a real browser against a real worker: sign in, trade, amend, cancel, fills, reconnects."""
from __future__ import annotations

import re
from decimal import Decimal as D

import pytest
from playwright.sync_api import expect

from tests.browser.page import SCREENSHOTS, expect_amount, newest_order_id, place, place_terms, row, sign_in, until
from tests.live import Api, mid

pytestmark = [pytest.mark.integration, pytest.mark.browser]


def test_place_amend_and_cancel_a_resting_order(console_cluster, page):
    api = Api(console_cluster.workers[0].url, console_cluster.keys["trader-10"])
    sign_in(page, console_cluster.workers[0].url, console_cluster.keys["trader-10"])
    expect(page.get_by_test_id("account")).to_have_text("trader-10 (trader)")
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
    expect_amount(row(page, order_id).locator("td.px .top"), D(amended))

    row(page, order_id).locator("button.cancel").click()
    expect(row(page, order_id)).to_have_count(0, timeout=15_000)  # gone from the open orders
    page.check("input[name=filter][value=closed]")
    expect(row(page, order_id).locator(".status")).to_have_text("CANCELED")
    assert api.get(f"/api/v1/orders/{order_id}").body["status"] == "CANCELED"
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")  # fits 1280 x 800


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
    until(page, "chart.price.data().length > 0")
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


def test_risk_preview_shows_the_reservation_and_blocks_what_the_server_rejects(console_cluster, page):
    key = console_cluster.keys["trader-15"]
    api = Api(console_cluster.workers[0].url, key)
    sign_in(page, console_cluster.workers[0].url, key)
    preview = page.get_by_test_id("preview")
    price = (mid(api) * D("0.99")).quantize(D("0.01"))
    place_terms(page, "BUY", "0.5000", str(price))
    expect_amount(preview.locator("[data-field=required]"), D("0.5") * price, strip=" USD")
    expect_amount(preview.locator("[data-field=exposure-after]"), D("10.5"))
    expect(page.locator("#submit")).to_be_enabled()
    # A sell draws on the base asset; nearly all of it leaves a warning.
    place_terms(page, "SELL", "9.5000", str(price))
    expect(preview.locator("[data-field=required]")).to_have_text("9.5 BTC")
    expect(preview.locator(".warning[data-code=LOW_BUFFER]")).to_be_visible()
    # Over the account's max quantity, and outside the collar: blocked with the OMS's reason, submit disabled.
    place_terms(page, "BUY", "11.0000", str(price))
    expect(preview.locator(".block")).to_have_attribute("data-code", "MAX_ORDER_QUANTITY")
    expect(page.locator("#submit")).to_be_disabled()
    place_terms(page, "BUY", "0.0100", str((price * D("1.5")).quantize(D("0.01"))))
    expect(preview.locator(".block")).to_have_attribute("data-code", "PRICE_COLLAR")
    # What the server says when the same order is sent anyway.
    placed = api.order(price=str((price * D("1.5")).quantize(D("0.01"))))
    order = api.wait_for(f"/api/v1/orders/{placed.body['order_id']}", lambda o: o["status"] == "REJECTED")
    assert order["reject_reason"].startswith("PRICE_COLLAR")


def test_demo_mode_offers_the_demo_accounts_and_switches_between_them(console_cluster, page):
    page.goto(console_cluster.workers[0].url)
    expect(page.locator("#api-key")).to_have_value("alice-demo-key")  # a trader's key, pre-filled
    page.click("#demo-buttons button[data-key=bob-demo-key]")
    expect(page.get_by_test_id("account")).to_have_text("bob (trader)")
    expect(page.get_by_test_id("connection")).to_have_text("live", timeout=15_000)
    switch = page.get_by_test_id("account-switch")
    expect(switch.locator("option")).to_have_count(3)
    switch.select_option("alice")
    expect(page.get_by_test_id("account")).to_have_text("alice (trader)")
    expect(page.get_by_test_id("connection")).to_have_text("live", timeout=15_000)
    # The stream now carries alice's reports: her order appears without a reload.
    alice = Api(console_cluster.workers[0].url, "alice-demo-key")
    placed = alice.order(price=str((mid(alice) * D("0.95")).quantize(D("0.01"))))
    expect(row(page, placed.body["order_id"]).locator(".status")).to_have_text("NEW", timeout=15_000)


def test_control_center_shows_metrics_and_an_admin_change_moves_the_book(console_cluster, page):
    admin = Api(console_cluster.workers[0].url, console_cluster.keys["admin"])
    sign_in(page, console_cluster.workers[0].url, console_cluster.keys["admin"])
    page.select_option("#symbol", "SOL-USD")
    center = page.get_by_test_id("control-center")
    expect(center.locator("[data-metric=spread] td").nth(1)).to_contain_text("bps", timeout=15_000)
    expect(center.locator("[data-metric=volatility] td").nth(1)).to_have_text(re.compile(r"%$"), timeout=15_000)
    expect(page.locator("#venue-form")).to_be_visible()
    expect(page.locator("#venue-liquidity")).not_to_have_value("")
    page.fill("#venue-volatility", "0.004")
    page.fill("#venue-liquidity", "7.25")
    page.fill("#venue-levels", "4")
    page.click("#venue-apply")
    expect(page.locator("#venue-message")).to_contain_text("applied to SOL-USD")
    # The maker re-quotes: four levels a side of 7.25 SOL (nobody else trades SOL here).
    expect(page.locator("#book tbody tr")).to_have_count(4, timeout=15_000)
    expect(page.locator("#book tbody td.bid.qty").first).to_have_text("7.25", timeout=15_000)
    params = admin.wait_for("/api/v1/venue/SOL-USD", lambda p: D(p["volatility"]) == D("0.004"))
    assert D(params["liquidity"]) == D("7.25") and params["levels"] == 4
    # A suggested aggressive buy crosses the best ask; at a small quantity it fills at once.
    ask = D(page.locator("#book tbody td.ask.level").first.text_content())
    page.fill("#quantity", "1.00")
    page.locator("#suggestions tbody tr").first.locator("td.price").nth(2).click()  # re-rendered every second
    expect(page.locator("#price")).not_to_have_value("")
    assert D(page.input_value("#price")) > ask
    expect(page.get_by_test_id("fill-probability")).to_have_text("100.0%", timeout=10_000)
    expect(page.locator("#fill-method")).to_have_text("marketable")
    # The admin holds nothing: the preview blocks the buy for want of funds, as the OMS would.
    expect(page.get_by_test_id("preview").locator(".block")).to_have_attribute("data-code", "INSUFFICIENT_FUNDS")
    expect(page.locator("#submit")).to_be_disabled()
    page.screenshot(path=str(SCREENSHOTS / "control-center.png"), full_page=True)


def test_the_console_fits_a_1920_by_1080_screen(console_cluster, browser):
    context = browser.new_context(viewport={"width": 1920, "height": 1080})
    page = context.new_page()
    try:
        sign_in(page, console_cluster.workers[0].url, console_cluster.keys["trader-16"])
        expect(page.locator("#book tbody tr").first).to_be_visible(timeout=15_000)
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        page.screenshot(path=str(SCREENSHOTS / "console-1920.png"))
    finally:
        context.close()
