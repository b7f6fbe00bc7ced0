"""The Analytics and Settings pages in a real browser against a real worker: figures from a fill, limits and
kill switches changed from the page and enforced by the OMS."""
from __future__ import annotations

import re
from decimal import Decimal as D

import pytest
from playwright.sync_api import Page, expect

from tests.browser.page import SCREENSHOTS, sign_in, until
from tests.live import Api, mid

pytestmark = [pytest.mark.integration, pytest.mark.browser]
POSITIVE = re.compile(r"^[1-9]\d*$")
APPLIED_WITHIN_MS = 20_000


def open_page(page: Page, view: str) -> None:
    page.click(f"#nav a[data-view={view}]")
    expect(page.locator(f"main#{view}")).to_be_visible()


def verdict(api: Api, **order) -> dict:
    """Place an order and wait for the OMS's verdict: the order once it is past PENDING_NEW."""
    placed = api.order(**order)
    assert placed.status == 202, placed
    return api.wait_for(f"/api/v1/orders/{placed.body['order_id']}", lambda o: o["status"] != "PENDING_NEW")


def choose_account(page: Page, account: str) -> None:
    page.get_by_test_id("settings-account").select_option(account)
    expect(page.locator("#limits-account")).to_have_text(account)


def test_analytics_shows_a_fill_in_the_counts_the_latencies_and_the_orders(console_cluster, page):
    url, key = console_cluster.workers[0].url, console_cluster.keys["trader-15"]
    api = Api(url, key)
    sign_in(page, url, key)
    filled = verdict(api, price=str((mid(api) * D("1.03")).quantize(D("0.01"))))
    api.wait_for(f"/api/v1/orders/{filled['order_id']}", lambda o: o["status"] == "FILLED")
    assert verdict(api, price=str((mid(api) * D("0.95")).quantize(D("0.01"))))["status"] == "NEW"  # one resting
    open_page(page, "analytics")

    # The workers' telemetry covers every account: a trader's page says it is for admins.
    expect(page.locator("#telemetry-scope")).to_have_text("every account's figures: admins only")
    assert page.get_by_test_id("telemetry-counts").locator(".bar-row").count() == 0
    by_status = page.get_by_test_id("orders-by-status")
    expect(by_status.locator("[data-status=FILLED] .bar-count")).to_have_text("1")
    expect(by_status.locator("[data-status=NEW] .bar-count")).to_have_text("1")
    expect(page.get_by_test_id("exposure").locator("tr[data-asset=BTC]")).to_be_visible(timeout=15_000)
    # The fill was a buy trade of this minute: the flow chart draws it; P&L is sampled while the page is open.
    until(page, "analytics.charts.buy.data().some((p) => p.value > 0)")
    until(page, "state.pnl.length >= 2")
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280  # no horizontal scroll

    # An admin's page shows the workers' counts and latencies, the trader's fill among them.
    page.click("#signout")
    sign_in(page, url, console_cluster.keys["admin"])
    open_page(page, "analytics")
    counts = page.get_by_test_id("telemetry-counts")
    for metric in ("submitted", "accepted", "fills", "filled_orders"):
        expect(counts.locator(f"[data-metric={metric}] .bar-count")).to_have_text(POSITIVE, timeout=15_000)
    for latency in ("latency-ack", "latency-fill"):
        expect(page.get_by_test_id(latency)).to_have_attribute("data-count", POSITIVE)
        buckets = page.get_by_test_id(latency).locator(".bucket")
        assert sum(int(n) for n in buckets.evaluate_all("els => els.map((e) => e.dataset.count)")) >= 1
        expect(page.get_by_test_id(latency).locator("[data-percentile=p50] b")).to_have_text(re.compile(r"^\d+\.\d{3}$"))
    page.screenshot(path=str(SCREENSHOTS / "analytics.png"))


