"""The worker's own measurements of the order flow it runs: counts, latencies, throughput.

The `oms` agent feeds it the execution reports each event produced, with the wall-clock time
it produced them; the Analytics page reads it through `/api/v1/telemetry`. Latencies run
from an order's submit (the timestamp of its SubmitOrder message, set by the gateway's producer)
to its first NEW report (submit -> ack: gateway, Kafka, OMS, venue and back) and to its first
fill (submit -> fill). They live in HDR histograms, which merge exactly across workers.
A message the OMS reads again after a crash is counted again: figures since the process started.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from hdrh.histogram import HdrHistogram

from atlas.core.events import ExecType, ExecutionReport
from atlas.oms.state import Order

# Microseconds, from 1 µs to 10 minutes, 3 significant digits.
_LOWEST_US, _HIGHEST_US, _DIGITS = 1, 600_000_000, 3
# Upper edges (ms) of the distribution the console draws; the last bucket takes the rest.
BUCKETS_MS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000)
SECONDS_KEPT = 600
COUNTS = ("events", "submitted", "accepted", "rejected", "canceled", "fills", "filled_orders")


def _histogram() -> HdrHistogram:
    return HdrHistogram(_LOWEST_US, _HIGHEST_US, _DIGITS)


@dataclass
class Telemetry:
    """Counters, two latency histograms and per-second throughput of one process."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTS, 0))
    ack_latency: HdrHistogram = field(default_factory=_histogram)
    fill_latency: HdrHistogram = field(default_factory=_histogram)
    # (second, events, fills) for the last SECONDS_KEPT seconds that saw any.
    per_second: deque = field(default_factory=lambda: deque(maxlen=SECONDS_KEPT))

    def observe(self, reports: Iterable[ExecutionReport], orders: Sequence[Order], now_ms: int,
                each: Callable[[ExecutionReport, int | None], None] | None = None) -> None:
        """Count one processed event and the reports it produced (`orders`: the orders it wrote).

        `each(report, latency_ms)` is told of every report as it is counted, with the latency it
        timed (an order's ack or first fill, when the event wrote the order), else None.
        """
        self.counts["events"] += 1
        fills = 0
        for report in reports:
            kind, latency_ms = report.exec_type, None
            if kind is ExecType.PENDING_NEW:
                self.counts["submitted"] += 1
            elif kind is ExecType.REJECTED:
                self.counts["rejected"] += 1
            elif kind is ExecType.CANCELED or kind is ExecType.EXPIRED:
                self.counts["canceled"] += 1
            elif kind is ExecType.NEW:
                self.counts["accepted"] += 1
                latency_ms = self._latency(self.ack_latency, _order(orders, report.order_id), now_ms)
            elif kind is ExecType.TRADE:
                fills += 1
                if report.cum_qty == report.last_qty:  # the order's first fill
                    latency_ms = self._latency(self.fill_latency, _order(orders, report.order_id), now_ms)
                if report.leaves_qty == 0:
                    self.counts["filled_orders"] += 1
            if each is not None:
                each(report, latency_ms)
        self.counts["fills"] += fills
        self._per_second(now_ms // 1000, fills)

    @staticmethod
    def _latency(histogram: HdrHistogram, order: Order | None, now_ms: int) -> int | None:
        if order is None or now_ms < order.created_at:
            return None
        histogram.record_value(max(_LOWEST_US, min(_HIGHEST_US, (now_ms - order.created_at) * 1000)))
        return now_ms - order.created_at

    def _per_second(self, second: int, fills: int) -> None:
        if self.per_second and self.per_second[-1][0] == second:
            _, events, before = self.per_second[-1]
            self.per_second[-1] = (second, events + 1, before + fills)
        else:
            self.per_second.append((second, 1, fills))

    def snapshot(self) -> dict:
        """Everything, histograms encoded so that another worker can merge them."""
        return {"counts": dict(self.counts), "per_second": [list(s) for s in self.per_second],
                "ack_latency": _encode(self.ack_latency), "fill_latency": _encode(self.fill_latency)}


def _order(orders: Sequence[Order], order_id: str) -> Order | None:
    # An event writes one order or a few: a scan, and only for the reports that time one.
    return next((o for o in orders if o.order_id == order_id), None)


def merge(snapshots: Iterable[dict], now_ms: int, window_s: int = 60) -> dict:
    """One cluster view of several workers' snapshots: summed counts, merged latencies, throughput."""
    counts = dict.fromkeys(COUNTS, 0)
    ack, fill = _histogram(), _histogram()
    seconds: dict[int, list[int]] = {}
    for snap in snapshots:
        for name in COUNTS:
            counts[name] += snap["counts"].get(name, 0)
        ack.add(_decode(snap["ack_latency"]))
        fill.add(_decode(snap["fill_latency"]))
        for second, events, fills in snap["per_second"]:
            slot = seconds.setdefault(second, [0, 0])
            slot[0] += events
            slot[1] += fills
    now_s = now_ms // 1000
    recent = [(s, e, f) for s, (e, f) in sorted(seconds.items()) if now_s - window_s < s <= now_s]
    return {
        "counts": counts,
        "latency_ms": {"submit_to_ack": _summary(ack), "submit_to_fill": _summary(fill)},
        "throughput": {"window_s": window_s,
                       "events_per_s": _rate(sum(e for _, e, _ in recent), window_s),
                       "fills_per_s": _rate(sum(f for _, _, f in recent), window_s),
                       "per_second": [{"t": s, "events": e, "fills": f} for s, e, f in recent]},
    }


def _summary(histogram: HdrHistogram) -> dict:
    """Percentiles and a bucketed distribution, in milliseconds (as strings: three decimals of a µs count)."""
    count = histogram.get_total_count()
    if count == 0:
        return {"count": 0, "p50": None, "p90": None, "p99": None, "max": None, "buckets": []}
    buckets = [0] * (len(BUCKETS_MS) + 1)
    for item in histogram.get_recorded_iterator():
        ms = item.value_iterated_to / 1000
        index = next((i for i, edge in enumerate(BUCKETS_MS) if ms <= edge), len(BUCKETS_MS))
        buckets[index] += item.count_at_value_iterated_to
    edges = [f"<={e}" for e in BUCKETS_MS] + [f">{BUCKETS_MS[-1]}"]
    return {"count": count, **{f"p{p}": _ms(histogram.get_value_at_percentile(p)) for p in (50, 90, 99)},
            "max": _ms(histogram.get_max_value()),
            "buckets": [{"le_ms": edge, "count": n} for edge, n in zip(edges, buckets)]}


def _ms(us: int) -> str:
    return f"{us // 1000}.{us % 1000:03d}"


def _rate(total: int, window_s: int) -> str:
    return f"{total / window_s:.2f}"  # a rate for a chart, not money


def _encode(histogram: HdrHistogram) -> str:
    # HdrHistogram's own compressed base64 form.
    return histogram.encode().decode() if histogram.get_total_count() else ""


def _decode(text: str) -> HdrHistogram:
    return HdrHistogram.decode(text.encode()) if text else _histogram()


# This process's figures: the `oms` agent records into it, `/api/v1/telemetry` reads it.
process_telemetry = Telemetry()
