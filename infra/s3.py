"""Local AWS APIs for tests and benchmarks: moto's server in its own process (`pip install moto[server]`).

Standard library (and the `openssl` command, for TLS) only, like the broker script beside it; moto
itself runs in the child process.
"""
from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from atlas.infra.kafka.broker import free_port


class MotoServer:
    """Real AWS APIs (S3, DynamoDB, STS, ...) over HTTP: moto's server in its own process (state lives in that
    process). With `tls`, over HTTPS with a certificate made here, which `env()` names as the CA bundle: a bucket
    policy that refuses plain HTTP then lets its clients in, as S3 does."""

    def __init__(self, log_path: Path, tls: bool = False):
        self.log_path, self.port, self.tls = log_path, free_port(), tls
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def certificate(self) -> Path:
        return self.log_path.with_name(f"moto-{self.port}.crt")

    def env(self) -> dict[str, str]:
        """The usual AWS settings pointing at this server."""
        return {"AWS_ENDPOINT_URL": self.url, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                "AWS_DEFAULT_REGION": "us-east-1", **({"AWS_CA_BUNDLE": str(self.certificate)} if self.tls else {})}

    def client(self, service: str) -> Any:
        """A boto3 client of this server (boto3 imported here: this module needs only the standard library)."""
        import boto3

        return boto3.client(service, endpoint_url=self.url, aws_access_key_id="test", aws_secret_access_key="test",
                            region_name="us-east-1", **({"verify": str(self.certificate)} if self.tls else {}))

    def _make_certificate(self) -> list[str]:
        key = self.certificate.with_suffix(".key")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                        str(self.certificate), "-days", "2", "-subj", "/CN=127.0.0.1", "-addext",
                        "subjectAltName=IP:127.0.0.1,DNS:localhost", "-addext", "basicConstraints=critical,CA:TRUE"],
                       check=True, capture_output=True, stdin=subprocess.DEVNULL)
        return ["-c", str(self.certificate), "-k", str(key)]

    def start(self) -> "MotoServer":
        tls = self._make_certificate() if self.tls else []
        log = open(self.log_path, "ab")
        # moto's server, evaluating the TLS condition of bucket policies as S3 does (see moto_server.py).
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("moto_server.py")), "-H",
                                      "127.0.0.1", "-p", str(self.port), *tls, *(["--tls"] if self.tls else [])],
                                     stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"moto server did not start; see {self.log_path}")

    def freeze(self) -> None:
        """Stop the server process where it stands (SIGSTOP): requests hang and time out, its objects stay."""
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            self.proc.wait(10)
