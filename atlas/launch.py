"""Start and stop ATLAS worker processes: for the demo, the tests and the benchmarks."""
from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path


class WorkerProcess:
    """One `python -m atlas worker` in its own process, configured through ATLAS_* variables."""

    def __init__(self, env: dict[str, str], log_path: Path, name: str = "worker"):
        self.env = {**os.environ, **env}
        self.log_path = Path(log_path)
        self.name = name
        self.port = int(env["ATLAS_WEB_PORT"])
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.env.get("ATLAS_WEB_TLS_CERT") else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def tls(self) -> ssl.SSLContext | None:
        """What a client of this worker trusts: its CA (ATLAS_WEB_TLS_CA) when it speaks HTTPS."""
        if not self.env.get("ATLAS_WEB_TLS_CERT"):
            return None
        return ssl.create_default_context(cafile=self.env.get("ATLAS_WEB_TLS_CA") or None)

    def start(self, timeout: float = 90.0) -> "WorkerProcess":
        """Spawn the worker and wait until `/readyz` answers 200."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "atlas", "worker", "-l", "info"], env=self.env,
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {self.log_path}:\n{self.tail()}")
            if self.ready():
                return
            time.sleep(0.25)
        raise TimeoutError(f"{self.name} not ready after {timeout}s; see {self.log_path}:\n{self.tail()}")

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/readyz", timeout=2, context=self.tls()) as response:
                return response.status == 200 and json.load(response)["status"] == "ready"
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send a signal (SIGKILL by default: no cleanup at all) and reap the process."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=60)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop cleanly (SIGTERM), escalating to SIGKILL after `timeout`."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""
