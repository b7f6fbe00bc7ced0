"""Trace context on Kafka records: parsing `traceparent`, stamping sends, spans with the right parents."""
from __future__ import annotations

import base64

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from atlas.agents.outputs import POSS_DUP, Send
from atlas.runtime import tracing
from tests.helpers import execution_report, traced

TRACE, SPAN = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"


@pytest.fixture
def exporter():
    """ATLAS's spans from an SDK provider recording into memory."""
    found = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(found))
    tracing.install(provider)
    yield found
    tracing.install(None)


@pytest.mark.parametrize("value", [
    f"00-{TRACE}-{SPAN}-01", f"00-{TRACE}-{SPAN}-01".encode(), f" 00-{TRACE}-{SPAN}-01 ",
    f"01-{TRACE}-{SPAN}-01-future-fields",
])
def test_a_valid_traceparent_names_a_sampled_remote_parent(value):
    context = tracing.parse_traceparent(value)
    assert context is not None and context.is_remote and context.trace_flags.sampled
    assert f"{context.trace_id:032x}" == TRACE and f"{context.span_id:016x}" == SPAN


@pytest.mark.parametrize("value", [
    None, "", "garbage", f"00-{TRACE}-{SPAN}", f"ff-{TRACE}-{SPAN}-01", f"00-{'0' * 32}-{SPAN}-01",
    f"00-{TRACE}-{'0' * 16}-01", f"00-{TRACE.upper()}-{SPAN}-01", f"00-{TRACE}-{SPAN}-01-extra",
    f"00-{TRACE[:-1]}-{SPAN}-01", b"\xff\xfe", "00-" + "g" * 32 + f"-{SPAN}-01",
])
def test_a_malformed_traceparent_is_no_parent(value):
    assert tracing.parse_traceparent(value) is None


def test_the_unsampled_flag_is_kept():
    context = tracing.parse_traceparent(f"00-{TRACE}-{SPAN}-00")
    assert context is not None and not context.trace_flags.sampled


def test_the_last_traceparent_header_wins(exporter):
    headers = [("traceparent", f"00-{'1' * 32}-{SPAN}-01".encode()), ("other", b"x"),
               ("traceparent", f"00-{TRACE}-{SPAN}-01".encode())]
    traced("oms", "atlas.commands", 3, 42, headers)
    [finished] = exporter.get_finished_spans()
    assert f"{finished.context.trace_id:032x}" == TRACE and finished.parent.span_id == int(SPAN, 16)


def test_a_consuming_span_is_a_child_of_the_records_context_and_stamps_what_it_sends(exporter):
    headers = [("traceparent", f"00-{TRACE}-{SPAN}-01".encode())]
    sends = [Send("topic", b"k", b"v"), Send("topic", b"k", b"w", headers=POSS_DUP + (("traceparent", b"old"),))]
    span, stamped = traced("oms", "atlas.commands", 3, 42, headers, sends=sends)
    [finished] = exporter.get_finished_spans()
    assert finished.parent.span_id == int(SPAN, 16) and finished.context.trace_id == int(TRACE, 16)
    assert finished.kind is trace.SpanKind.CONSUMER and finished.name == "oms process atlas.commands"
    assert finished.attributes["messaging.kafka.offset"] == 42
    assert finished.attributes["messaging.destination.partition.id"] == "3"
    expected = f"00-{TRACE}-{span.get_span_context().span_id:016x}-01".encode()
    assert stamped[0].headers == (("traceparent", expected),)
    assert stamped[1].headers == POSS_DUP + (("traceparent", expected),)  # replaced, the other header kept


def test_a_record_without_context_starts_a_trace_unless_told_not_to(exporter):
    _, [stamped] = traced("oms", "atlas.commands", 0, 1, None, sends=[Send("topic", b"k", b"v")])
    [finished] = exporter.get_finished_spans()
    assert finished.parent is None
    assert dict(stamped.headers)["traceparent"] == tracing.traceparent(finished.context).encode()
    span, [tick] = traced("venue", "atlas.venue.orders", 0, 2, None, sends=[Send("topic", b"k", b"v")], starts=False)
    assert not span.get_span_context().is_valid and tick.headers is None and len(exporter.get_finished_spans()) == 1


def test_outside_a_span_nothing_is_stamped():
    sends = [Send("topic", b"k", b"v")]
    assert tracing.stamp(sends) is sends and not tracing.active()


def test_describe_names_the_trade_and_records_a_reject_with_its_code(exporter):
    def body():
        tracing.describe([execution_report("REJECTED", "REJECTED", reason="MAX_NOTIONAL: over the limit")])
        tracing.dead_lettered("INVALID_MESSAGE: quantity: bad")
    traced("oms", "atlas.commands", 0, 1, None, body=body)
    [finished] = exporter.get_finished_spans()
    assert finished.attributes["atlas.order_id"] == "O1" and finished.attributes["atlas.account_id"] == "alice"
    assert finished.attributes["atlas.exec_types"] == ("REJECTED",)
    assert [(e.name, e.attributes["atlas.reason_code"]) for e in finished.events] == [
        ("rejected", "MAX_NOTIONAL"), ("dead_lettered", "INVALID_MESSAGE")]


def test_links_go_to_the_sampled_senders_of_records_once_each_and_at_most_128():
    def header(trace_id: int, flags: str = "01") -> tuple[str, str]:
        return ("traceparent", base64.b64encode(f"00-{trace_id:032x}-{SPAN}-{flags}".encode()).decode())
    records = [[header(1)], [header(1)], [header(2, "00")], [("traceparent", None)], [("traceparent", "!!")],
               [("other", "eA==")], *([header(n)] for n in range(3, 300))]
    found = tracing.links(records)
    assert len(found) == tracing.MAX_LINKS
    assert [link.context.trace_id for link in found[:2]] == [1, 3]


