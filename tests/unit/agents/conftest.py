"""Fixtures of the agents' unit tests."""
from __future__ import annotations

import pytest

from atlas.agents import oms as agent
from atlas.oms.state import Retention
from atlas.tables import oms as tables
from atlas.tables import oms_migrate
from tests import helpers
from tests.unit.agents.oms_harness import MemoryTable, keep


@pytest.fixture
def memory_table(monkeypatch) -> MemoryTable:
    """An empty OMS table in memory, alice's account in it as `helpers.account()` builds it."""
    table = MemoryTable()
    monkeypatch.setattr(tables, "oms_table", table)
    monkeypatch.setattr(oms_migrate, "oms_table", table)
    monkeypatch.setattr(agent, "current_market", lambda _: helpers.market())
    keep(monkeypatch, Retention(keep=10_000))
    agent._touched.clear()
    tables.forget_cached()
    table[tables.account_key("alice")] = helpers.account().model_dump_json().encode()
    yield table
    tables._pending = None
    agent._touched.clear()
    tables.forget_cached()
