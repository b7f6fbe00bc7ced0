"""Traces: one per order, across every Kafka hop, in W3C `traceparent` record headers.

With no `ATLAS_OTEL_ENDPOINT` tracing is off and costs the agents one flag test (`ENABLED`) per
message. On, the worker records spans through the OpenTelemetry SDK and exports them over
OTLP/HTTP from a background thread. Sampling is parent-based: a record or request whose
`traceparent` says sampled is traced wherever it goes, and one without starts a trace at
`ATLAS_OTEL_SAMPLE_RATIO`. A trace that is not sampled still travels, so every hop agrees.

Faust's producer and consumer know nothing of the context, so the agents carry it themselves:
`traced` runs an agent's step for one record under the context in its headers, and puts its
span's context on what the record causes to be sent.
"""
from __future__ import annotations

import base64
import logging
import random
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any

from cachetools import LRUCache
from opentelemetry import trace
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, TraceFlags, TraceState

from atlas.core.events import reason_code
from atlas.settings import settings

log = logging.getLogger(__name__)
ENABLED = settings.otel_endpoint is not None
TRACEPARENT, TRACESTATE = "traceparent", "tracestate"
MAX_LINKS = 128  # the SDK's default limit of links per span
# Longer values are not looked at (a client or producer may send anything): W3C's own limits are 55
# characters for version 00 and 512 for the tracestate's 32 list members.
MAX_TRACEPARENT, MAX_TRACESTATE = 256, 512
_TRACESTATE = re.compile(r"[a-z0-9][a-z0-9_\-*/@]{0,255}=[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,256}"
                         r"(,[ \t]*[a-z0-9][a-z0-9_\-*/@]{0,255}=[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,256}){0,31}")
# Version, trace id, span id, flags and (after version 00) whatever a later version adds.
_TRACEPARENT = re.compile(r"\s*([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-[^\s]*)?\s*")
_NO_TRACE, _NO_SPAN = "0" * 32, "0" * 16
# A version-00 traceparent as ATLAS writes it, of a trace not sampled (the flags' low bit clear): passed on as it is.
_UNSAMPLED = re.compile(rb"00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f][02468ace]")
_provider = None
_tracer = None
_ratio = 1.0
# The span that accepted each sampled order, for the reports that reach the OMS later under another
# trace (a resting order filled by someone else's order, or by the market): bounded, per process.
ORDERS_REMEMBERED = 50_000
_orders: LRUCache = LRUCache(maxsize=ORDERS_REMEMBERED)
# True while `traced` runs a step under a recording span (a step is synchronous: one at a time). `describe`,
# `dead_lettered` and `annotate` look at it first: most steps at a low ratio record nothing.
_in_recorded_step = False


def configure() -> None:
    """Install the SDK's tracer provider with its OTLP exporter (once, at worker start; nothing when off)."""
    if not ENABLED or _provider is not None:
        return
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased

    resource = Resource.create({"service.name": settings.otel_service_name, "service.instance.id":
                                f"{settings.web_host}:{settings.web_port}"})
    # The ratio is applied here, before the SDK (`_records`): what reaches it is to be recorded, or follows a parent.
    provider = TracerProvider(resource=resource, sampler=ParentBased(ALWAYS_ON))
    endpoint = settings.otel_endpoint.rstrip("/") + "/v1/traces"
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, timeout=5)))
    install(provider, settings.otel_sample_ratio)
    trace.set_tracer_provider(provider)  # for any library that traces through the global provider
    shown = endpoint.split("@", 1)[1] if "@" in endpoint.split("/", 3)[2] else endpoint  # never user:password
    log.info("tracing: spans go to %s, %.4g of new traces sampled", shown, settings.otel_sample_ratio)


def install(provider: Any, ratio: float = 1.0) -> None:
    """The tracer provider ATLAS's spans come from (None: the global one), and the share of new traces recorded.

    The provider's sampler should follow parents and record roots (`ParentBased(ALWAYS_ON)`): the ratio is
    applied before a span reaches it. The tests install providers of their own.
    """
    global _provider, _tracer, _ratio
    _provider, _ratio = provider, ratio
    _tracer = provider.get_tracer("atlas") if provider is not None else None


