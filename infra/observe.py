"""`make observe`: Prometheus and a trace viewer beside the demo worker, all on loopback.

    python infra/observe.py up     # build/fetch what is missing, start the three servers
    python infra/observe.py urls   # where to look
    python infra/observe.py down   # stop them

1. Prometheus (Debian's package) scrapes the worker's `/metrics` every 5 s with the demo admin's
   key (`--key-file` for another) and evaluates the repository's alert rules.
2. Jaeger v2, built from its Go module (`infra/jaeger/go.mod`) into `.atlas/bin/jaeger`, takes the
   worker's spans over OTLP/HTTP on 127.0.0.1:4318, keeps them in memory and answers trace queries
   (`/api/traces`). A binary built from the module has no web UI (Jaeger's UI ships only in its
   release images), so Jaeger also hands every span to Kafka as Zipkin JSON, and:
3. Zipkin's server (its exec jar from Maven Central) reads them there and shows them in its UI.

`urls` also writes `.atlas/observe/dashboards.html`: the Grafana dashboards' panels, each a link
to its queries in Prometheus's own graph page (Grafana itself does not install here).

Standard library only, like infra/kafka/broker.py: it runs before and beside the virtualenv.
"""
from __future__ import annotations

import argparse
import html
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

try:
    from .grafana.dashboards import DASHBOARDS, RATE
    from .prometheus.server import LocalPrometheus
except ImportError:  # run as a script: python infra/observe.py
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from grafana.dashboards import DASHBOARDS, RATE  # type: ignore[no-redef]
    from prometheus.server import LocalPrometheus  # type: ignore[no-redef]

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
STATE = ROOT / ".atlas" / "observe"
JAEGER = ROOT / ".atlas" / "bin" / "jaeger"
ZIPKIN_VERSION = "3.5.1"
ZIPKIN = Path.home() / ".cache" / "atlas" / f"zipkin-server-{ZIPKIN_VERSION}-exec.jar"
SPANS_TOPIC = "atlas-observe-spans"  # Jaeger -> Zipkin, on the demo broker, outside ATLAS's topics
PORTS = {"prometheus": 9090, "otlp": 4318, "jaeger": 16686, "zipkin": 9411}
DEMO_KEY = "admin-demo-key"  # config/demo-keys.json: the demo admin holds the metrics scope


class ObserveError(Exception):
    """Something `make observe` needs is missing or would not start."""


def build_jaeger() -> Path:
    """`.atlas/bin/jaeger`, built from infra/jaeger/go.mod the first time (several minutes on 2 cores)."""
    if JAEGER.exists():
        return JAEGER
    if shutil.which("go") is None:
        raise ObserveError("building Jaeger needs Go (https://go.dev/dl/)")
    print("building Jaeger from its Go module (the first time only: several minutes)...", flush=True)
    JAEGER.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["go", "build", "-o", str(JAEGER), "github.com/jaegertracing/jaeger/cmd/jaeger"],
                   cwd=HERE / "jaeger", check=True)
    return JAEGER


def fetch_zipkin() -> Path:
    """Zipkin's server jar, from Maven Central through Maven (cached in ~/.cache/atlas)."""
    if ZIPKIN.exists():
        return ZIPKIN
    print(f"fetching zipkin-server {ZIPKIN_VERSION} from Maven Central...", flush=True)
    ZIPKIN.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mvn", "-q", "dependency:copy", f"-Dartifact=io.zipkin:zipkin-server:{ZIPKIN_VERSION}:jar:exec",
                    f"-DoutputDirectory={ZIPKIN.parent}"], check=True, cwd=HERE)
    return ZIPKIN


def _spawn(name: str, args: list[str], env: dict[str, str] | None = None) -> None:
    STATE.mkdir(parents=True, exist_ok=True)
    log = open(STATE / f"{name}.log", "ab")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, **(env or {})}, cwd=STATE)
    log.close()
    (STATE / f"{name}.pid").write_text(str(proc.pid))


def _alive(name: str) -> bool:
    pid_file = STATE / f"{name}.pid"
    if not pid_file.exists():
        return False
    try:
        os.kill(int(pid_file.read_text()), 0)
    except (OSError, ValueError):
        return False
    return True


