"""API keys (issue 14, finding 4): high-entropy keys stored salted, scopes, revocation, reload, and the profile check."""
from __future__ import annotations

import json
import time

import pytest

from atlas import keys as keys_cli
from atlas.core.accounts import AccountConfig, Directory, Role, Scope, hash_key
from atlas.keys import new_key
from atlas.runtime import reference
from atlas.settings import settings

NOW = 1_700_000_000_000
ALL = frozenset(Scope)


def accounts() -> list[AccountConfig]:
    return [AccountConfig(account_id="alice"), AccountConfig(account_id="root", role=Role.ADMIN),
            AccountConfig(account_id="demo", api_key_sha256=hash_key("demo-key"))]


def test_a_new_key_is_random_prefixed_and_stored_as_a_salted_digest_only():
    clear, entry = new_key("alice", frozenset({Scope.READ}), NOW)
    again, other = new_key("alice", frozenset({Scope.READ}), NOW)
    assert clear.startswith(f"atlas_{entry.key_id}_") and len(clear) == 62 and clear != again
    assert clear not in entry.model_dump_json() and entry.salt != other.salt
    assert entry.sha256 != hash_key(clear)  # salted: not the digest a table of guesses would hold
    assert entry.matches(clear) and not entry.matches(again)


def test_a_key_signs_in_its_account_with_its_scopes_within_the_roles():
    trade, trade_entry = new_key("alice", frozenset({Scope.READ, Scope.TRADE}), NOW)
    read, read_entry = new_key("alice", frozenset({Scope.READ}), NOW)
    boast, boast_entry = new_key("alice", ALL, NOW)  # a file edited by hand to give a trader admin
    root, root_entry = new_key("root", ALL, NOW)
    directory = Directory(accounts(), [trade_entry, read_entry, boast_entry, root_entry])
    assert directory.authenticate(trade).scopes == {Scope.READ, Scope.TRADE}
    assert directory.authenticate(read).may(Scope.READ) and not directory.authenticate(read).may(Scope.TRADE)
    assert not directory.authenticate(boast).is_admin
    assert directory.authenticate(root).is_admin and directory.authenticate(root).key_id == root_entry.key_id


@pytest.mark.parametrize("tamper", [
    lambda k: k[:-1] + ("A" if k[-1] != "A" else "B"),  # another secret under a real id
    lambda k: "atlas_000000000000_" + k.split("_", 2)[2],  # an unknown id
    lambda k: k.upper(), lambda k: k + "x", lambda k: "", lambda k: "alice-demo-key",
])
def test_anything_but_the_key_is_refused(tamper):
    clear, entry = new_key("alice", ALL, NOW)
    assert Directory(accounts(), [entry]).authenticate(tamper(clear)) is None


def test_a_revoked_key_or_one_of_a_removed_account_is_refused():
    clear, entry = new_key("alice", ALL, NOW)
    assert Directory(accounts(), [entry.model_copy(update={"revoked_at": NOW})]).authenticate(clear) is None
    assert Directory(accounts()[1:], [entry]).authenticate(clear) is None


def test_demo_keys_are_the_unsalted_ones_and_sign_in_with_the_roles_scopes():
    directory = Directory(accounts())
    assert directory.demo_keys == ["demo"]
    assert directory.authenticate("demo-key").scopes == {Scope.READ, Scope.TRADE}


def test_outside_demo_mode_a_demo_key_signs_nobody_in_even_one_added_while_running():
    assert Directory(accounts(), accept_demo=False).authenticate("demo-key") is None


@pytest.mark.parametrize("key", ["caf\u00e9-key", "\udcff", "x" * 257])
def test_keys_that_are_not_ascii_or_too_long_are_refused_without_an_error(key):
    clear, entry = new_key("alice", ALL, NOW)
    assert Directory(accounts(), [entry]).authenticate(key) is None


def configure(monkeypatch, **changes) -> None:
    patched = settings.model_copy(update=changes)
    for module in (reference, keys_cli):
        monkeypatch.setattr(module, "settings", patched)
    monkeypatch.setattr(reference._Loaded, "directory", None)
    monkeypatch.setattr(reference._Loaded, "checked_at", float("-inf"))


