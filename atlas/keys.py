"""`python -m atlas keys`: create, list and revoke API keys in the keys file (`ATLAS_KEYS_FILE`).

A running worker picks a change up within a second, without a restart. The file holds salted
digests only: a key is printed once, when it is created.
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

from atlas.core.accounts import ROLE_SCOPES, Directory, KeyEntry, Scope, load_keys, salted_digest
from atlas.settings import settings


def new_key(account_id: str, scopes: frozenset[Scope], now_ms: int, *, signing: bool = False) -> tuple[str, KeyEntry]:
    """A fresh key (shown once: 12 hex digits of id, 256 random bits) and its entry for the keys file.

    `signing`: the entry also holds a secret that signs every request made with the key (`entry.signing_secret`).
    """
    key_id = secrets.token_hex(6)
    clear = f"atlas_{key_id}_{secrets.token_urlsafe(32)}"
    salt = secrets.token_hex(16)
    return clear, KeyEntry(key_id=key_id, account_id=account_id, scopes=scopes, salt=salt,
                           sha256=salted_digest(salt, clear), created_at=now_ms,
                           signing_secret=secrets.token_urlsafe(32) if signing else None)


def main(argv: list[str]) -> int:
    """Run `create`, `list` or `revoke` on the keys file; 2 when asked for something that cannot be done."""
    parser = argparse.ArgumentParser(prog="python -m atlas keys", description=__doc__.splitlines()[0])
    parser.add_argument("--file", type=Path, default=settings.keys_file, help="the keys file (ATLAS_KEYS_FILE)")
    verbs = parser.add_subparsers(dest="verb", required=True)
    create = verbs.add_parser("create", help="make a key for an account and print it (once)")
    create.add_argument("--account", required=True)
    create.add_argument("--scope", action="append", choices=[s.value for s in Scope],
                        help="read, trade, admin, metrics (repeat; default: what the account's role allows; "
                             "a Prometheus server's key: --scope metrics alone)")
    create.add_argument("--signing", action="store_true",
                        help="also make a signing secret (printed on a second line): every request with the key "
                             "must then be signed with it")
    verbs.add_parser("list", help="the keys: id, account, scopes, created, revoked (never a key)")
    revoke = verbs.add_parser("revoke", help="revoke a key by its id (the 12 hex digits after atlas_)")
    revoke.add_argument("key_id")
    args = parser.parse_args(argv)
    if args.file is None:
        parser.error("no keys file: set ATLAS_KEYS_FILE or pass --file")
    with _locked(args.file):  # two commands at once cannot lose each other's change
        keys = load_keys(args.file)
        if args.verb == "create":
            return _create(args, keys)
        if args.verb == "revoke":
            return _revoke(args, keys)
    for k in keys:
        print(json.dumps({"key_id": k.key_id, "account_id": k.account_id, "scopes": sorted(s.value for s in k.scopes),
                          "created_at": k.created_at, "revoked_at": k.revoked_at}))
    return 0


def _create(args: argparse.Namespace, keys: list[KeyEntry]) -> int:
    account = Directory.load(settings.accounts_file).get(args.account)
    if account is None:
        print(f"no account {args.account!r} in {settings.accounts_file}", file=sys.stderr)
        return 2
    allowed = ROLE_SCOPES[account.role]
    scopes = frozenset(Scope(s) for s in args.scope) if args.scope else allowed
    if not scopes <= allowed:
        print(f"{args.account} is a {account.role.value}: its keys may have {', '.join(sorted(s.value for s in allowed))}",
              file=sys.stderr)
        return 2
    clear, entry = new_key(args.account, scopes, int(time.time() * 1000), signing=args.signing)
    _write(args.file, [*keys, entry])
    print(clear)
    if entry.signing_secret is not None:
        print(entry.signing_secret)
    print(f"key {entry.key_id} for {args.account} ({', '.join(sorted(s.value for s in scopes))}) written to "
          f"{args.file}; this is the only time the key is shown", file=sys.stderr)
    return 0


def _revoke(args: argparse.Namespace, keys: list[KeyEntry]) -> int:
    if not any(k.key_id == args.key_id for k in keys):
        print(f"no key {args.key_id!r} in {args.file}", file=sys.stderr)
        return 2
    now = int(time.time() * 1000)
    _write(args.file, [k.model_copy(update={"revoked_at": k.revoked_at or now}) if k.key_id == args.key_id else k
                       for k in keys])
    print(f"key {args.key_id} revoked", file=sys.stderr)
    return 0


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _write(path: Path, keys: list[KeyEntry]) -> None:
    """Replace the file at once (a worker never reads half of it), readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"keys": [k.model_dump(mode="json") for k in keys]}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(doc, out, indent=2, sort_keys=True)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
