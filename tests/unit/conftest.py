"""Unit tests of the pure core: no broker, no clock, no network."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

# `tests/helpers.py` holds the builders every suite shares.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Warnings are errors in the pure core's tests (strictness the repository's pytest config does not set yet)."""
    here = Path(__file__).resolve().parent
    for item in items:
        if here in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.filterwarnings("error"))