def shutdown() -> None:
    """Export what is buffered and stop the exporter (at worker stop)."""
    if _provider is not None:
        _provider.shutdown()
        install(None)


def tracer() -> trace.Tracer:
    """ATLAS's tracer, from the installed provider (the SDK's once `configure` ran; a no-op one before)."""
    return _tracer or trace.get_tracer("atlas")  # the SDK makes a new Tracer per call: one is kept


def active() -> bool:
    """True inside a valid span (sampled or not): what is sent now belongs to a trace."""
    return trace.get_current_span().get_span_context().is_valid


def parse_traceparent(value: str | bytes | None, state: str | bytes | None = None) -> SpanContext | None:
    """The remote span context a W3C `traceparent` value names, or None when it is absent or malformed."""
    if value is None or len(value) > MAX_TRACEPARENT:
        return None
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="replace")
    found = _TRACEPARENT.fullmatch(value)
    if found is None:
        return None
    version, trace_hex, span_hex, flags, rest = found.groups()
    if version == "ff" or (version == "00" and rest) or trace_hex == _NO_TRACE or span_hex == _NO_SPAN:
        return None
    trace_id, span_id = int(trace_hex, 16), int(span_hex, 16)
    trace_state = None
    if state and len(state) <= MAX_TRACESTATE:
        if isinstance(state, bytes):
            state = state.decode("ascii", errors="replace")
        # Checked first: the SDK logs a WARNING quoting every value it cannot parse, anyone's to fill.
        if _TRACESTATE.fullmatch(state.strip()):
            try:
                trace_state = TraceState.from_header([state])
            except ValueError:
                trace_state = None
    return SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(int(flags, 16) & 0x01),
                       trace_state=trace_state)


def _context_values(headers: Iterable[tuple[str, bytes | None]] | None) -> tuple[Any, Any]:
    parent = state = None
    for name, value in headers or ():
        if name == TRACEPARENT:
            parent = value
        elif name == TRACESTATE:
            state = value
    return parent, state


def traceparent(context: SpanContext) -> str:
    """The W3C `traceparent` value of a span context."""
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def context_headers(span: trace.Span | None = None) -> tuple[tuple[str, bytes], ...]:
    """The record headers that carry a span's context (the current span's by default); none outside a span."""
    context = (span or trace.get_current_span()).get_span_context()
    if not context.is_valid:
        return ()
    headers = ((TRACEPARENT, traceparent(context).encode()),)
    if context.trace_state:
        headers += ((TRACESTATE, context.trace_state.to_header().encode()),)
    return headers


def stamp(sends: list) -> list:
    """The same sends (`atlas.agents.outputs.Send`), carrying the current span's context in their headers."""
    return _carried(sends, context_headers())


def _carried(sends: list, carried: tuple[tuple[str, bytes], ...]) -> list:
    if not carried or not sends:
        return sends
    # Named tuples whose last field is `headers`, made directly (`_replace` costs several times more).
    return [send.__class__(*send[:-1], _replaced(send[-1], carried) if send[-1] else carried) for send in sends]


def _replaced(headers: Sequence[tuple[str, bytes]] | None, carried: tuple[tuple[str, bytes], ...]) -> tuple:
    kept = tuple(h for h in headers or () if h[0] not in (TRACEPARENT, TRACESTATE))
    return kept + carried


def _records(parent: SpanContext | None) -> bool:
    """Whether the span to start records: as its parent says, or for a new trace, at the ratio."""
    return parent.trace_flags.sampled if parent is not None else _ratio >= 1.0 or random.random() < _ratio


