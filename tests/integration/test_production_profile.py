"""The production profile (issue 14, finding 4): salted keys made by the command line, scopes, revocation without a
restart, and a worker that refuses to start with demo keys where they are not safe."""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid

import aiohttp
import pytest

from atlas.core.accounts import signature
from tests.live import ROOT, Api, Cluster, free_port

pytestmark = pytest.mark.integration


def keys_cli(cluster: Cluster, *args: str) -> str:
    env = {**os.environ, **cluster.env("cli", free_port())}
    done = subprocess.run([sys.executable, "-m", "atlas", "keys", *args], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture(scope="module")
def production(kafka_bootstrap, tmp_path_factory):
    root = tmp_path_factory.mktemp("prod")
    cluster = Cluster(kafka_bootstrap, root, f"pp-{uuid.uuid4().hex[:8]}",
                      extra_env={"ATLAS_DEMO_MODE": "false", "ATLAS_KEYS_FILE": str(root / "keys.json")})
    # The same accounts without their demo keys: only keys from `python -m atlas keys create` sign in.
    doc = json.loads(cluster.accounts_file.read_text())
    for account in doc["accounts"]:
        account.pop("api_key_sha256")
    cluster.accounts_file.write_text(json.dumps(doc))
    cluster.keys = {"trade": keys_cli(cluster, "create", "--account", "trader-05"),
                    "read": keys_cli(cluster, "create", "--account", "trader-05", "--scope", "read")}
    cluster.start_worker()
    cluster.start_worker()  # a second: reads of the accounts it does not own are forwarded, signatures and all
    yield cluster
    cluster.stop()


def test_keys_from_the_command_line_trade_and_read_within_their_scopes(production):
    url = production.workers[0].url
    trader, reader = Api(url, production.keys["trade"]), Api(url, production.keys["read"])
    assert trader.order().status == 202
    refused = reader.order()
    assert refused.status == 403 and refused.body["code"] == "FORBIDDEN"
    assert reader.get("/api/v1/balances").status == 200
    assert Api(url, "trader-05-key").get("/api/v1/balances").status == 401  # the demo-style key is gone


def test_a_key_created_or_revoked_counts_without_a_restart(production):
    url = production.workers[0].url
    fresh = keys_cli(production, "create", "--account", "trader-06")
    api = Api(url, fresh)
    api.wait_for("/api/v1/balances", lambda doc: doc["account_id"] == "trader-06", timeout=15)
    keys_cli(production, "revoke", fresh.split("_")[1])
    deadline = time.monotonic() + 15
    while api.get("/api/v1/balances").status != 401:
        assert time.monotonic() < deadline, "the revoked key still signs in"
        time.sleep(0.2)
    assert Api(url, production.keys["trade"]).get("/api/v1/balances").status == 200  # the others stay


def test_revoking_a_key_closes_its_open_streams(production):
    fresh = keys_cli(production, "create", "--account", "trader-07")
    Api(production.workers[0].url, fresh).wait_for("/api/v1/balances", lambda doc: True, timeout=15)  # reread
    url = production.workers[0].url.replace("http://", "ws://") + "/api/v1/stream"

    async def run() -> None:
        async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
            await ws.send_json({"op": "subscribe", "key": fresh, "symbols": ["SOL-USD"]})
            assert (await ws.receive_json(timeout=15))["type"] == "hello"
            await asyncio.to_thread(keys_cli, production, "revoke", fresh.split("_")[1])
            while (message := await ws.receive(timeout=20)).type is aiohttp.WSMsgType.TEXT:
                if json.loads(message.data).get("type") == "error":
                    assert json.loads(message.data)["code"] == "UNAUTHENTICATED"
            assert ws.close_code == 4401

    asyncio.run(run())


README_SIGNATURE = """sig=$(printf '%s\\n%s\\n%s\\n%s' "$ts" "$method" "$path" "$(printf '%s' "$body" | sha256sum | cut -d' ' -f1)" \\
  | openssl dgst -sha256 -hmac "$SECRET" | sed 's/^.*= //')
printf '%s' "$sig"
"""


def signed(api: Api, secret: str, method: str, path: str, body: bytes = b"", *, stamp: int | None = None,
           send_body: bytes | None = None) -> tuple:
    stamp = str(stamp if stamp is not None else int(time.time() * 1000))
    headers = {"X-Atlas-Timestamp": stamp, "X-Atlas-Signature": signature(secret, stamp, method, path, body)}
    return api.request(method, path, raw=send_body if send_body is not None else (body or None), headers=headers), headers


def test_a_signing_key_needs_every_request_signed_once_and_fresh(production):
    key, secret = keys_cli(production, "create", "--account", "trader-08", "--signing").splitlines()
    api = Api(production.workers[0].url, key)
    deadline = time.monotonic() + 15
    while (refused := api.get("/api/v1/balances")).status == 401 and refused.body["code"] == "UNAUTHENTICATED":
        assert time.monotonic() < deadline, "the new key never signed in"
        time.sleep(0.2)
    assert refused.status == 401 and refused.body["code"] == "SIGNATURE_REQUIRED"  # the key alone is not enough
    answer, headers = signed(api, secret, "GET", "/api/v1/balances")
    assert answer.status == 200 and answer.body["account_id"] == "trader-08"
    again = api.get("/api/v1/balances", headers=headers)
    assert again.status == 401 and again.body["code"] == "SIGNATURE_REPLAYED"
    old, _ = signed(api, secret, "GET", "/api/v1/balances", stamp=int(time.time() * 1000) - 60_000)
    assert old.status == 401 and old.body["code"] == "SIGNATURE_EXPIRED"
    order = json.dumps({"client_order_id": "signed-1", "symbol": "BTC-USD", "side": "BUY", "type": "LIMIT",
                        "quantity": "0.01", "price": "64000.00"}).encode()
    tampered, _ = signed(api, secret, "POST", "/api/v1/orders", order, send_body=order.replace(b"0.01", b"0.02"))
    assert tampered.status == 401 and tampered.body["code"] == "SIGNATURE_INVALID"
    placed, _ = signed(api, secret, "POST", "/api/v1/orders", order)
    assert placed.status == 202
    # A header a client can set is no signature, and odd ones are refused, not errors.
    spoofed = api.get("/api/v1/balances", headers={"X-Atlas-Forwarded": "1"})
    assert spoofed.status == 401 and spoofed.body["code"] == "SIGNATURE_REQUIRED"
    for stamp, sig in (("\u00b2", "0" * 64), (str(int(time.time() * 1000)), "\u00e9" * 64)):
        odd = api.get("/api/v1/balances", headers={"X-Atlas-Timestamp": stamp, "X-Atlas-Signature": sig})
        assert odd.status == 401 and odd.body["code"] in ("SIGNATURE_EXPIRED", "SIGNATURE_INVALID"), odd
    # Each worker answers, the one that does not own the account by forwarding the client's signature.
    for worker in production.workers:
        answer, _ = signed(Api(worker.url, key), secret, "GET", "/api/v1/orders?limit=5")
        assert answer.status == 200 and [o["client_order_id"] for o in answer.body["orders"]][:1] in ([], ["signed-1"])
    # A signed cancel replayed to the other worker passes its check (it never saw the signature), and is the
    # same command: the OMS applies it once.
    order_id = placed.body["order_id"]
    canceled, headers = signed(Api(production.workers[0].url, key), secret, "DELETE", f"/api/v1/orders/{order_id}")
    assert canceled.status == 202, canceled
    replayed = Api(production.workers[1].url, key).request("DELETE", f"/api/v1/orders/{order_id}", headers=headers)
    assert replayed.status == 202, replayed

    def kinds() -> list[str]:
        history = signed(api, secret, "GET", f"/api/v1/orders/{order_id}/executions")[0].body
        return [r["exec_type"] for r in history["executions"]]

    deadline = time.monotonic() + 10
    while kinds() != ["PENDING_NEW", "PENDING_CANCEL"]:
        assert time.monotonic() < deadline, kinds()
        time.sleep(0.2)
    time.sleep(1.0)  # the replay, had it been a second cancel, would have been refused by now (ALREADY_PENDING)
    assert kinds() == ["PENDING_NEW", "PENDING_CANCEL"]


def test_the_readmes_shell_recipe_signs_as_the_worker_checks():
    recipe = "\n".join(README_SIGNATURE.splitlines()[:2])
    assert recipe in (ROOT / "README.md").read_text()
    env = {**os.environ, "ts": "1700000000000", "method": "POST", "path": "/api/v1/orders",
           "body": '{"symbol": "BTC-USD"}', "SECRET": "s" * 43}
    done = subprocess.run(["bash", "-c", README_SIGNATURE], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout == signature("s" * 43, "1700000000000", "POST", "/api/v1/orders", b'{"symbol": "BTC-USD"}')


@pytest.mark.parametrize("env, reason", [
    ({"ATLAS_DEMO_MODE": "false"}, "ATLAS_DEMO_MODE=true"),  # the demo accounts' keys, outside demo mode
    ({"ATLAS_DEMO_MODE": "true", "ATLAS_WEB_HOST": "0.0.0.0"}, "loopback only"),
])
def test_a_worker_with_demo_keys_refuses_to_start_where_they_are_unsafe(kafka_bootstrap, tmp_path, env, reason):
    cluster = Cluster(kafka_bootstrap, tmp_path, f"pr-{uuid.uuid4().hex[:8]}", extra_env=env)
    done = subprocess.run([sys.executable, "-m", "atlas", "worker", "-l", "info"],
                          env={**os.environ, **cluster.env("w", free_port())}, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 78, done.stdout[-2000:] + done.stderr[-2000:]
    assert "refusing to start" in done.stdout + done.stderr and reason in done.stdout + done.stderr
