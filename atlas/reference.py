"""The configuration files a worker loads once: instruments and the accounts directory."""
from __future__ import annotations

from decimal import Decimal
from functools import cache

from atlas.accounts import Directory, Limits
from atlas.instruments import Instrument, load_instruments
from atlas.settings import settings

# For an account of the file that names no limits of its own.
DEFAULT_LIMITS = Limits(max_order_notional=Decimal("100000"))


@cache
def instruments() -> dict[str, Instrument]:
    return load_instruments(settings.instruments_file)


@cache
def directory() -> Directory:
    return Directory.load(settings.accounts_file)
