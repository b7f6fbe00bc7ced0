"""A Prometheus server of our own (Debian's `prometheus` package): the live tests' and `make observe`'s.

`LocalPrometheus` writes a configuration that scrapes ATLAS workers' `/metrics` with a key of the
`metrics` scope (in a 0600 file, as `authorization.credentials_file`) and loads the repository's
alert rules, then runs `prometheus` on loopback with its data in a folder of its own.
Standard library only: `make observe` runs it before any virtualenv exists.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RULES = HERE / "alerts.yml"


def config(targets: list[str], key_file: Path, *, interval: str = "5s", scheme: str = "http",
           rules: list[Path] | None = None) -> dict[str, Any]:
    """The configuration (Prometheus reads JSON as YAML) of one `atlas` job over `targets` (host:port)."""
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval, "scrape_timeout": interval},
        "rule_files": [str(p) for p in (rules if rules is not None else [RULES])],
        "scrape_configs": [{
            "job_name": "atlas", "scheme": scheme, "metrics_path": "/metrics",
            "authorization": {"type": "Bearer", "credentials_file": str(key_file)},
            "static_configs": [{"targets": targets}],
        }],
    }


def binary() -> str:
    """The `prometheus` executable (Debian's package, which `make setup` installs)."""
    found = shutil.which("prometheus")
    if found is None:
        raise RuntimeError("prometheus is not installed: `make setup` installs Debian's package")
    return found


class LocalPrometheus:
    """One Prometheus process on 127.0.0.1:`port`, scraping `targets` with the key `key`."""

    def __init__(self, root: Path, port: int, targets: list[str], key: str, *, interval: str = "5s"):
        self.root, self.port, self.targets, self.interval = Path(root), port, targets, interval
        self.root.mkdir(parents=True, exist_ok=True)
        self.key_file = self.root / "metrics.key"
        fd = os.open(self.key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(key)
        self.config_file = self.root / "prometheus.yml"
        self.config_file.write_text(json.dumps(config(targets, self.key_file, interval=interval), indent=2))
        self.log_file = self.root / "prometheus.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> "LocalPrometheus":
        """Start it and wait until it is ready (its configuration and rules loaded)."""
        log = open(self.log_file, "ab")
        self.proc = subprocess.Popen(
            [binary(), f"--config.file={self.config_file}", f"--storage.tsdb.path={self.root / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=2d"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self.proc.returncode}: {self.tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.25)
        raise TimeoutError(f"prometheus not ready after {timeout}s: {self.tail()}")

    def tail(self, lines: int = 20) -> str:
        """The end of its log."""
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def api(self, path: str, **params: str) -> Any:
        """GET `/api/v1/<path>` with `params`; the decoded `data` (RuntimeError with Prometheus's error otherwise)."""
        query = urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=10) as response:
                doc = json.load(response)
        except urllib.error.HTTPError as error:
            doc = json.load(error)
        if doc.get("status") != "success":
            raise RuntimeError(f"{path} {params}: {doc.get('errorType')}: {doc.get('error')}")
        return doc["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result (a vector's samples, or a scalar's one value)."""
        data = self.api("query", query=expr)
        return data["result"] if data["resultType"] in ("vector", "matrix") else [{"value": data["result"]}]

    def stop(self) -> None:
        """Stop it (SIGTERM, then SIGKILL after 10 s)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
