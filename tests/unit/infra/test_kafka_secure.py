"""The secure profile's ACLs: each principal gets what its role needs and nothing else."""
from __future__ import annotations

from atlas.infra.kafka.secure import ADMIN_TOPICS, TOPIC, USERS, WRITE, grants


def _writable_topics(principal: str) -> set[tuple[str, bool]]:
    return {(g.resource_name, g.prefixed) for g in grants("app", "pfx")
            if g.principal == principal and g.resource_type == TOPIC and g.operation in (WRITE, 2)}


def test_only_the_worker_may_use_the_apps_topics_groups_and_transactions():
    assert _writable_topics("User:worker") == {("pfx.", True), ("app-", True)}
    others = {g.principal for g in grants("app", "pfx") if g.resource_type != TOPIC or g.prefixed}
    assert others == {"User:worker"}


def test_an_order_producer_writes_commands_only_and_an_operator_the_admin_topics_only():
    assert _writable_topics("User:producer") == {("pfx.commands", False)}
    assert _writable_topics("User:admin") == {(f"pfx.{name}", False) for name in ADMIN_TOPICS}


def test_every_granted_principal_is_a_user_the_broker_creates_and_the_broker_needs_no_grant():
    granted = {g.principal.removeprefix("User:") for g in grants("app", "pfx")}
    assert granted == set(USERS) - {"broker"}
