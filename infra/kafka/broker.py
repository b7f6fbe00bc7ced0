"""Single-node Apache Kafka (KRaft) broker for local runs and tests.

Standard library only: this runs before any virtualenv exists. The broker's
jars come from Maven Central through ``pom.xml`` beside this file.

CLI: ``python infra/kafka/broker.py {fetch,up,down,status} [--secure [--app ID]]``
(env: ATLAS_KAFKA_PORT, ATLAS_KAFKA_DATA, ATLAS_KAFKA_CACHE). ``--secure`` runs the
secure profile of ``secure.py`` (SASL_SSL, SCRAM users, ACLs) on port 19094 by default.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from typing import Iterator

if __package__:
    from . import secure
    from .wire import Connection, probe
else:  # run as a script (or loaded as a file): the sibling modules
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import secure  # type: ignore[no-redef]
    from wire import Connection, probe  # type: ignore[no-redef]

HERE = Path(__file__).resolve().parent
POM = HERE / "pom.xml"
LOG4J_CONFIG = HERE / "log4j2.yaml"
REPO_ROOT = HERE.parent.parent

DEFAULT_PORT = 19092
DEFAULT_VERSION = "4.1.1"
NODE_ID = 1
MARKER = ".complete"
JVM_OPTS = ("-Xms256m", "-Xmx1g", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-Djava.awt.headless=true")

_EXCEPTION = re.compile(r"[\w.$]+(Exception|Error): .*")


class BrokerError(RuntimeError):
    """Raised when the local broker cannot be fetched, formatted, started or stopped."""

    def __init__(self, summary: str, details: str = "") -> None:
        super().__init__(f"{summary}\n{details}" if details else summary)
        self.summary = summary
        self.details = details


def free_port() -> int:
    """Return a free TCP port p on 127.0.0.1 such that p+1 is free too."""
    for _ in range(100):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port < 65535 and _port_free(port) and _port_free(port + 1):
            return port
    raise BrokerError("could not find two consecutive free ports")


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        # As the broker's own listener does: a restart on the same port must not be refused
        # because its clients' old connections linger in TIME_WAIT.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _default_cache_dir(version: str) -> Path:
    env = os.environ.get("ATLAS_KAFKA_CACHE")
    if env:
        return Path(env).expanduser().resolve()
    return Path.home() / ".cache" / "atlas" / f"kafka-{version}" / "libs"


def _find_java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    java = shutil.which("java")
    if not java:
        raise BrokerError("java not found: install a JDK (17+) or set JAVA_HOME")
    return java


def _find_mvn() -> str:
    mvn = shutil.which("mvn")
    if not mvn:
        raise BrokerError("mvn not found: install Maven 3 to download the Kafka jars")
    return mvn


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        with open(path, errors="replace") as handle:
            return "".join(deque(handle, maxlen=lines))
    except OSError:
        return f"(no log at {path})"


def _first_error(text: str) -> str:
    """The most telling error line of a Java log or stack trace, or ""."""
    lines = text.splitlines()
    exceptions = [m.group(0) for m in map(_EXCEPTION.search, lines) if m]
    errors = [line for line in lines if " ERROR " in line or " FATAL " in line]
    return (exceptions or errors or [""])[0].strip()


def _new_cluster_id() -> str:
    # The storage tool takes an id that starts with "-" for an option (1 id in 64).
    while True:
        cluster_id = base64.urlsafe_b64encode(secrets.token_bytes(16)).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


def _is_kafka_process(pid: int) -> bool:
    """True unless /proc shows the pid belongs to something other than kafka.Kafka."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return not Path("/proc/self").exists() and _pid_alive(pid)
    except OSError:
        return _pid_alive(pid)
    return b"kafka.Kafka" in cmdline.split(b"\0")


# --- The broker --------------------------------------------------------------


