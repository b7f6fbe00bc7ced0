"""The configuration files a worker loads once: instruments and the accounts directory."""
from __future__ import annotations

import json
from decimal import Decimal
from functools import cache
from pathlib import Path

from atlas.core.accounts import Directory, Limits
from atlas.core.instruments import Instrument, load_instruments
from atlas.settings import settings

# For an account of the file that names no limits of its own.
DEFAULT_LIMITS = Limits(max_order_notional=Decimal("100000"))


@cache
def instruments() -> dict[str, Instrument]:
    return load_instruments(settings.instruments_file)


@cache
def directory() -> Directory:
    return Directory.load(settings.accounts_file)


@cache
def demo_keys() -> dict[str, str]:
    """Demo mode's clear keys by account (empty outside demo mode); a key that does not sign its account in is left out."""
    path = settings.demo_keys_file
    if path is None:
        return {}
    keys = json.loads(Path(path).read_text())["keys"]
    accounts = directory()
    return {account_id: key for account_id, key in keys.items()
            if (found := accounts.authenticate(key)) is not None and found.account_id == account_id}
