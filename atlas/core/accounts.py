"""Accounts file: who may trade, starting balances and risk limits; keys file: the API keys that sign them in.

An API key is `atlas_<key id>_<secret>`: 12 hex digits that name its entry in the keys file, and 256
random bits. The keys file stores each key's account, scopes and a salted SHA-256 of it, never the key
(`python -m atlas keys create` prints it once). The demo accounts carry unsalted digests of guessable
keys (`api_key_sha256`, printed in the README): a worker accepts those only in demo mode on loopback.
"""
from __future__ import annotations

import enum
import hashlib
import hmac
import json
import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from atlas.core.values import Dec, Int


class Role(str, enum.Enum):
    TRADER = "trader"
    ADMIN = "admin"


class Scope(str, enum.Enum):
    """What a key may do: read the account, trade for it, administer, or be scraped for metrics (admin accounts only)."""

    READ = "read"
    TRADE = "trade"
    ADMIN = "admin"
    METRICS = "metrics"  # GET /metrics and nothing else: the key a Prometheus server holds


# The scopes a role allows a key of its accounts; a demo key (no scopes of its own) has them all.
ROLE_SCOPES = {Role.TRADER: frozenset({Scope.READ, Scope.TRADE}),
               Role.ADMIN: frozenset({Scope.READ, Scope.TRADE, Scope.ADMIN, Scope.METRICS})}
MAX_KEY_LENGTH = 256
KEY_PATTERN = re.compile(r"atlas_(?P<key_id>[0-9a-f]{12})_[A-Za-z0-9_\-]{43}")


class Limits(BaseModel):
    """Pre-trade risk limits of one account."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_order_notional: Dec = Field(description="Largest quantity x price of one order, in the quote asset")
    max_order_quantity: dict[str, Dec] = Field(
        default_factory=dict, description="Per symbol; a symbol not named is bounded by its instrument only"
    )
    max_position: dict[str, Dec] = Field(
        default_factory=dict, description="Per asset: most the account may hold once open buys fill"
    )
    price_collar_bps: Int = Field(1000, ge=1, le=100_000, description="Allowed distance of a limit price from the reference price")
    max_orders_per_second: Int = Field(50, ge=1, description="Order-rate throttle (token bucket, burst = rate)")
    max_open_orders: Int = Field(500, ge=1)
    restricted_symbols: frozenset[str] = Field(default_factory=frozenset)


class AccountConfig(BaseModel):
    """One entry of the accounts file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    account_id: str
    api_key_sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$",
                                       description="Demo mode only: the unsalted SHA-256 of a demo key")
    role: Role = Role.TRADER
    balances: dict[str, Dec] = Field(default_factory=dict)
    limits: Limits | None = None


class Principal(BaseModel):
    """The caller behind an API key."""

    model_config = ConfigDict(frozen=True)

    account_id: str
    role: Role
    scopes: frozenset[Scope] = frozenset({Scope.READ})
    key_id: str | None = None  # None for a demo key
    signs: bool = False  # its requests must be signed (a key made with --signing)

    @property
    def is_admin(self) -> bool:
        return Scope.ADMIN in self.scopes

    def may(self, scope: Scope) -> bool:
        """True when the caller's key has `scope`."""
        return scope in self.scopes


class KeyEntry(BaseModel):
    """One API key of the keys file: whose it is, what it may do, and a salted digest of it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key_id: str = Field(pattern=r"^[0-9a-f]{12}$")
    account_id: str = Field(min_length=1, max_length=64)
    scopes: frozenset[Scope] = Field(min_length=1)
    salt: str = Field(pattern=r"^[0-9a-f]{32}$")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the salt's bytes followed by the key")
    created_at: int = Field(ge=0, description="ms since the epoch")
    revoked_at: int | None = Field(None, ge=0)
    signing_secret: str | None = Field(None, pattern=r"^[A-Za-z0-9_\-]{43}$",
                                       description="A key made with --signing: every request with it is signed with "
                                                   "this (HMAC-SHA256), so the key alone is not enough")

    def matches(self, api_key: str) -> bool:
        """True when `api_key` is this entry's key (compared in constant time)."""
        return hmac.compare_digest(salted_digest(self.salt, api_key), self.sha256)