class LocalBroker:
    """A single-node KRaft Kafka broker+controller living in one data directory."""

    def __init__(
        self,
        data_dir: Path,
        port: int = DEFAULT_PORT,
        controller_port: int | None = None,
        version: str = DEFAULT_VERSION,
        cache_dir: Path | None = None,
        secure: bool = False,
    ) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.port = port
        # The secure profile (infra/kafka/secure.py): SASL_SSL with SCRAM users and ACLs.
        self.secure = secure
        self.controller_port = controller_port if controller_port is not None else port + 1
        self.version = version
        # Resolved because java runs with cwd=data_dir and gets "-cp cache_dir/*".
        self.cache_dir = Path(cache_dir).expanduser().resolve() if cache_dir else _default_cache_dir(version)
        self._proc: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return (f"LocalBroker({str(self.data_dir)!r}, port={self.port}, controller_port={self.controller_port}, "
                f"secure={self.secure})")

    def __enter__(self) -> "LocalBroker":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # paths

    @property
    def bootstrap(self) -> str:
        """The bootstrap address clients should use, "127.0.0.1:PORT"."""
        return f"127.0.0.1:{self.port}"

    @property
    def config_path(self) -> Path:
        """The broker's server.properties."""
        return self.data_dir / "server.properties"

    @property
    def log_dir(self) -> Path:
        """Directory of the broker's own logs (server.log, stdout.log)."""
        return self.data_dir / "logs"

    @property
    def storage_dir(self) -> Path:
        """Kafka's log.dirs: topic partitions and the KRaft metadata log."""
        return self.data_dir / "storage"

    @property
    def pid_file(self) -> Path:
        """File holding the pid of the running broker."""
        return self.data_dir / "broker.pid"

    @property
    def security(self) -> secure.Material:
        """The secure profile's CA, certificate and passwords (made at the first format)."""
        return secure.Material(self.data_dir / "security")

    @property
    def server_log(self) -> Path:
        """The broker's main log file."""
        return self.log_dir / "server.log"

    # fetch

    def fetch(self) -> Path:
        """Download the Kafka jars into the cache dir (once) and return that dir."""
        _find_java()
        if self._fetched():
            return self.cache_dir
        with _file_lock(self.cache_dir.parent / f".{self.cache_dir.name}.lock"):
            if not self._fetched():
                self._download()
        return self.cache_dir

    def _fetched(self) -> bool:
        try:
            return (self.cache_dir / MARKER).read_text().startswith(self._marker_header())
        except OSError:
            return False

    def _marker_header(self) -> str:
        return f"kafka {self.version}\n"

    def _download(self) -> None:
        # Without the marker the directory may hold a partial download.
        shutil.rmtree(self.cache_dir, ignore_errors=True)
        self.cache_dir.mkdir(parents=True)
        cmd = [
            _find_mvn(), "-q", "-B", "-f", str(POM),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={self.cache_dir}",
            "-DincludeScope=runtime",
            f"-Dkafka.version={self.version}",
        ]
        result = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        jars = sorted(p.name for p in self.cache_dir.glob("*.jar"))
        if result.returncode != 0 or f"kafka_2.13-{self.version}.jar" not in jars:
            output = (result.stdout + result.stderr).strip().splitlines()[-40:]
            raise BrokerError(f"mvn failed to fetch Kafka {self.version} (exit {result.returncode})", "\n".join(output))
        (self.cache_dir / MARKER).write_text(self._marker_header() + "\n".join(jars) + "\n")

    # format

    def properties(self) -> dict[str, str]:
        """The broker's server.properties as a dict."""
        ctl = f"127.0.0.1:{self.controller_port}"
        return {
            "process.roles": "broker,controller",
            "node.id": str(NODE_ID),
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://{ctl}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "inter.broker.listener.name": "PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "controller.quorum.bootstrap.servers": ctl,
            "log.dirs": str(self.storage_dir),
            "num.partitions": "8",
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "8",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "4",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "share.coordinator.state.topic.num.partitions": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "true",
            "delete.topic.enable": "true",
            # The cleaner allocates this buffer up front; 128 MB of a 1 GB heap
            # is wasted on the handful of compacted topics a dev broker has.
            "log.cleaner.dedupe.buffer.size": str(16 * 1024 * 1024),
            **(self.security.properties(self.port, self.controller_port) if self.secure else {}),
        }

    def is_formatted(self) -> bool:
        """True if the storage directory has been formatted."""
        return (self.storage_dir / "meta.properties").is_file()

    def format(self) -> None:
        """Write server.properties and format the storage if not done yet."""
        self._check_controller_port()
        self._check_profile()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(exist_ok=True)
        if self.secure:
            self.security.ensure()
            self.security.write_env_files(self.bootstrap)
        lines = [f"{key}={value}" for key, value in self.properties().items()]
        # The secure profile's properties hold the broker's password: readable by its owner only.
        secure.write_private(self.config_path, "# Written by atlas infra/kafka/broker.py\n" + "\n".join(lines) + "\n")
        if not self.is_formatted():
            self._run_storage_format()

    def _check_profile(self) -> None:
        # The SCRAM users are written into the storage when it is formatted.
        if self.is_formatted() and self.secure != self.security.users_file.is_file():
            wanted, made = ("secure", "plaintext") if self.secure else ("plaintext", "secure")
            raise BrokerError(f"{self.data_dir} was formatted for a {made} broker, not a {wanted} one: "
                              "use another data dir or wipe this one")

    def _check_controller_port(self) -> None:
        # --standalone records the controller endpoint in the formatted
        # metadata log, so a formatted dir cannot move to another port.
        if not self.is_formatted() or not self.config_path.is_file():
            return
        old = _read_properties(self.config_path).get("controller.quorum.bootstrap.servers")
        new = self.properties()["controller.quorum.bootstrap.servers"]
        if old and old != new:
            raise BrokerError(
                f"{self.data_dir} was formatted for controller {old}, not {new}: "
                "use the same ports or wipe the data dir"
            )

    def _run_storage_format(self) -> None:
        cmd = [
            *self._java_cmd(),
            "kafka.tools.StorageTool", "format", "--standalone",
            "-t", _new_cluster_id(), "-c", str(self.config_path),
            *(self.security.scram_arguments() if self.secure else []),
        ]
        result = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            output = (result.stdout + result.stderr).strip()
            summary = f"formatting {self.storage_dir} failed (exit {result.returncode})"
            raise BrokerError(_with_reason(summary, output), output)

    def _java_cmd(self) -> list[str]:
        return [
            _find_java(),
            *JVM_OPTS,
            f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
            # log4j's own shutdown hook races Kafka's and drops the shutdown log.
            "-Dlog4j2.shutdownHookEnabled=false",
            f"-Dkafka.logs.dir={self.log_dir}",
            "-cp", str(self.cache_dir / "*"),
        ]

    # run

    def read_pid(self) -> int | None:
        """The pid recorded in the pid file, or None."""
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def is_running(self) -> bool:
        """True if the broker process of this data dir is alive."""
        pid = self.read_pid()
        if pid is None:
            return False
        if self._proc is not None and self._proc.pid == pid:
            return self._proc.poll() is None
        return _pid_alive(pid) and _is_kafka_process(pid)

    def is_ready(self) -> bool:
        """True if the broker is running and serving requests."""
        return self.is_running() and self._probe()

    def _probe(self, timeout: float = 2.0) -> bool:
        if not self.secure:
            return probe("127.0.0.1", self.port, timeout)
        return probe("127.0.0.1", self.port, timeout, tls=self.tls_context(),
                     credentials=(secure.SUPER_USER, self.security.passwords()[secure.SUPER_USER]))

    def tls_context(self) -> ssl.SSLContext:
        """A client TLS context that trusts the secure profile's CA."""
        return ssl.create_default_context(cafile=str(self.security.ca_file))

    def grant(self, app_id: str = "atlas", topic_prefix: str | None = None) -> None:
        """Create the secure profile's ACLs for an app (see secure.grants); adding them again changes nothing."""
        if not self.secure:
            raise BrokerError("ACLs need the secure profile: this broker lets every client do everything")
        password = self.security.passwords()[secure.SUPER_USER]
        with Connection("127.0.0.1", self.port, timeout=10.0, tls=self.tls_context()) as conn:
            conn.sign_in(secure.SUPER_USER, password, secure.MECHANISM)
            conn.create_acls(secure.grants(app_id, topic_prefix or app_id))

    def start(self, timeout: float = 90) -> None:
        """Start the broker (fetching and formatting first) and wait until it is ready."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with _file_lock(self.data_dir / ".lock"):
            if self.is_running():
                self._wait_ready(timeout)
                return
            self._spawn()
            try:
                self._wait_ready(timeout)
            except BrokerError:
                self.stop()  # don't leave a half-started JVM behind
                raise

    def _spawn(self) -> None:
        self.fetch()
        self.format()
        if not _port_free(self.port) or not _port_free(self.controller_port):
            raise BrokerError(f"port {self.port} or {self.controller_port} is already in use")
        cmd = [*self._java_cmd(), "kafka.Kafka", str(self.config_path)]
        with open(self.log_dir / "stdout.log", "ab") as out:
            self._proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                cwd=self.data_dir, start_new_session=True,
            )
        self.pid_file.write_text(f"{self._proc.pid}\n")

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.is_running():
                self.pid_file.unlink(missing_ok=True)
                tail = self._log_tail()
                summary = _with_reason("Kafka broker exited during start-up", tail)
                raise BrokerError(f"{summary} (logs: {self.log_dir})", tail)
            if self._probe(timeout=min(2.0, max(0.1, deadline - time.monotonic()))):
                return
            time.sleep(0.2)
        raise BrokerError(f"Kafka broker not ready after {timeout:g}s, see {self.log_dir}", self._log_tail())

    def _log_tail(self) -> str:
        stdout = _tail(self.log_dir / "stdout.log").strip()
        server = _tail(self.server_log)
        return (f"--- stdout.log ---\n{stdout}\n--- server.log ---\n" if stdout else "") + server

    def stop(self, timeout: float = 30) -> None:
        """Stop the broker: SIGTERM, then SIGKILL after timeout. No-op if not running."""
        pid = self.read_pid()
        if pid is not None and self.is_running():
            os.kill(pid, signal.SIGTERM)
            if not self._wait_exit(pid, timeout):
                os.kill(pid, signal.SIGKILL)
                self._wait_exit(pid, 10)
        self.pid_file.unlink(missing_ok=True)
        self._proc = None

    def _wait_exit(self, pid: int, timeout: float) -> bool:
        if self._proc is not None and self._proc.pid == pid:
            try:
                self._proc.wait(timeout)
                return True
            except subprocess.TimeoutExpired:
                return False
        deadline = time.monotonic() + timeout
        while _pid_alive(pid):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True

    def wipe(self) -> None:
        """Stop the broker and delete its data dir."""
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)


def _with_reason(summary: str, output: str) -> str:
    reason = _first_error(output)
    return f"{summary}: {reason}" if reason else summary


def _read_properties(path: Path) -> dict[str, str]:
    props = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            props[key.strip()] = value.strip()
    return props


# --- CLI ---------------------------------------------------------------------


def broker_from_env(secure_profile: bool = False) -> LocalBroker:
    """A LocalBroker configured from ATLAS_KAFKA_PORT and ATLAS_KAFKA_DATA (the secure one on the next ports)."""
    port = int(os.environ.get("ATLAS_KAFKA_PORT", DEFAULT_PORT + 2 * secure_profile))
    default_data = REPO_ROOT / ".atlas" / ("kafka-secure" if secure_profile else "kafka")
    data = Path(os.environ.get("ATLAS_KAFKA_DATA", default_data))
    return LocalBroker(data, port=port, secure=secure_profile)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI: fetch, up, down or status, of the plaintext broker or (--secure) the secure one."""
    parser = argparse.ArgumentParser(prog="broker.py", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("fetch", "up", "down", "status"))
    parser.add_argument("--secure", action="store_true",
                        help="the secure profile: SASL_SSL, SCRAM users, ACLs (its own data dir and port)")
    parser.add_argument("--app", default="atlas", help="with --secure: the app id the ACLs grant (default atlas)")
    parser.add_argument("--topic-prefix", help="with --secure: the app's topic prefix (default: the app id)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        broker = broker_from_env(args.secure)
        return _run_command(args.command, broker, args.app, args.topic_prefix)
    except BrokerError as exc:
        print(f"broker.py {args.command}: {exc.summary}", file=sys.stderr)
        return 1
    except (OSError, ValueError, secure.SecurityError) as exc:
        print(f"broker.py {args.command}: {exc}", file=sys.stderr)
        return 1


def _run_command(command: str, broker: LocalBroker, app_id: str, topic_prefix: str | None) -> int:
    if command == "fetch":
        print(broker.fetch())
    elif command == "up":
        broker.start()
        print(broker.bootstrap)
        if broker.secure:
            broker.grant(app_id, topic_prefix)
            for user in ("worker", "producer", "admin"):
                print(f"{user}: . {broker.security.env_file(user)}", file=sys.stderr)
    elif command == "down":
        broker.stop()
    elif broker.is_running():
        print(f"running {broker.bootstrap} pid {broker.read_pid()}")
    else:
        print("stopped")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