def test_an_oversized_traceparent_or_a_malformed_tracestate_is_ignored_without_a_warning(caplog):
    assert tracing.parse_traceparent(f"01-{TRACE}-{SPAN}-01-" + "x" * 300) is None
    context = tracing.parse_traceparent(f"00-{TRACE}-{SPAN}-01", "not a tracestate!!")
    assert context is not None and not context.trace_state
    assert not tracing.parse_traceparent(f"00-{TRACE}-{SPAN}-01", "a=" + "b" * 600).trace_state
    assert tracing.parse_traceparent(f"00-{TRACE}-{SPAN}-01", "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7").trace_state \
        .get("rojo") == "00f067aa0ba902b7"
    assert not [r for r in caplog.records if r.levelno >= 30]


def test_a_fill_reaching_an_order_under_another_trace_is_applied_in_the_orders_trace_and_linked(exporter):
    submitted, _ = traced("oms", "atlas.commands", 0, 1, None, body=lambda: tracing.describe(
        [execution_report("PENDING_NEW", "PENDING_NEW", order_id="O77")]))
    own = submitted.get_span_context()
    for offset, flags in ((2, "01"), (3, "00")):  # another trace, sampled or not
        traced("oms", "atlas.venue.reports", 0, offset, [("traceparent", f"00-{TRACE}-{SPAN}-{flags}".encode())],
               order_id="O77")
    traced("oms", "atlas.venue.reports", 0, 4, [("traceparent", f"00-{own.trace_id:032x}-{SPAN}-01".encode())],
           order_id="O77")
    _, fill, unsampled_fill, own_fill = exporter.get_finished_spans()
    for applied, flags in ((fill, 1), (unsampled_fill, 0)):
        assert applied.context.trace_id == own.trace_id and applied.parent.span_id == own.span_id
        assert [(link.context.trace_id, link.context.span_id, link.context.trace_flags) for link in applied.links] \
            == [(int(TRACE, 16), int(SPAN, 16), flags)]
    assert own_fill.parent.span_id == int(SPAN, 16) and not own_fill.links  # its own trace: the sender's child


def test_an_unsampled_parent_is_followed_without_recording_and_passed_on_unsampled(exporter):
    headers = [("traceparent", f" 00-{TRACE}-{SPAN}-00 ".encode()), ("tracestate", b"rojo=00f067aa0ba902b7")]
    span, [stamped] = traced("venue", "atlas.venue.orders", 0, 1, headers, sends=[Send("topic", b"k", b"v")],
                             body=lambda: tracing.describe([execution_report("PENDING_NEW", "PENDING_NEW",
                                                                             order_id="O78")]))
    assert not span.is_recording() and not exporter.get_finished_spans()
    # Passed on as it came (no span of this hop is recorded to be the parent of anything), tidied.
    assert stamped.headers == (("traceparent", f"00-{TRACE}-{SPAN}-00".encode()),
                               ("tracestate", b"rojo=00f067aa0ba902b7"))
    as_written = f"00-{TRACE}-{SPAN}-02".encode()  # a flag the SDK sets (random trace id), not sampled
    _, [stamped] = traced("oms", "atlas.venue.reports", 0, 2, [("traceparent", as_written)],
                          sends=[Send("topic", b"k", b"v", headers=POSS_DUP)])
    assert stamped.headers == POSS_DUP + (("traceparent", as_written),) and not exporter.get_finished_spans()
    nobody = f"00-{'0' * 32}-{SPAN}-00".encode()  # no trace: a new one is started instead (here recorded)
    _, [stamped] = traced("oms", "atlas.venue.reports", 0, 3, [("traceparent", nobody)], sends=[Send("t", b"k", b"v")])
    [started] = exporter.get_finished_spans()
    assert started.parent is None and dict(stamped.headers)["traceparent"] != nobody
    assert "O78" not in tracing._orders  # an unsampled order is not remembered


def test_new_traces_are_recorded_at_the_ratio_and_unrecorded_ones_still_pass_a_decision_on():
    found = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(found))
    tracing.install(provider, 0.0)
    try:
        _, [unrecorded] = traced("oms", "atlas.commands", 0, 1, None, sends=[Send("topic", b"k", b"v")])
        with tracing.serving("POST", "/api/v1/orders", "/api/v1/orders", {}, "127.0.0.1") as span:
            assert not span.is_recording()
        sampled = [("traceparent", f"00-{TRACE}-{SPAN}-01".encode())]
        traced("oms", "atlas.commands", 0, 2, sampled)  # a sampled parent is followed
    finally:
        tracing.install(None)
    assert dict(unrecorded.headers)["traceparent"].decode().endswith("-00")
    [followed] = found.get_finished_spans()
    assert followed.parent.span_id == int(SPAN, 16)


def test_an_audit_object_gets_a_span_only_when_a_record_of_it_was_sent_in_a_sampled_trace(exporter):
    def header(flags: str) -> list[tuple[str, str]]:
        return [("traceparent", base64.b64encode(f"00-{TRACE}-{SPAN}-{flags}".encode()).decode())]
    with tracing.writing_batch("atlas.executions", 3, 10, 12, [header("00"), header("02")]) as span:
        assert span is None
    assert not exporter.get_finished_spans()
    with tracing.writing_batch("atlas.executions", 3, 12, 14, [header("00"), header("01")]) as span:
        assert span is not None
    [written] = exporter.get_finished_spans()
    assert written.name == "audit write atlas.executions" and len(written.links) == 1