@contextmanager
def _unrecorded(parent: SpanContext | None) -> Iterator[trace.Span]:
    """A span that records nothing and passes an unsampled decision on (most spans at a low ratio).

    The SDK reaches the same non-recording span through its sampler, at several times the cost.
    """
    span = NonRecordingSpan(SpanContext(parent.trace_id if parent is not None else random.getrandbits(128) or 1,
                                        random.getrandbits(64) or 1, is_remote=False, trace_flags=TraceFlags(0),
                                        trace_state=parent.trace_state if parent is not None else None))
    with trace.use_span(span, end_on_exit=False):
        yield span


def _remote(parent: SpanContext | None) -> Any:
    return trace.set_span_in_context(NonRecordingSpan(parent)) if parent is not None else None


def traced(agent: str, message: Any, work: Callable[[Any], list], order_of: Callable[[Any], str | None] | None = None,
           starts: bool = True) -> list:
    """`work(message)`'s sends, `agent` processing the Kafka record under its span, carrying its context on.

    The span is a child of the context in the record's headers. A report about an order (`order_of`
    reads which) sent under another trace than the order's (its fill caused by another order, or by
    a tick) is applied in the order's trace instead, linked to the span that sent it: one trace per
    order, however it fills. Most records at a low ratio belong to traces that are not sampled: those skip the SDK and
    OpenTelemetry's context, and what they cause to be sent carries the decision on, in the record's
    own `traceparent` (or a new unsampled one). With `starts=False`, a record without a context
    starts no trace (the market's ticks).
    """
    value, state = _context_values(message.headers)
    own = _orders.get(order_of(message)) if order_of is not None and _orders else None
    if own is None and state is None and isinstance(value, bytes) and _UNSAMPLED.fullmatch(value):
        return _carried(work(message), ((TRACEPARENT, value),))  # the commonest case at a low ratio, kept cheap
    parent, linked = parse_traceparent(value, state), None
    if own is not None and (parent is None or parent.trace_id != own.trace_id):
        parent, linked = own, parent  # the order's trace, not the sender's
    elif own is None and parent is None and not starts:
        return work(message)
    elif not _records(parent):
        return _carried(work(message), _unsampled_headers(parent))
    global _in_recorded_step
    with _recording(agent, message.topic, message.partition, message.offset, parent, linked):
        _in_recorded_step = True
        try:
            return stamp(work(message))
        finally:
            _in_recorded_step = False


def _unsampled_headers(parent: SpanContext | None) -> tuple[tuple[str, bytes], ...]:
    if parent is None:  # a new trace, not sampled
        return ((TRACEPARENT, b"00-%032x-%016x-00" % (random.getrandbits(128) or 1, random.getrandbits(64) or 1)),)
    carried = ((TRACEPARENT, traceparent(parent).encode()),)
    if parent.trace_state:
        carried += ((TRACESTATE, parent.trace_state.to_header().encode()),)
    return carried


def _recording(agent: str, topic: str, partition: int, offset: int, parent: SpanContext | None,
               linked: SpanContext | None) -> Any:
    """The recording span of one agent processing one record (made current on entering), a child of `parent`."""
    attributes = {"messaging.system": "kafka", "messaging.operation.type": "process",
                  "messaging.destination.name": topic, "messaging.destination.partition.id": str(partition),
                  "messaging.kafka.offset": offset, "messaging.consumer.group.name": settings.app_id,
                  "atlas.agent": agent}
    return tracer().start_as_current_span(f"{agent} process {topic}", context=_remote(parent), kind=SpanKind.CONSUMER,
                                          attributes=attributes, links=[Link(linked)] if linked else None)


@contextmanager
def serving(method: str, route: str, path: str, headers: Any, remote: str | None) -> Iterator[trace.Span]:
    """The current span while the gateway answers one HTTP request (a child of the caller's `traceparent`)."""
    parent = parse_traceparent(headers.get(TRACEPARENT), headers.get(TRACESTATE))
    if not _records(parent):
        with _unrecorded(parent) as span:
            yield span
        return
    attributes = {"http.request.method": method, "http.route": route, "url.path": path,
                  "client.address": remote or ""}
    with tracer().start_as_current_span(f"{method} {route}", context=_remote(parent), kind=SpanKind.SERVER,
                                        attributes=attributes) as span:
        yield span


