"""What the console tests do on the page: sign in, fill the order form, find a row, wait for an amount."""
from __future__ import annotations

import time
from decimal import Decimal as D
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.live import Api

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def until(page: Page, expression: str, timeout_ms: int = 15_000) -> None:
    """Wait until `expression` holds in the page, asking from here.

    `page.wait_for_function` polls with `eval` inside the page, which the console's Content-Security-Policy
    (`script-src 'self'`) forbids; `page.evaluate` goes through the debugging protocol, which it does not.
    """
    deadline = time.monotonic() + timeout_ms / 1000
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"never held in the page: {expression}")
        page.wait_for_timeout(100)


def sign_in(page: Page, url: str, key: str) -> None:
    page.goto(url)
    page.fill("#api-key", key)
    page.click("#signin-form button[type=submit]")
    expect(page.get_by_test_id("connection")).to_have_text("live", timeout=15_000)


def expect_amount(locator, amount: D, timeout: float = 15.0, strip: str = "") -> None:
    """Wait until the cell shows `amount` (compared as a decimal: the API keeps trailing zeros), less a `strip` suffix."""
    deadline = time.monotonic() + timeout
    while True:
        shown = locator.text_content() if locator.count() else None
        if shown is not None and strip:
            shown = shown.removesuffix(strip)
        if shown is not None and shown.strip() not in ("", "-") and D(shown) == amount:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"expected {amount}, the page shows {shown!r}")
        time.sleep(0.1)


def row(page: Page, order_id: str):
    return page.locator(f"#orders tr[data-order='{order_id}']")


def place_terms(page: Page, side: str, quantity: str, price: str) -> None:
    """Fill the order form (a limit order) without submitting it."""
    page.check(f"input[name=side][value={side}]")
    page.select_option("#type", "LIMIT")
    page.fill("#quantity", quantity)
    page.fill("#price", price)


def place(page: Page, side: str, quantity: str, price: str) -> None:
    place_terms(page, side, quantity, price)
    page.click("#submit")


def newest_order_id(api: Api) -> str:
    return max(api.get("/api/v1/orders?status=all").body["orders"], key=lambda o: o["created_at"])["order_id"]
