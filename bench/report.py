"""The benchmark report: the machine, a table per kind of run, the ratios; formatting, /proc reads, and writing the file."""
from __future__ import annotations

import os
import platform
import re
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from bench.load import Percentiles
from bench.runs import LatencyRun, SaturationRun


def machine(kafka_version: str) -> dict[str, str]:
    """What the numbers were measured on."""
    model = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        mem_kb = next(int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal"))
        memory = f"{mem_kb / 1024 / 1024:.1f} GiB"
    except (OSError, StopIteration, ValueError):
        memory = "?"
    versions = ", ".join(f"{p} {_version(p)}" for p in ("faust-streaming", "aiokafka", "aiohttp"))
    return {"CPUs (nproc)": str(len(os.sched_getaffinity(0))), "CPU model": model, "memory": memory,
            "Python": platform.python_version(), "Kafka": kafka_version, "libraries": versions,
            "OS": f"{platform.system()} {platform.release()}",
            "load average at start (1/5/15 min)": " / ".join(f"{x:.2f}" for x in os.getloadavg())}


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "?"


@dataclass
class Results:
    """Everything one run of the benchmark measured, and what went wrong."""

    command: str
    started: str
    wall_s: float = 0.0
    machine: dict[str, str] = field(default_factory=dict)
    settings: dict[str, str] = field(default_factory=dict)
    load: list[str] = field(default_factory=list)
    latency: dict[str, LatencyRun] = field(default_factory=dict)
    saturation: dict[str, SaturationRun] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    start_failures: list[str] = field(default_factory=list)
    target_starts: int = 0
    notes: list[str] = field(default_factory=list)
    engine: list = field(default_factory=list)  # bench.engine.EngineRun
    fills: dict[str, LatencyRun] = field(default_factory=dict)
    fills_saturation: dict[str, SaturationRun] = field(default_factory=dict)


def _f(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def _ratio(a: float | None, b: float | None) -> str:
    return "n/a" if not a or not b else f"{a / b:.2f}"


def _pcts(p: Percentiles | None) -> list[str]:
    return ["n/a"] * 4 if p is None else [_f(p.p50), _f(p.p99), _f(p.p999), _f(p.max)]


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return out + ["| " + " | ".join(row) + " |" for row in rows]


def _rejected(counter) -> str:
    return ", ".join(f"{n} {reason}" for reason, n in counter.most_common()) or "0"


def latency_table(runs: dict[str, LatencyRun]) -> list[str]:
    header = ["scenario", "input", "offered/s", "measured", "answered", "achieved/s", "p50 ms", "p99 ms",
              "p99.9 ms", "max ms", "p50 first → last quarter ms", "max send lag ms", "target CPU %", "target CPU-wait %", "broker CPU %",
              "bench CPU %", "others CPU %", "rejected"]
    rows = [[r.label, r.via, f"{r.offered_rate:g}", str(r.measured), str(r.answered), _f(r.achieved_rate),
             *_pcts(r.latency), f"{_f(r.p50_first_quarter)} → {_f(r.p50_last_quarter)}", _f(r.max_send_lag_ms),
             *(_f(r.cpu_pct.get(k), 0) for k in ("target", "target wait", "broker", "bench", "others")),
             _rejected(r.rejected)] for r in runs.values()]
    return _table(header, rows)


def http_table(runs: dict[str, LatencyRun]) -> list[str]:
    header = ["scenario", "measured", "HTTP p50 ms", "HTTP p99 ms", "HTTP p99.9 ms", "HTTP max ms", "statuses"]
    rows = [[r.label, str(r.measured), *_pcts(r.http), ", ".join(f"{k}: {v}" for k, v in r.http_statuses.items())]
            for r in runs.values() if r.via == "http"]
    return _table(header, rows) if rows else []


def saturation_table(runs: dict[str, SaturationRun]) -> list[str]:
    header = ["scenario", "backlog", "produced in s", "drain window s", "orders/s", "records/order (data)",
              "offsets/order", "bytes/order", "target CPU-s /1000", "broker CPU-s /1000", "target CPU %",
              "target CPU-wait %", "broker CPU %", "others CPU %", "CPU-bound ceiling orders/s", "rejected"]
    rows = [[r.label, str(r.orders), _f(r.produce_s, 2), _f(r.window_s, 2), _f(r.rate, 0), _f(r.records_per_order, 2),
             _f(r.offsets_per_order, 2), _f(r.bytes_per_order, 0), _f(r.cpu_per_1000("target"), 2),
             _f(r.cpu_per_1000("broker"), 2),
             *(_f(r.cpu_pct(k), 0) for k in ("target", "target wait", "broker", "others")), _f(r.ceiling, 0),
             _rejected(r.rejected)] for r in runs.values()]
    return _table(header, rows)


def records_table(runs: dict[str, SaturationRun]) -> list[str]:
    rows = []
    for r in runs.values():
        for topic in sorted(set(r.offsets) | set(r.records)):
            records, size = r.records.get(topic, 0), r.record_bytes.get(topic, 0)
            rows.append([r.label, topic, str(records), _f(records / r.answered, 2), str(r.offsets.get(topic, 0)),
                         str(r.markers(topic)), _f(size / records if records else None, 0), _f(size / r.answered, 0)])
        for topic, n in sorted(r.internal.items()):
            rows.append([r.label, f"{topic} (broker-internal)", "", "", str(n), "", "", ""])
    return _table(["scenario", "topic", "data records", "per order", "offset delta", "transaction markers",
                   "bytes/record", "bytes/order"], rows)


def ratios(res: Results) -> list[list[str]]:
    sat, lat = res.saturation, res.latency
    rate = lambda key: sat[key].rate if key in sat else None  # noqa: E731
    p50 = lambda key: lat[key].latency.p50 if key in lat and lat[key].latency else None  # noqa: E731
    cpu = lambda key: sat[key].cpu_per_1000("target") if key in sat else None  # noqa: E731
    ceiling = lambda key: sat[key].ceiling if key in sat else None  # noqa: E731
    return [
        ["saturation throughput, exactly_once / at_least_once", _ratio(rate("eos"), rate("alo"))],
        ["CPU-bound ceiling, exactly_once / at_least_once", _ratio(ceiling("eos"), ceiling("alo"))],
        ["saturation throughput, ATLAS at_least_once / bare loop", _ratio(rate("alo"), rate("bare"))],
        ["saturation throughput, ATLAS exactly_once / bare loop", _ratio(rate("eos"), rate("bare"))],
        ["p50 latency at --rate, ATLAS at_least_once / bare loop", _ratio(p50("alo"), p50("bare"))],
        ["p50 latency at --rate, ATLAS exactly_once / bare loop", _ratio(p50("eos"), p50("bare"))],
        ["p50 latency at the light rate, ATLAS at_least_once / bare loop", _ratio(p50("alo-low"), p50("bare-low"))],
        ["p50 latency at the light rate, ATLAS exactly_once / bare loop", _ratio(p50("eos-low"), p50("bare-low"))],
        ["p50 latency at the light rate, exactly_once / at_least_once", _ratio(p50("eos-low"), p50("alo-low"))],
        ["CPU-bound ceiling, ATLAS at_least_once / bare loop", _ratio(ceiling("alo"), ceiling("bare"))],
        ["process CPU per order at saturation, ATLAS at_least_once / bare loop", _ratio(cpu("alo"), cpu("bare"))],
        ["Kafka records per order at saturation, ATLAS at_least_once / bare loop",
         _ratio(*(sat[k].records_per_order if k in sat else None for k in ("alo", "bare")))],
    ]


def observations(res: Results) -> list[str]:
    """What the figures of this run say, in words; each claim is computed from the run itself."""
    out = []
    for r in res.latency.values():
        first, last = r.p50_first_quarter, r.p50_last_quarter
        if r.achieved_rate < 0.95 * r.offered_rate or (first and last and last > 2 * first + 50):
            out.append(f"{r.label} ({r.via} input) did not keep up with {r.offered_rate:g} orders/s: it answered "
                       f"{r.achieved_rate:.0f}/s and its p50 grew from {_f(first)} ms in the first quarter of the run "
                       f"to {_f(last)} ms in the last. Its percentiles are queueing time and grow with --duration.")
    for r in res.saturation.values():
        cpu, wait, others = r.cpu_pct("target"), r.cpu_pct("target wait"), r.cpu_pct("others")
        if cpu and wait and wait > 20 and cpu + wait >= 80:
            out.append(f"{r.label} at saturation ran on a CPU {cpu:.0f}% of the window and waited for one "
                       f"{wait:.0f}% of it, while processes outside the benchmark used {_f(others, 0)}% of a core: "
                       f"it was CPU-bound and short of CPU. With a core to itself it would drain about "
                       f"{_f(r.ceiling, 0)} orders/s (1000 / its CPU-s per 1,000 orders).")
        changelog = [t for t in r.records if t.endswith("-oms-changelog")]
        outputs = [t for t in r.records if t.endswith((".executions", ".venue.orders"))]
        if changelog and r.record_bytes and not any("OMS changelog is" in line for line in out):
            share = sum(r.record_bytes[t] for t in changelog) / max(1, sum(r.record_bytes.values()))
            out.append(f"{r.label}: the OMS changelog is {share:.0%} of the bytes written per order "
                       f"({_f(r.bytes_per_order, 0)} bytes in all, {_f(r.records[changelog[0]] / r.answered, 1)} "
                       f"changelog records per order averaging "
                       f"{_f(r.record_bytes[changelog[0]] / max(1, r.records[changelog[0]]), 0)} bytes).")
        if "exactly_once" in r.label and changelog and outputs:
            if all(r.markers(t) > 0 for t in changelog + outputs):
                out.append(f"{r.label}: the changelog and the outputs were written in the same transactions "
                           f"({r.markers(changelog[0])} transaction markers in `{changelog[0]}`, "
                           f"{r.markers(outputs[0])} in `{outputs[0]}`), so a read_committed consumer sees an "
                           "order's first report only once the transaction holding it commits: exactly_once "
                           "latency is bound by the commit interval and by how fast the broker ends transactions.")
            else:
                out.append(f"{r.label}: some outputs were written outside transactions (transaction markers: "
                           + ", ".join(f"`{t}` {r.markers(t)}" for t in changelog + outputs) + ").")
    return out


HOW_TO_READ = """\
- **Latency** runs are open loop: order *n* is due at `t0 + n/rate` and its latency runs from that due time
  to the moment the bench's consumer of `<prefix>.executions` (read_committed) saw the order's first execution
  report (PENDING_NEW, or REJECTED). A sender that falls behind therefore shows as latency (see *max send lag*).
  The first seconds of each run are a warm-up and are not measured. A p50 that grows from the first quarter of
  the run to the last means the target could not keep up with the offered rate: a queue built up, and the
  percentiles then mostly tell how long the run lasted.
- **Saturation** runs produce the whole backlog to `<prefix>.commands` before the target starts, then time the
  target from its first execution report to its last: orders/s is reports in that window / its length. CPU-s per
  1,000 orders are psutil user+system deltas over the same window (*target* is the ATLAS worker or the bare
  loop process; the broker is the local Kafka JVM).
- **Records per order** counts every data record the target wrote to its own topics (`<prefix>.*` and
  `<app_id>-*`, changelogs included) by reading the offset ranges back; *offsets per order* is the end-offset
  delta, which under exactly_once also counts one transaction marker per partition per transaction.
  Broker-internal topics (`__consumer_offsets`, `__transaction_state`) are listed apart: offset commits and
  transaction state.
- The **bare loop** (`bench/bare.py`) consumes the same commands, parses the JSON, produces one small report per
  order and commits offsets every commit interval after a producer flush: the floor for any Python consumer on
  this broker. ATLAS additionally validates, runs risk checks, reads and writes RocksDB, and writes its changelog
  and venue requests.
- The bench's own consumer reads every report; at tens of thousands a second it may be what limits the bare
  loop's figure, so take that one (and the ratios against it) as a bound, not a measurement of the loop alone.
  The *CPU-bound ceiling* is 1000 / CPU-s per 1,000 orders: what the target would drain with a core to itself,
  if CPU is its limit. It moves less with the machine's load than orders/s does.
- Nothing plays the venue here (the workers run with `ATLAS_VENUE_ENABLED=false`): `<prefix>.venue.orders` is not consumed, so every bench order stays open
  (PENDING_NEW) and open orders pile up on each account. The account's stored state counts its open orders
  rather than listing them, so changelog bytes per order do not grow with the backlog.
- CPU columns are in % of one core over the run (latency) or the drain window (saturation). *CPU-wait* is the
  time the target's threads were runnable but waiting for a CPU (/proc schedstat), *others* is machine CPU used
  by processes outside this benchmark: both high means the target was starved by other tenants, not slow.
- The machine is shared and noisy (load from other processes, one broker, load generator and target on the
  same cores). Absolute numbers move between runs; compare **ratios within one run**.
"""


def render(res: Results) -> str:
    """The report as Markdown."""
    lines = ["# ATLAS order-flow benchmark", "",
             f"Command: `{res.command}`  ", f"Started: {res.started}; took {res.wall_s:.0f} s.", "", "## Machine", ""]
    lines += [f"- {k}: {v}" for k, v in res.machine.items()]
    lines += ["", "## Settings", ""] + [f"- {k}: {v}" for k, v in res.settings.items()]
    lines += ["", "## Load", ""] + [f"- {item}" for item in res.load]
    if res.engine:
        lines += ["", f"## Matching engine alone (`python -m bench.engine`: {res.engine[0].ops:,} operations per mix, "
                      "one core, fixed seed)", "",
                  *_table(["mix", "ops/s", "trades/op", "p50 µs", "p99 µs", "p99.9 µs", "max µs"],
                          [[r.mix, _f(r.ops_per_s, 0), _f(r.trades_per_op, 2), _f(r.p50_us), _f(r.p99_us),
                            _f(r.p999_us), _f(r.max_us, 0)] for r in res.engine]),
                  "", "The max is a garbage-collector pause or a preemption by another process, not an operation's cost."]
    if res.latency:
        lines += ["", "## Latency: submit → first execution report (open loop)", "", *latency_table(res.latency)]
        if http_table(res.latency):
            lines += ["", "HTTP response latency (`POST /api/v1/orders`, from the due time to the response):", "",
                      *http_table(res.latency)]
    if res.fills:
        lines += ["", "## End to end: submit → FILLED, with the venue in the worker (open loop)", "",
                  "Orders priced 2% through the market, filled by the venue's market maker: commands → `oms` → "
                  "venue.orders → `venue` → venue.reports → `oms` → executions; the baseline is three bare loops "
                  "chained over the same three hops (its CPU is not metered: three processes).", "",
                  *latency_table(res.fills)]
        ratio = [_ratio(*(res.fills[k].latency.p50 if k in res.fills and res.fills[k].latency else None
                          for k in ("alo", "bare-chain"))),
                 _ratio(*(res.fills[k].latency.p99 if k in res.fills and res.fills[k].latency else None
                          for k in ("alo", "bare-chain")))]
        lines += ["", f"Submit → FILLED, ATLAS / bare chain: p50 {ratio[0]}, p99 {ratio[1]}."]
    if res.fills_saturation:
        sat = res.fills_saturation
        lines += ["", "Drained to FILLED from a pre-produced backlog of marketable orders:", "",
                  *_table(["scenario", "backlog", "drain window s", "orders/s", "records/order", "target CPU-s /1000"],
                          [[r.label, str(r.orders), _f(r.window_s, 2), _f(r.rate, 0), _f(r.records_per_order, 2),
                            _f(r.cpu_per_1000("target"), 2)] for r in sat.values()]),
                  "", "Orders/s to FILLED, ATLAS at_least_once / bare chain: "
                  + _ratio(*(sat[k].rate if k in sat else None for k in ("alo", "bare-chain")))
                  + "; exactly_once / at_least_once: "
                  + _ratio(*(sat[k].rate if k in sat else None for k in ("eos", "alo"))) + "."]
        for key, run in sat.items():
            if key != "bare-chain" and run.kinds:
                lines += ["", f"What {run.label} wrote per filled order, by topic and, in changelogs, by key "
                              "(`a/` account, `o/` order, `e/` report, `l/` listing, `n/` open index, `c/` retention "
                              "queue; venue: `s/` symbol record, `x/` outbox, `t/` trade bucket, `o/` resting order):", "",
                          *census_table(run)]
    if res.saturation:
        lines += ["", "## Saturation: drain a pre-produced backlog", "", *saturation_table(res.saturation),
                  "", "### Kafka records written per order", "", *records_table(res.saturation)]
    lines += ["", "## Ratios", "", *_table(["ratio", "value"], ratios(res))]
    found = observations(res)
    if found:
        lines += ["", "## Observations (computed from this run)", ""] + [f"- {item}" for item in found]
    lines += ["", "## How to read this", "", HOW_TO_READ.rstrip()]
    lines += ["", "## What did not work / caveats", ""]
    lines += [f"- {item}" for item in res.failures]
    if res.start_failures:
        lines += [f"- {len(res.start_failures)} of {res.target_starts} target starts failed and were replaced by a "
                  "fresh target (new app id and topics); the scenario then ran on the replacement:", *START_RACE]
        lines += [f"  - {item}" for item in res.start_failures]
    lines += [f"- {item}" for item in res.notes]
    if not (res.failures or res.start_failures or res.notes):
        lines.append("- nothing failed.")
    return "\n".join(lines) + "\n"


START_RACE = [
    "  Faust creates the worker's changelog topics (`<app_id>-oms-changelog`, `<app_id>-market-state-changelog`)",
    "  right before its consumer joins the group; when the group leader's metadata does not list a new topic yet,",
    "  Faust's partition assignor logs `Ignoring missing topic` and the worker never gets that changelog's",
    "  partitions. Without the oms changelog the `oms` agent crashes on its first table write with",
    "  `PartitionsMismatch` (restarted by its supervisor, it crashes again) while `/readyz` answers ready;",
    "  without the market-state changelog the worker never becomes ready. The bench spots the log line (or the",
    "  missing answer to a probe order) and starts another worker. Since commit 360e282 `ensure_topics` creates",
    "  the changelogs before the consumer subscribes; a start failure on a later commit is a regression.",
]


def census_table(run: SaturationRun) -> list[str]:
    """Records and bytes per order of each kind of record a drain wrote, the most bytes first."""
    orders = run.answered or 1
    rows = sorted(run.kinds.items(), key=lambda item: -item[1][1])
    body = [[f"`{kind}`", _f(n / orders, 2), _f(b / orders, 0), _f(b / n if n else None, 0)] for kind, (n, b) in rows]
    total_n, total_b = sum(n for n, _ in run.kinds.values()), sum(b for _, b in run.kinds.values())
    body.append(["all", _f(total_n / orders, 2), _f(total_b / orders, 0), _f(total_b / total_n if total_n else None, 0)])
    return _table(["record", "records/order", "bytes/order", "bytes/record"], body)


def summary(res: Results) -> str:
    """A short plain-text digest for stdout."""
    lines = [f"ATLAS order-flow benchmark ({res.wall_s:.0f} s)"]
    for r in res.latency.values():
        p = r.latency
        extra = f"; HTTP p50 {_f(r.http.p50)} p99 {_f(r.http.p99)} ms" if r.http else ""
        lines.append(f"  {r.label:<28} {r.via:<5} {r.offered_rate:>6g}/s  answered {r.answered}/{r.measured}  "
                     + (f"p50 {_f(p.p50)}  p99 {_f(p.p99)}  p99.9 {_f(p.p999)}  max {_f(p.max)} ms" if p else "no reports")
                     + extra)
    for r in res.fills.values():
        p = r.latency
        lines.append(f"  {r.label:<28} submit→FILLED {r.offered_rate:>6g}/s  answered {r.answered}/{r.measured}  "
                     + (f"p50 {_f(p.p50)}  p99 {_f(p.p99)}  p99.9 {_f(p.p999)}  max {_f(p.max)} ms" if p else "none"))
    for r in res.fills_saturation.values():
        lines.append(f"  {r.label:<28} to FILLED from a backlog  {r.rate:,.0f} orders/s")
    for r in res.saturation.values():
        lines.append(f"  {r.label:<28} saturation  {r.rate:,.0f} orders/s  records/order {r.records_per_order:.2f}  "
                     f"target CPU-s/1000 {_f(r.cpu_per_1000('target'), 2)}  broker CPU-s/1000 {_f(r.cpu_per_1000('broker'), 2)}")
    for r in res.engine:
        lines.append(f"  engine {r.mix:<40} {r.ops_per_s:>9,.0f} ops/s  p50 {_f(r.p50_us)} µs  p99 {_f(r.p99_us)} µs")
    lines += [f"  {name}: {value}" for name, value in ratios(res) if value != "n/a"]
    lines += [f"  FAILED: {item}" for item in res.failures]
    return "\n".join(lines)


AUDIT_START, AUDIT_END = "<!-- audit:start -->", "<!-- audit:end -->"
_SECTION = re.compile(r"<!-- (?P<name>[a-z0-9-]+):start -->.*?<!-- (?P=name):end -->\n?", re.S)


def markers(name: str) -> tuple[str, str]:
    """The comments that delimit a benchmark's own section of REPORT.md."""
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def write_section(path: Path, section: str | None = None, *, main: str | None = None, name: str = "audit") -> None:
    """Write REPORT.md from its parts: bench.orderflow's `main` text and the other benchmarks' marked sections.

    `section` (delimited by `markers(name)`) replaces that benchmark's part; `main` replaces the
    unmarked text. Whatever is not given is kept, so each benchmark rewrites only its own part.
    """
    text = path.read_text() if path.exists() else ""
    sections = {m.group("name"): m.group(0).rstrip() + "\n" for m in _SECTION.finditer(text)}
    old_main = _SECTION.sub("", text).rstrip() + "\n" if text else ""
    if section is not None:
        sections[name] = section
    parts = [main if main is not None else old_main, *sections.values()]
    path.write_text("\n".join(p.rstrip() + "\n" for p in parts if p.strip()))
