"""The caller's balances and limits: `/api/v1/balances`, `/api/v1/limits`."""
from __future__ import annotations

from typing import Any

from atlas.app import app
from atlas.cloud import reads
from atlas.oms.engine import new_account
from atlas.oms.state import AccountState
from atlas.runtime.reference import DEFAULT_LIMITS, directory
from atlas.settings import settings
from atlas.tables.market import market_state
from atlas.tables.oms import load_account
from atlas.web.common import account_read, on_owner, principal, read_model
from atlas.web.problems import ApiView, not_found


def account_state(account_id: str) -> AccountState:
    """The stored account, or its starting state when it has had no event yet."""
    account = load_account(account_id)
    if account is not None:
        return account
    return _starting(account_id)


def _starting(account_id: str) -> AccountState:
    config = directory().get(account_id)
    if config is None:
        raise not_found(f"account {account_id}")
    return new_account(config, DEFAULT_LIMITS)


@app.page("/api/v1/balances")
class BalancesView(ApiView):
    """Per asset: available, reserved and total."""

    async def get(self, request: Any) -> Any:
        caller = principal(request)

        async def dynamodb() -> Any:
            found = await read_model(reads.balances, settings.cloud_table_prefix, caller.account_id)
            if found is None:  # the projector has seen no event of the account: its starting balances
                return self.ok(balances_doc(caller.account_id, starting=True))
            return self.ok({"account_id": caller.account_id, "balances": found})

        async def tables() -> Any:
            return self.ok(balances_doc(caller.account_id))

        return await account_read(self, request, caller.account_id, tables=tables, dynamodb=dynamodb)


def balances_doc(account_id: str, starting: bool = False) -> dict:
    """An account's balances as the API shows them (read from this worker's table: call it on the owner), or with
    `starting` those the accounts file gives it."""
    account = account_state(account_id) if not starting else _starting(account_id)
    return {"account_id": account_id, "balances": {asset: b.public() for asset, b in sorted(account.balances.items())}}


def limits_doc(account_id: str) -> dict:
    """An account's limits, its kill switch and the global one, as the API shows them."""
    account = account_state(account_id)
    kill = market_state.get("kill") or {}
    return {"account_id": account_id, "limits": account.limits.model_dump(mode="json"),
            "kill_switch": {"engaged": account.killed, "reason": account.kill_reason},
            "global_kill_switch": {"engaged": bool(kill.get("engaged")), "reason": kill.get("reason", "")}}


@app.page("/api/v1/limits")
class LimitsView(ApiView):
    """The caller's pre-trade risk limits and kill-switch state."""

    async def get(self, request: Any) -> Any:
        caller = principal(request)

        async def local() -> Any:
            return self.ok(limits_doc(caller.account_id))

        return await on_owner(self, request, caller.account_id, local)