def write_accounts(path, *, demo: bool) -> None:
    doc = {"accounts": [{"account_id": "alice", "role": "trader"}, {"account_id": "root", "role": "admin"}]}
    if demo:
        doc["accounts"][0]["api_key_sha256"] = hash_key("alice-demo-key")
    path.write_text(json.dumps(doc))


@pytest.mark.parametrize("demo_accounts, demo_keys_file, demo_mode, host, refused", [
    (True, False, False, "127.0.0.1", "ATLAS_DEMO_MODE=true"),  # demo keys without demo mode
    (False, True, False, "127.0.0.1", "ATLAS_DEMO_KEYS_FILE"),  # the console would hand keys out
    (True, True, True, "0.0.0.0", "loopback only"),  # demo mode beyond loopback
    (False, False, True, "10.1.2.3", "loopback only"),
    (True, True, True, "127.0.0.1", None), (True, False, True, "localhost", None),
    (False, False, False, "0.0.0.0", None),  # the production profile: salted keys only
])
def test_the_profile_check_refuses_demo_keys_where_they_are_unsafe(monkeypatch, tmp_path, demo_accounts,
                                                                   demo_keys_file, demo_mode, host, refused):
    write_accounts(tmp_path / "accounts.json", demo=demo_accounts)
    configure(monkeypatch, accounts_file=tmp_path / "accounts.json", keys_file=tmp_path / "keys.json",
              demo_keys_file=tmp_path / "demo-keys.json" if demo_keys_file else None, demo_mode=demo_mode,
              web_host=host)
    if refused is None:
        reference.check_profile()
    else:
        with pytest.raises(reference.InsecureProfile, match=refused):
            reference.check_profile()


def test_the_profile_check_reads_the_address_the_command_line_binds(monkeypatch, tmp_path):
    # `python -m atlas worker -b 0.0.0.0` changes the bind address after the settings are read.
    write_accounts(tmp_path / "accounts.json", demo=True)
    configure(monkeypatch, accounts_file=tmp_path / "accounts.json", keys_file=None, demo_mode=True,
              web_host="127.0.0.1")
    reference.check_profile("127.0.0.1")
    with pytest.raises(reference.InsecureProfile, match="loopback only"):
        reference.check_profile("0.0.0.0")


def test_keys_made_and_revoked_by_the_command_line_count_without_a_restart(monkeypatch, tmp_path, capsys):
    write_accounts(tmp_path / "accounts.json", demo=False)
    keys_file = tmp_path / "secrets" / "keys.json"
    configure(monkeypatch, accounts_file=tmp_path / "accounts.json", keys_file=keys_file)
    assert reference.directory().keys == {}

    assert keys_cli.main(["create", "--account", "alice", "--scope", "read", "--scope", "trade"]) == 0
    clear = capsys.readouterr().out.strip()
    assert oct(keys_file.stat().st_mode & 0o777) == "0o600" and clear not in keys_file.read_text()
    monkeypatch.setattr(reference._Loaded, "checked_at", float("-inf"))  # the worker looks again each second
    assert reference.directory().authenticate(clear).account_id == "alice"

    key_id = clear.split("_")[1]
    assert keys_cli.main(["revoke", key_id]) == 0
    time.sleep(0.01)  # a new mtime even on a coarse clock: the inode changes anyway (the file is replaced)
    monkeypatch.setattr(reference._Loaded, "checked_at", float("-inf"))
    assert reference.directory().authenticate(clear) is None
    capsys.readouterr()
    assert keys_cli.main(["list"]) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(k["key_id"], k["revoked_at"] is not None) for k in listed] == [(key_id, True)]


def test_the_command_line_refuses_scopes_beyond_the_role_and_unknown_accounts(monkeypatch, tmp_path):
    write_accounts(tmp_path / "accounts.json", demo=False)
    configure(monkeypatch, accounts_file=tmp_path / "accounts.json", keys_file=tmp_path / "keys.json")
    assert keys_cli.main(["create", "--account", "alice", "--scope", "admin"]) == 2
    assert keys_cli.main(["create", "--account", "mallory"]) == 2
    assert keys_cli.main(["revoke", "0123456789ab"]) == 2
    assert not (tmp_path / "keys.json").exists()
