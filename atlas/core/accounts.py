"""Accounts file: who may trade, with which key, starting balances and risk limits.

API keys are stored as SHA-256 hex digests; the clear keys of the demo accounts are
printed in the README, never stored.
"""
from __future__ import annotations

import enum
import hashlib
import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from atlas.core.values import Dec, Int


class Role(str, enum.Enum):
    TRADER = "trader"
    ADMIN = "admin"


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
    api_key_sha256: str
    role: Role = Role.TRADER
    balances: dict[str, Dec] = Field(default_factory=dict)
    limits: Limits | None = None


class Principal(BaseModel):
    """The caller behind an API key."""

    model_config = ConfigDict(frozen=True)

    account_id: str
    role: Role

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN


def hash_key(api_key: str) -> str:
    """The stored form of an API key."""
    return hashlib.sha256(api_key.encode()).hexdigest()


class Directory:
    """The loaded accounts file: authentication and starting state."""

    def __init__(self, accounts: list[AccountConfig]):
        self.accounts = {a.account_id: a for a in accounts}
        self._by_hash = {a.api_key_sha256: a for a in accounts}

    @classmethod
    def load(cls, path: Path) -> "Directory":
        raw = json.loads(Path(path).read_text())
        return cls([AccountConfig.model_validate(item) for item in raw["accounts"]])

    def authenticate(self, api_key: str | None) -> Principal | None:
        """The principal for a clear API key, or None."""
        if not api_key:
            return None
        # A lookup by digest: the timing of a dict probe tells nothing useful about a key.
        account = self._by_hash.get(hash_key(api_key))
        return None if account is None else Principal(account_id=account.account_id, role=account.role)

    def get(self, account_id: str) -> AccountConfig | None:
        return self.accounts.get(account_id)