def test_an_admin_lowers_a_traders_order_notional_and_the_oms_enforces_it(console_cluster, page):
    url, keys = console_cluster.workers[0].url, console_cluster.keys
    trader, admin = Api(url, keys["trader-16"]), Api(url, keys["admin"])
    before = admin.get("/api/v1/admin/accounts/trader-16/limits").body["limits"]
    sign_in(page, url, keys["admin"])
    open_page(page, "settings")
    choose_account(page, "trader-16")
    notional = page.get_by_test_id("limits-form").locator("input[data-field=max_order_notional]")
    expect(notional).to_have_value(before["max_order_notional"])
    notional.fill("500")
    page.get_by_test_id("save-limits").click()
    expect(page.get_by_test_id("limits-status")).to_have_text(re.compile(r"^applied"), timeout=APPLIED_WITHIN_MS)
    assert trader.get("/api/v1/limits").body["limits"] == {**before, "max_order_notional": "500"}  # the rest kept
    order = verdict(trader, price=str((mid(trader) * D("0.99")).quantize(D("0.01"))))  # 0.01 BTC: over 500 USD
    assert order["status"] == "REJECTED" and order["reject_reason"].startswith("MAX_ORDER_NOTIONAL")
    page.screenshot(path=str(SCREENSHOTS / "settings.png"))


def test_limits_the_server_refuses_show_its_field_error(console_cluster, page):
    sign_in(page, console_cluster.workers[0].url, console_cluster.keys["admin"])
    open_page(page, "settings")
    choose_account(page, "trader-19")
    page.get_by_test_id("limits-form").locator("input[data-field=price_collar_bps]").fill("200000")  # above 100000
    page.get_by_test_id("save-limits").click()
    expect(page.get_by_test_id("limits-status")).to_have_attribute("data-state", "error")
    expect(page.locator("[data-error-for=price_collar_bps]")).not_to_be_empty()


def test_a_trader_sees_its_limits_read_only(console_cluster, page):
    url, key = console_cluster.workers[0].url, console_cluster.keys["trader-17"]
    limits = Api(url, key).get("/api/v1/limits").body["limits"]
    sign_in(page, url, key)
    open_page(page, "settings")
    form = page.get_by_test_id("limits-form")
    expect(form.locator("input[data-field=max_order_notional]")).to_have_value(limits["max_order_notional"])
    expect(form.locator("input[data-field='max_order_quantity.BTC-USD']")).to_have_value(limits["max_order_quantity"]["BTC-USD"])
    inputs = form.locator("input")
    assert inputs.count() >= 7 and all(inputs.nth(i).is_disabled() for i in range(inputs.count()))
    expect(page.get_by_test_id("limits-readonly")).to_be_visible()
    expect(page.get_by_test_id("save-limits")).to_be_hidden()
    expect(page.get_by_test_id("settings-account")).to_be_hidden()
    expect(page.get_by_test_id("kill-account")).to_have_attribute("data-engaged", "false")
    expect(page.get_by_test_id("kill-account").get_by_role("button")).to_have_count(0)


def test_an_admin_engages_and_releases_an_accounts_kill_switch(console_cluster, page):
    url, keys = console_cluster.workers[0].url, console_cluster.keys
    trader = Api(url, keys["trader-18"])
    sign_in(page, url, keys["admin"])
    open_page(page, "settings")
    choose_account(page, "trader-18")
    switch = page.get_by_test_id("kill-account")
    page.get_by_test_id("kill-reason").fill("drill")
    switch.get_by_role("button", name="Engage").click()
    expect(switch).to_have_attribute("data-engaged", "true", timeout=APPLIED_WITHIN_MS)
    expect(switch).to_contain_text("drill")
    expect(page.get_by_test_id("kill-global")).to_have_attribute("data-engaged", "false")
    resting = str((mid(trader) * D("0.95")).quantize(D("0.01")))
    blocked = verdict(trader, price=resting)
    assert blocked["status"] == "REJECTED" and blocked["reject_reason"].startswith("KILL_SWITCH")

    switch.get_by_role("button", name="Release").click()
    expect(switch).to_have_attribute("data-engaged", "false", timeout=APPLIED_WITHIN_MS)
    expect(page.get_by_test_id("kill-status")).to_have_attribute("data-state", "applied")
    assert verdict(trader, price=resting)["status"] == "NEW"
