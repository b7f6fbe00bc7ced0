"""The configuration files a worker loads once: instruments and the accounts directory."""
from __future__ import annotations

import json
import logging
import os
from decimal import Decimal
from functools import cache
from pathlib import Path
from time import monotonic

from atlas.core.accounts import Directory, Limits
from atlas.core.instruments import Instrument, load_instruments
from atlas.settings import settings

log = logging.getLogger(__name__)

# For an account of the file that names no limits of its own.
DEFAULT_LIMITS = Limits(max_order_notional=Decimal("100000"))


@cache
def instruments() -> dict[str, Instrument]:
    return load_instruments(settings.instruments_file)


_RELOAD_CHECK_S = 1.0  # how often a worker looks whether the accounts or keys file changed


class _Loaded:
    directory: Directory | None = None
    stamp: tuple = ()
    checked_at = float("-inf")


def directory() -> Directory:
    """The accounts and keys, reloaded when either file changes (a key created or revoked counts within a second)."""
    now = monotonic()
    if now - _Loaded.checked_at < _RELOAD_CHECK_S and _Loaded.directory is not None:
        return _Loaded.directory
    _Loaded.checked_at = now
    stamp = (_stamp(settings.accounts_file), _stamp(settings.keys_file))
    if stamp != _Loaded.stamp or _Loaded.directory is None:
        try:
            loaded = Directory.load(settings.accounts_file, settings.keys_file, accept_demo=settings.demo_mode)
        except (OSError, ValueError) as exc:
            if _Loaded.directory is None:
                raise
            log.error("accounts or keys file unreadable, keeping the ones loaded before: %s", exc)
            return _Loaded.directory
        if _Loaded.directory is not None:
            log.info("accounts and keys reloaded: %d accounts, %d keys (%d revoked)", len(loaded.accounts),
                     len(loaded.keys), sum(k.revoked_at is not None for k in loaded.keys.values()))
        _Loaded.directory, _Loaded.stamp = loaded, stamp
    return _Loaded.directory


def _stamp(path: Path | None) -> tuple:
    try:
        found = os.stat(path) if path is not None else None
    except FileNotFoundError:
        return (path, None)
    return (path, found and (found.st_mtime_ns, found.st_size, found.st_ino))


LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


class InsecureProfile(Exception):
    """The worker's settings would serve demo keys where they are not safe."""


def check_profile(bind: str | None = None) -> None:
    """Refuse demo keys outside demo mode on loopback: raise `InsecureProfile` saying what to change.

    `bind`: the address the web server binds to, when the command line changed it (`worker -b`).

    Demo keys are the demo accounts' unsalted digests of keys printed in the README, and the demo
    keys file that the console hands out. Production keys come from `python -m atlas keys create`.
    """
    demo = directory().demo_keys
    handed_out = settings.demo_keys_file is not None
    bind = (bind or settings.web_host).lower()
    loopback = bind in LOOPBACK
    if (demo or handed_out) and not settings.demo_mode:
        what = f"accounts with demo keys ({', '.join(demo[:5])}{'...' if len(demo) > 5 else ''})" if demo \
            else "ATLAS_DEMO_KEYS_FILE"
        raise InsecureProfile(f"{what} in {settings.accounts_file}: set ATLAS_DEMO_MODE=true to run the demo on "
                              "loopback, or give accounts without api_key_sha256 and keys made by "
                              "`python -m atlas keys create`")
    if settings.demo_mode and not loopback:
        raise InsecureProfile(f"demo mode serves its keys on loopback only, not on {bind}: unset "
                              "ATLAS_DEMO_MODE and use keys made by `python -m atlas keys create`")


@cache
def demo_keys() -> dict[str, str]:
    """Demo mode's clear keys by account (empty outside demo mode); a key that does not sign its account in is left out."""
    path = settings.demo_keys_file
    if path is None or not settings.demo_mode:
        return {}
    keys = json.loads(Path(path).read_text())["keys"]
    accounts = directory()
    return {account_id: key for account_id, key in keys.items()
            if (found := accounts.authenticate(key)) is not None and found.account_id == account_id}
