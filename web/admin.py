"""Admin-only controls: account limits and the kill switches. Each travels as a Kafka command.

An account's limits and kill switch go on `atlas.admin`, which no order producer may write, and
not in the account's order flow on `atlas.commands`: so the answer waits (2 s at most) until the
OMS has applied the change, and says whether it has (`applied`). Orders sent after an applied
kill switch are refused.
"""
from __future__ import annotations

import time
import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from atlas.app import app
from atlas.core.accounts import Limits
from atlas.core.commands import SetAccountKillSwitch, SetLimits
from atlas.core.control import GlobalKillSwitch
from atlas.runtime.reference import directory
from atlas.settings import settings
from atlas.web.account import limits_doc
from atlas.web.common import admin, applied_after, body, on_owner, probe_once_applied, produce, status_once_applied
from atlas.web.problems import ApiView, not_found


ADMIN = settings.topic("admin")


class KillSwitchRequest(BaseModel):
    """Body of `POST /api/v1/admin/kill-switch`: without `account_id` it stops every account."""

    model_config = ConfigDict(extra="forbid")

    engaged: bool
    account_id: str | None = Field(None, min_length=1, max_length=64)
    reason: str = Field("", max_length=200)


@app.page("/api/v1/admin/accounts")
class AccountsView(ApiView):
    """Every account of the directory, with its role (admin)."""

    async def get(self, request: Any) -> Any:
        admin(request)
        accounts = sorted(directory().accounts.values(), key=lambda a: a.account_id)
        return self.ok({"accounts": [{"account_id": a.account_id, "role": a.role.value} for a in accounts]})


@app.page("/api/v1/admin/accounts/{account_id}/limits")
class AccountLimitsView(ApiView):
    """Read or replace an account's limits."""

    async def get(self, request: Any, account_id: str) -> Any:
        admin(request)
        if directory().get(account_id) is None:
            raise not_found(f"account {account_id}")
        written = applied_after(request)
        if written is not None:  # another worker asks whether a change of this account is applied
            return await probe_once_applied(self, request, account_id, ADMIN, written, lambda: True)

        async def local() -> Any:
            return self.ok(limits_doc(account_id))

        return await on_owner(self, request, account_id, local)

    async def put(self, request: Any, account_id: str) -> Any:
        admin(request)
        limits = await body(request, Limits)
        if directory().get(account_id) is None:
            raise not_found(f"account {account_id}")
        cmd = SetLimits(command_id=f"limits-{uuid.uuid4().hex}", account_id=account_id, limits=limits)
        applied = await _applied(request, account_id, cmd)
        return self.ok({"account_id": account_id, "command_id": cmd.command_id,
                        "limits": limits.model_dump(mode="json"), "applied": applied}, status=202)


@app.page("/api/v1/admin/kill-switch")
class KillSwitchView(ApiView):
    """Engage or release the kill switch of one account, or of all."""

    async def post(self, request: Any) -> Any:
        admin(request)
        req = await body(request, KillSwitchRequest)
        command_id = f"kill-{uuid.uuid4().hex}"
        if req.account_id is None:
            message = GlobalKillSwitch(command_id=command_id, engaged=req.engaged, reason=req.reason,
                                       ts=int(time.time() * 1000))
            await produce(settings.topic("risk.control"), "global", message)
        else:
            if directory().get(req.account_id) is None:
                raise not_found(f"account {req.account_id}")
            message = SetAccountKillSwitch(command_id=command_id, account_id=req.account_id,
                                           engaged=req.engaged, reason=req.reason)
            applied = await _applied(request, req.account_id, message)
            return self.ok({"scope": req.account_id, "engaged": req.engaged, "command_id": command_id,
                            "applied": applied}, status=202)
        return self.ok({"scope": "global", "engaged": req.engaged, "command_id": command_id}, status=202)


async def _applied(request: Any, account_id: str, cmd: SetLimits | SetAccountKillSwitch) -> bool:
    """Write an operator's command for the account, and wait until the OMS has applied it (False: not known in time)."""
    written = await produce(ADMIN, account_id, cmd)
    return await status_once_applied(request, account_id, ADMIN, written,
                                     f"/api/v1/admin/accounts/{account_id}/limits", lambda: 204) == 204
