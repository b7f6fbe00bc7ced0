"""A worker with its venue and a headless Chromium (Debian's, driven by Playwright) for the console tests."""
from __future__ import annotations

import shutil
import uuid

import pytest
from playwright.sync_api import sync_playwright

from tests.live import ROOT, Cluster

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def console_cluster(kafka_bootstrap, tmp_path_factory):
    # In demo mode, as `make demo` runs it: the sign-in offers the demo accounts (alice, bob, admin).
    cluster = Cluster(kafka_bootstrap, tmp_path_factory.mktemp("console"), f"ui-{uuid.uuid4().hex[:8]}", venue=True,
                      extra_env={"ATLAS_DEMO_KEYS_FILE": str(ROOT / "config" / "demo-keys.json")})
    cluster.start_worker()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert not errors, f"the page raised: {errors}"