@contextmanager
def producing(topic: str, key: str) -> Iterator[trace.Span]:
    """The current span while the gateway writes one command to Kafka."""
    attributes = {"messaging.system": "kafka", "messaging.operation.type": "send",
                  "messaging.destination.name": topic, "messaging.kafka.message.key": key}
    with tracer().start_as_current_span(f"send {topic}", kind=SpanKind.PRODUCER, attributes=attributes) as span:
        yield span


@contextmanager
def writing_batch(topic: str, partition: int, start: int, end: int,
                  headers_of_records: Iterable[Iterable[tuple[str, str | None]]]) -> Iterator[trace.Span | None]:
    """The span of one audit object being written: a root of its own, linked to the sampled spans that sent its
    records; none (None) for an object none of whose records was sent in a sampled trace (most, at a low ratio)."""
    linked = links(headers_of_records)
    if not linked:
        yield None
        return
    attributes = {"messaging.system": "kafka", "messaging.destination.name": topic,
                  "messaging.destination.partition.id": str(partition), "atlas.audit.first_offset": start,
                  "atlas.audit.end_offset": end}
    with tracer().start_as_current_span(f"audit write {topic}", kind=SpanKind.CONSUMER, attributes=attributes,
                                        links=linked) as span:
        yield span


def within(span: trace.Span | None) -> Any:
    """`with within(span):` makes an ended span current again (for a log line about it); nothing when None."""
    return trace.use_span(span, end_on_exit=False) if span is not None else nullcontext()


def describe(reports: Sequence[Any]) -> None:
    """Name the current span after the trade its execution reports are about; an event per reject, with its code."""
    if not _in_recorded_step or not reports:
        return
    span = trace.get_current_span()
    first = reports[0]
    span.set_attribute("atlas.account_id", first.account_id)
    span.set_attribute("atlas.order_id", first.order_id)
    if first.symbol:
        span.set_attribute("atlas.symbol", first.symbol)
    span.set_attribute("atlas.exec_types", [report.exec_type.value for report in reports])
    for report in reports:
        if report.exec_type.value == "PENDING_NEW" and span.get_span_context().trace_flags.sampled:
            _orders[report.order_id] = span.get_span_context()
        elif report.exec_type.value == "REJECTED":
            span.add_event("rejected", {"atlas.reason_code": reason_code(report.reason),
                                        "atlas.order_id": report.order_id})


def dead_lettered(error: str) -> None:
    """An event on the current span: its message went to the dead-letter topic, with the reason's code."""
    if _in_recorded_step:
        trace.get_current_span().add_event("dead_lettered", {"atlas.reason_code": reason_code(error)})


def annotate(**attributes: Any) -> None:
    """Set `atlas.<name>` attributes on the current span, when it records."""
    if _in_recorded_step:
        span = trace.get_current_span()
        for name, value in attributes.items():
            if value is not None:
                span.set_attribute(f"atlas.{name}", value)


def links(headers_of_records: Iterable[Iterable[tuple[str, str | None]]]) -> list[Link]:
    """Links to the sampled spans that sent the records (headers as the audit keeps them: base64 values), at most 128."""
    found: list[Link] = []
    seen: set[tuple[int, int]] = set()
    for headers in headers_of_records:
        for name, value in headers:
            if name != TRACEPARENT or value is None:
                continue
            try:
                raw = base64.b64decode(value)
            except ValueError:
                continue
            if _UNSAMPLED.fullmatch(raw):
                continue  # the commonest case at a low ratio, told apart without parsing
            context = parse_traceparent(raw)
            if context is None or not context.trace_flags.sampled or (context.trace_id, context.span_id) in seen:
                continue
            seen.add((context.trace_id, context.span_id))
            found.append(Link(context))
            if len(found) == MAX_LINKS:
                return found
    return found
