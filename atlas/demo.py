"""`python -m atlas.demo`: start a worker on the local broker and walk an order through the API.

`make demo` runs the broker first. The worker keeps running afterwards (for the README's
curl commands); `python -m atlas.demo --stop` stops it.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from decimal import Decimal

from atlas.launch import WorkerProcess
from atlas.settings import ROOT
from atlas.watch import watch

DEMO_DIR = ROOT / ".atlas" / "demo"
PID_FILE = DEMO_DIR / "worker.pid"
BASE = "http://127.0.0.1:8080"


def call(method: str, path: str, body: dict | None = None, key: str = "alice-demo-key") -> tuple[int, object]:
    """One API call; returns status and decoded JSON."""
    request = urllib.request.Request(BASE + path, method=method, data=json.dumps(body).encode() if body else None,
                                     headers={"X-API-Key": key, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def show(title: str, method: str, path: str, body: dict | None = None) -> object:
    status, doc = call(method, path, body)
    print(f"\n$ {method} {path}" + (f"  {json.dumps(body)}" if body else ""))
    if isinstance(doc, dict) and "executions" in doc:
        # One line per execution report: the order's whole life at a glance.
        print(f"  -> {status}, {len(doc['executions'])} execution reports:")
        for e in doc["executions"]:
            trade = f"  {e['last_qty']} @ {e['last_px']}" if e["exec_type"] == "TRADE" else ""
            print(f"     {e['seq']:>2}  {e['exec_type']:<16s} {e['status']:<16s} price {e['price']}  "
                  f"cum {e['cum_qty']}  leaves {e['leaves_qty']}{trade}")
    else:
        print(f"  -> {status} {json.dumps(doc, indent=2)[:1500]}")
    return doc


def start_worker() -> None:
    if PID_FILE.exists() and _alive(int(PID_FILE.read_text())):
        print(f"worker already running (pid {PID_FILE.read_text().strip()})")
        return
    env = {"ATLAS_DATA_DIR": str(DEMO_DIR / "data"), "ATLAS_WEB_PORT": "8080",
           "ATLAS_DEMO_KEYS_FILE": str(ROOT / "config" / "demo-keys.json"), "ATLAS_DEMO_MODE": "true",
           "ATLAS_KAFKA_BOOTSTRAP": os.environ.get("ATLAS_KAFKA_BOOTSTRAP", "127.0.0.1:19092")}
    worker = WorkerProcess(env, DEMO_DIR / "worker.log", "demo worker")
    worker.start(timeout=120)
    PID_FILE.write_text(str(worker.proc.pid))
    print(f"worker ready at {BASE} (pid {worker.proc.pid}, log {worker.log_path})")


def stop_worker() -> None:
    if not PID_FILE.exists():
        return
    pid = int(PID_FILE.read_text())
    if _alive(pid):
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            if not _alive(pid):
                break
            time.sleep(0.2)
    PID_FILE.unlink(missing_ok=True)
    print("demo worker stopped")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def walk_through() -> None:
    """Place, query, replace and cancel an order as alice, printing each call."""
    client_order_id = f"demo-{uuid.uuid4().hex[:8]}"
    placed = show("place", "POST", "/api/v1/orders", {
        "client_order_id": client_order_id, "symbol": "BTC-USD", "side": "BUY", "type": "LIMIT",
        "quantity": "0.25", "price": "64000.00", "time_in_force": "GTC"})
    order_id = placed["order_id"]
    time.sleep(0.5)
    show("query", "GET", f"/api/v1/orders/{order_id}")
    show("balances", "GET", "/api/v1/balances")
    show("risk reject", "POST", "/api/v1/orders", {
        "client_order_id": f"{client_order_id}-big", "symbol": "BTC-USD", "side": "BUY", "type": "LIMIT",
        "quantity": "50", "price": "64000.00"})
    show("bad input", "POST", "/api/v1/orders", {"client_order_id": "x", "symbol": "DOGE-USD", "side": "BUY",
                                                 "type": "LIMIT", "quantity": "1", "price": "1"})
    show("replace", "PATCH", f"/api/v1/orders/{order_id}", {"price": "64100.00"})
    time.sleep(1.0)
    show("cancel", "DELETE", f"/api/v1/orders/{order_id}")
    time.sleep(1.0)
    show("executions", "GET", f"/api/v1/orders/{order_id}/executions")
    marketable = show("marketable buy", "POST", "/api/v1/orders", {
        "client_order_id": f"{client_order_id}-lift", "symbol": "BTC-USD", "side": "BUY", "type": "LIMIT",
        "quantity": "0.01", "price": "66000.00", "time_in_force": "IOC"})
    time.sleep(1.0)
    show("its executions", "GET", f"/api/v1/orders/{marketable['order_id']}/executions")
    print("\nThe venue in the worker acknowledged the resting order, replaced and cancelled it, and filled the"
          " marketable one against its market maker.")
    live_market(seconds=8)
    audit_trail()
    print(f"Open the console: {BASE}/ and sign in as alice (demo mode offers the demo accounts); the README's "
          "'The console' walks an order to its fill")
    print(f"Try it yourself: curl -s -H 'X-API-Key: alice-demo-key' {BASE}/api/v1/orders | python3 -m json.tool")
    print("Stop everything with: make demo-down")


def live_market(seconds: float) -> None:
    """Print the market (`python -m atlas watch`) while bob trades a little against the maker."""
    print(f"\nThe live market for {seconds:g} s (top of book as the mid moves, and bob's trades):")
    stop = threading.Event()

    def bob_trades() -> None:
        n = 0
        while not stop.wait(0.7):
            _, book = call("GET", "/api/v1/marketdata/BTC-USD", key="bob-demo-key")
            mid = Decimal(book["mid"])
            side = "BUY" if n % 2 == 0 else "SELL"
            price = (mid * (Decimal("1.002") if side == "BUY" else Decimal("0.998"))).quantize(Decimal("0.01"))
            call("POST", "/api/v1/orders", {"client_order_id": f"demo-bob-{uuid.uuid4().hex[:8]}", "symbol": "BTC-USD",
                                            "side": side, "type": "LIMIT", "quantity": "0.002", "price": str(price),
                                            "time_in_force": "IOC"}, key="bob-demo-key")
            n += 1

    trader = threading.Thread(target=bob_trades, daemon=True)
    trader.start()
    try:
        asyncio.run(watch({"BTC-USD"}, seconds))
    finally:
        stop.set()
        trader.join(timeout=5)
    print("Watch it yourself: python -m atlas watch BTC-USD ETH-USD SOL-USD")


def audit_trail() -> None:
    """Check the audit trail the worker's exporter wrote: verify it, and replay it against the live tables."""
    print("\nThe audit trail (every message of every topic, in .atlas/audit/):")
    for args in (["verify"], ["replay"]):
        command = [sys.executable, "-m", "atlas", "audit", *args]
        done = subprocess.run(command, capture_output=True, text=True, timeout=180, cwd=ROOT)
        lines = done.stdout.strip().splitlines()
        shown = [line for line in lines if "problem" in line or "difference" in line] or lines[-1:]
        print(f"$ python -m atlas audit {' '.join(args)}\n  " + "\n  ".join(shown[-10:] or [done.stderr.strip()[-500:]]))
    print("Run them again any time; `python -m atlas audit export DIR` writes the trail as plain JSONL.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stop", action="store_true", help="stop the demo worker")
    args = parser.parse_args()
    if args.stop:
        stop_worker()
        return
    DEMO_DIR.mkdir(parents=True, exist_ok=True)
    start_worker()
    walk_through()


if __name__ == "__main__":
    main()
