"""An OTLP/HTTP receiver in its own process (oteltest's `HttpSink`), writing every span it gets as a JSON line.

`python -m tests.otlp_receiver --port N --out spans.jsonl`. `Receiver` starts one for a test and reads
back the spans, with their trace, span and parent ids in hex as a trace viewer shows them.
"""
from __future__ import annotations

import argparse
import base64
import json
import logging
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _hex(value: str) -> str:
    return base64.b64decode(value).hex() if value else ""


def _plain(value: dict) -> Any:
    """An OTLP AnyValue as plain JSON: {"stringValue": "x"} -> "x", arrays -> lists."""
    if "arrayValue" in value:
        return [_plain(v) for v in value["arrayValue"].get("values", [])]
    return next(iter(value.values()), None)


def spans_of(request: dict) -> list[dict]:
    """The spans of one ExportTraceServiceRequest (as protobuf's JSON mapping gives it), flattened."""
    found = []
    for resource in request.get("resourceSpans", []):
        service = {a["key"]: a["value"] for a in resource.get("resource", {}).get("attributes", [])}
        for scope in resource.get("scopeSpans", []):
            for span in scope.get("spans", []):
                found.append({
                    "service": service.get("service.name", {}).get("stringValue"),
                    "name": span["name"], "kind": span.get("kind"),
                    "trace_id": _hex(span["traceId"]), "span_id": _hex(span["spanId"]),
                    "parent_id": _hex(span.get("parentSpanId", "")),
                    "attributes": {a["key"]: _plain(a["value"]) for a in span.get("attributes", [])},
                    "events": [{"name": e["name"], "attributes": {a["key"]: _plain(a["value"])
                                                                  for a in e.get("attributes", [])}}
                               for e in span.get("events", [])],
                    "links": [{"trace_id": _hex(link["traceId"]), "span_id": _hex(link["spanId"])}
                              for link in span.get("links", [])],
                })
    return found


def main() -> None:
    from google.protobuf.json_format import MessageToDict
    from oteltest.sink import HttpSink
    from oteltest.sink.handler import RequestHandler

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--count-only", action="store_true", help="write only the number of spans received so far")
    args = parser.parse_args()
    lock = threading.Lock()
    received = [0]

    class Writer(RequestHandler):
        def handle_trace(self, request, headers):
            if args.count_only:  # a benchmark's receiver: what it costs stays small
                spans = sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)
                with lock:
                    received[0] += spans
                    args.out.write_text(str(received[0]))
                return
            lines = "".join(json.dumps(span) + "\n" for span in spans_of(MessageToDict(request)))
            with lock, args.out.open("a") as out:
                out.write(lines)

        def handle_metrics(self, request, headers):
            pass

        def handle_logs(self, request, headers):
            pass

    logging.basicConfig(level=logging.INFO)
    sink = HttpSink(Writer(), logging.getLogger("otlp-receiver"), port=args.port, daemon=False)
    sink.start()
    print("ready", flush=True)


class Receiver:
    """The receiver process for one test: its endpoint, and the spans it has received so far."""

    def __init__(self, root: Path, port: int, *, count_only: bool = False):
        self.out = root / ("spans.count" if count_only else "spans.jsonl")
        self.endpoint = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.otlp_receiver", "--port", str(port),
                                      "--out", str(self.out), *(["--count-only"] if count_only else [])],
                                     cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the OTLP receiver did not start")

    def count(self) -> int:
        """Spans received (a `count_only` receiver)."""
        return int(self.out.read_text() or 0) if self.out.exists() else 0

    def pid(self) -> int:
        return self.proc.pid

    def spans(self) -> list[dict[str, Any]]:
        if not self.out.exists():
            return []
        text = self.out.read_text()
        complete = text[:text.rfind("\n") + 1]  # a line still being written is read next time
        return [json.loads(line) for line in complete.splitlines() if line.strip()]

    def wait_for(self, predicate, timeout: float = 30.0) -> list[dict[str, Any]]:
        """The spans once `predicate(spans)` holds (AssertionError with what arrived when it never does)."""
        deadline = time.monotonic() + timeout
        while True:
            spans = self.spans()
            if predicate(spans):
                return spans
            if time.monotonic() > deadline:
                raise AssertionError(f"the receiver never got the spans expected; it has {len(spans)}: "
                                     f"{[(s['service'], s['name']) for s in spans][:40]}")
            time.sleep(0.2)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()


if __name__ == "__main__":
    main()