def _wait_http(name: str, url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(name):
            raise ObserveError(f"{name} exited; see {STATE / (name + '.log')}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answers
        except (urllib.error.URLError, OSError):
            time.sleep(0.5)
    raise ObserveError(f"{name} did not answer {url} within {timeout:.0f} s; see {STATE / (name + '.log')}")


def up(bootstrap: str, worker: str, key: str) -> None:
    """Start what is not running yet: Jaeger, Zipkin, Prometheus."""
    if not _alive("jaeger"):
        _spawn("jaeger", [str(build_jaeger()), f"--config=file:{HERE / 'jaeger' / 'config.yaml'}"],
               env={"ATLAS_KAFKA_BOOTSTRAP": bootstrap, "JAEGER_SPANS_TOPIC": SPANS_TOPIC,
                    "OTEL_SDK_DISABLED": "true"})
        _wait_http("jaeger", f"http://127.0.0.1:{PORTS['jaeger']}/api/services", 60)
    if not _alive("zipkin"):
        _spawn("zipkin", ["java", "-Xmx384m", "-jar", str(fetch_zipkin()),
                          f"--armeria.ports[0].port={PORTS['zipkin']}", "--armeria.ports[0].ip=127.0.0.1",
                          "--armeria.ports[0].protocols[0]=http"],
               env={"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "KAFKA_TOPIC": SPANS_TOPIC, "STORAGE_TYPE": "mem"})
        _wait_http("zipkin", f"http://127.0.0.1:{PORTS['zipkin']}/health", 120)
    if not _alive("prometheus"):
        server = LocalPrometheus(STATE / "prometheus", PORTS["prometheus"], [worker], key)
        server.start()
        (STATE / "prometheus.pid").write_text(str(server.proc.pid))
    urls()


def urls() -> None:
    print(f"""
Prometheus   http://127.0.0.1:{PORTS['prometheus']}   (alerts: /alerts; try atlas_orders_total, atlas_consumer_lag_messages)
Traces (UI)  http://127.0.0.1:{PORTS['zipkin']}   (Zipkin: search serviceName=atlas, or a trace id from a JSON log line)
Traces (API) http://127.0.0.1:{PORTS['jaeger']}/api/traces?service=atlas   (Jaeger's query API)
OTLP in      http://127.0.0.1:{PORTS['otlp']}   (ATLAS_OTEL_ENDPOINT of the demo worker)
Dashboards   {write_dashboard_links().as_uri()}
             (every panel's queries as Prometheus graphs; for Grafana, provision infra/grafana with the
             Prometheus data source at the URL above)
""")


def dashboard_graph(queries: list[tuple[str, str]], minutes: int = 15) -> str:
    """A Prometheus graph page of one panel's queries (Grafana's `$__rate_interval` as one minute)."""
    params: dict[str, str] = {}
    for n, (expr, _) in enumerate(queries):
        params.update({f"g{n}.expr": expr.replace(RATE, "1m"), f"g{n}.tab": "0", f"g{n}.range_input": f"{minutes}m"})
    return f"http://127.0.0.1:{PORTS['prometheus']}/graph?{urllib.parse.urlencode(params)}"


def write_dashboard_links() -> Path:
    """`.atlas/observe/dashboards.html`: each dashboard's panels, each a link to its queries in Prometheus."""
    parts = ["<!doctype html><meta charset=utf-8><title>ATLAS dashboards in Prometheus</title>",
             "<h1>ATLAS dashboards, panel by panel, in Prometheus</h1>"]
    for _, title, panels in DASHBOARDS:
        parts.append(f"<h2>{html.escape(title)}</h2><ul>")
        parts += [f'<li><a href="{html.escape(dashboard_graph(queries))}">{html.escape(name)}</a></li>'
                  for name, _, queries in panels]
        parts.append("</ul>")
    STATE.mkdir(parents=True, exist_ok=True)
    page = STATE / "dashboards.html"
    page.write_text("\n".join(parts) + "\n")
    return page


def down() -> None:
    for name in ("prometheus", "zipkin", "jaeger"):
        pid_file = STATE / f"{name}.pid"
        if _alive(name):
            pid = int(pid_file.read_text())
            os.kill(pid, signal.SIGTERM)
            for _ in range(50):
                try:
                    os.kill(pid, 0)
                except OSError:
                    break
                time.sleep(0.2)
            print(f"{name} stopped")
        pid_file.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("verb", choices=["up", "urls", "down"])
    parser.add_argument("--bootstrap", default=os.environ.get("ATLAS_KAFKA_BOOTSTRAP", "127.0.0.1:19092"))
    parser.add_argument("--worker", default="127.0.0.1:8080", help="host:port of the worker Prometheus scrapes")
    parser.add_argument("--key-file", type=Path, help="a key with the metrics scope (the demo admin's by default)")
    args = parser.parse_args(argv)
    try:
        if args.verb == "up":
            key = args.key_file.read_text().strip() if args.key_file else DEMO_KEY
            up(args.bootstrap, args.worker, key)
        elif args.verb == "urls":
            urls()
        else:
            down()
    except (ObserveError, subprocess.CalledProcessError) as exc:
        print(f"observe: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
