"""The console against hostile strings (issue 14, finding 5): markup in market data never runs, and the page keeps one key."""
from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from playwright.sync_api import expect

from tests.browser.page import sign_in, until
from tests.live import Kafka

pytestmark = [pytest.mark.integration, pytest.mark.browser]

MARKUP = '<img src=x onerror="window.__pwned = true">'


def evil_book(symbol: str) -> dict:
    return {"type": "book", "symbol": symbol, "bids": [["100.00", MARKUP]], "asks": [["101.00", "1"]], "mid": "100.50",
            "halted": False, "ts": int(time.time() * 1000)}


def test_market_data_carrying_markup_never_reaches_the_page(console_cluster, page):
    sign_in(page, console_cluster.workers[0].url, console_cluster.keys["trader-30"])
    symbol = page.locator("#symbol").input_value()
    page.evaluate("""() => {
        window.__markup = []; window.__marker = false;
        hooks.message.push((m) => {
            if (JSON.stringify(m).includes("<img")) window.__markup.push(m);
            if (m.type === "mid" && m.mid === "4242.42") window.__marker = true;
        });
    }""")
    # Written to the topic by something other than the venue, then a well-formed message after it on the
    # same partition (same key): once the page has the second, the first would have come before it.
    marker = {"type": "mid", "symbol": symbol, "mid": "4242.42", "ts": int(time.time() * 1000)}
    messages = [(symbol.encode(), json.dumps(evil_book(symbol)).encode()), (symbol.encode(), json.dumps(marker).encode())]
    with ThreadPoolExecutor(1) as pool:  # Playwright's sync API holds this thread's event loop
        pool.submit(Kafka(console_cluster.bootstrap).produce, console_cluster.topic("marketdata"), messages).result()
    until(page, "() => window.__marker")
    assert page.evaluate("() => window.__markup") == []


def test_markup_that_reaches_the_console_shows_as_text_and_runs_nothing(console_cluster, page):
    # The console's own defence, should such a message get past the worker: every server string is escaped.
    sign_in(page, console_cluster.workers[0].url, console_cluster.keys["trader-30"])
    symbol = page.locator("#symbol").input_value()
    shown = page.evaluate("""(msg) => {
        receive(msg);  // what the stream hands the page, rendered at once
        const book = document.querySelector("#book tbody");
        return {text: book.textContent, images: document.querySelectorAll("#book img").length};
    }""", evil_book(symbol))
    assert MARKUP in shown["text"] and shown["images"] == 0
    page.wait_for_timeout(500)  # an injected image's onerror would have run by now
    assert page.evaluate("() => window.__pwned") is None


def test_the_tab_keeps_only_the_signed_in_accounts_key(console_cluster, page):
    url = console_cluster.workers[0].url
    sign_in(page, url, console_cluster.keys["trader-30"])
    page.click("#signout")
    sign_in(page, url, console_cluster.keys["trader-31"])
    stored = page.evaluate("() => Object.fromEntries(Object.entries(sessionStorage))")
    assert stored == {"atlas.key": console_cluster.keys["trader-31"]}
    assert console_cluster.keys["trader-30"] not in page.content()


def test_the_console_page_is_served_with_a_strict_content_security_policy(console_cluster, page):
    response = page.goto(console_cluster.workers[0].url)
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    violations = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    sign_in(page, console_cluster.workers[0].url, console_cluster.keys["trader-30"])
    expect(page.locator("#book tbody tr").first).to_be_visible(timeout=15_000)
    assert violations == []
