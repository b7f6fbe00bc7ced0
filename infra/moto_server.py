"""`python -m atlas.infra.moto_server [--tls] ARGS`: moto's server, evaluating bucket policies' TLS condition as S3 does.

moto ignores a condition operator it does not know (`Bool` among them), so a statement that denies
requests "when aws:SecureTransport is false" denies every request, HTTPS too; and a statement whose
condition does not hold counts as a deny, where S3 leaves it out. Here `Bool` is known, a statement
whose condition does not hold does not apply, and each request carries `aws:SecureTransport`: "true"
when this server runs TLS (`--tls`, with moto's own -c/-k), "false" otherwise. The tests then check
that the audit bucket's policy lets HTTPS in and keeps plain HTTP out, as it does in AWS.
"""
from __future__ import annotations

import sys
from typing import Any


def _patch(secure: bool) -> None:
    from moto.iam import access_control, policy_conditions
    from moto.s3 import models

    policy_conditions.CONDITION_OPERATIONS["Bool"] = \
        lambda expected, actual: str(actual).lower() in [str(v).lower() for v in _listed(expected)]
    applies = access_control.IAMPolicyStatement.is_action_permitted

    def is_action_permitted(self: Any, action: str, resource: str = "*", principal: str | None = None,
                            incoming_condition_values: dict[str, str] | None = None) -> Any:
        if self._statement.get("Condition") and not self._check_conditions(incoming_condition_values):
            return access_control.PermissionResult.NEUTRAL  # its condition does not hold: it does not apply
        return applies(self, action, resource, principal, incoming_condition_values)

    def get_permission(self: Any, action: str, resource: str) -> Any:
        if self.policy is None:
            return access_control.PermissionResult.NEUTRAL
        return access_control.IAMPolicy(self.policy.decode()).is_action_permitted(
            action, resource, incoming_condition_values={"aws:SecureTransport": "true" if secure else "false"})

    access_control.IAMPolicyStatement.is_action_permitted = is_action_permitted
    models.FakeBucket.get_permission = get_permission


def _listed(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def main(argv: list[str]) -> None:
    secure = "--tls" in argv
    _patch(secure)
    from moto.server import main as serve

    serve([a for a in argv if a != "--tls"])


if __name__ == "__main__":
    main(sys.argv[1:])