def signature(secret: str, timestamp_ms: str, method: str, path_qs: str, body: bytes) -> str:
    """The request signature a key made with --signing sends: hex HMAC-SHA256 of timestamp, method, path and query,
    and the body's SHA-256, one per line."""
    message = f"{timestamp_ms}\n{method.upper()}\n{path_qs}\n{hashlib.sha256(body).hexdigest()}"
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def hash_key(api_key: str) -> str:
    """The unsalted digest the demo accounts store (demo mode only)."""
    return hashlib.sha256(api_key.encode()).hexdigest()


def salted_digest(salt: str, api_key: str) -> str:
    """The stored form of a key: SHA-256 of its salt's bytes followed by the key."""
    return hashlib.sha256(bytes.fromhex(salt) + api_key.encode()).hexdigest()


def load_keys(path: Path | None) -> list[KeyEntry]:
    """The keys file's entries; none when there is no file."""
    if path is None or not Path(path).exists():
        return []
    return [KeyEntry.model_validate(item) for item in json.loads(Path(path).read_text())["keys"]]


class Directory:
    """The loaded accounts and keys files: authentication and starting state."""

    def __init__(self, accounts: list[AccountConfig], keys: list[KeyEntry] = (), *, accept_demo: bool = True):
        self.accounts = {a.account_id: a for a in accounts}
        self._by_hash = {a.api_key_sha256: a for a in accounts if a.api_key_sha256}
        self.keys = {k.key_id: k for k in keys}
        self.accept_demo = accept_demo  # False: a demo key signs nobody in, whatever the file says

    @classmethod
    def load(cls, path: Path, keys_path: Path | None = None, *, accept_demo: bool = True) -> "Directory":
        raw = json.loads(Path(path).read_text())
        return cls([AccountConfig.model_validate(item) for item in raw["accounts"]], load_keys(keys_path),
                   accept_demo=accept_demo)

    @property
    def demo_keys(self) -> list[str]:
        """Accounts whose key is an unsalted digest (the demo accounts): allowed in demo mode on loopback only."""
        return sorted(self._by_hash[digest].account_id for digest in self._by_hash)

    def signing_secret(self, key_id: str | None) -> str | None:
        """The secret that signs the requests of a key made with --signing, or None."""
        entry = self.keys.get(key_id) if key_id else None
        return None if entry is None else entry.signing_secret

    def authenticate(self, api_key: str | None) -> Principal | None:
        """The principal for a clear API key, or None (unknown, revoked, its account gone, or a demo key outside demo mode)."""
        if not api_key or len(api_key) > MAX_KEY_LENGTH or not api_key.isascii():
            return None
        found = KEY_PATTERN.fullmatch(api_key)
        if found is not None:
            entry = self.keys.get(found["key_id"])
            if entry is None or entry.revoked_at is not None or not entry.matches(api_key):
                return None
            account = self.accounts.get(entry.account_id)
            if account is None:
                return None
            return Principal(account_id=account.account_id, role=account.role,
                             scopes=entry.scopes & ROLE_SCOPES[account.role], key_id=entry.key_id,
                             signs=entry.signing_secret is not None)
        if not self.accept_demo:
            return None
        # A lookup by digest: the timing of a dict probe tells nothing useful about a key.
        account = self._by_hash.get(hash_key(api_key))
        if account is None:
            return None
        return Principal(account_id=account.account_id, role=account.role, scopes=ROLE_SCOPES[account.role])

    def get(self, account_id: str) -> AccountConfig | None:
        return self.accounts.get(account_id)
