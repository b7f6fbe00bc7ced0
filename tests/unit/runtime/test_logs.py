"""Log lines: JSON with the active span's ids and the message's account and order, and never a secret."""
from __future__ import annotations

import io
import json
import logging

import pytest
from opentelemetry.sdk.trace import TracerProvider

from atlas.runtime import logs, tracing
from tests.helpers import traced

KEY = "atlas_0123456789ab_" + "A" * 43


@pytest.fixture
def captured():
    """A logger writing through ATLAS's JSON formatter and redaction filter into a buffer."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logs.JsonFormatter())
    handler.addFilter(logs.Redact())
    logger = logging.getLogger("atlas.test.logs")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    token = logs.CURRENT.set(logs.NO_IDS)  # whatever a test that ran the OMS before left
    yield logger, buffer
    logs.CURRENT.reset(token)
    logger.removeHandler(handler)


def lines(buffer: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_a_line_is_one_json_object_with_time_level_logger_and_message(captured):
    logger, buffer = captured
    logger.warning("re-keying %s message at %s/%s", "commands", 3, 42)
    [line] = lines(buffer)
    assert line["level"] == "WARNING" and line["logger"] == "atlas.test.logs"
    assert line["message"] == "re-keying commands message at 3/42" and line["time"]
    assert "trace_id" not in line and "account_id" not in line


def test_inside_a_span_a_line_carries_its_trace_and_span_ids(captured):
    logger, buffer = captured
    tracing.install(TracerProvider())
    try:
        span, _ = traced("oms", "atlas.commands", 0, 1, None, body=lambda: logger.info("applied"))
    finally:
        tracing.install(None)
    [line] = lines(buffer)
    context = span.get_span_context()
    assert line["trace_id"] == f"{context.trace_id:032x}" and line["span_id"] == f"{context.span_id:016x}"


def test_a_line_names_the_account_and_order_being_processed(captured):
    logger, buffer = captured
    token = logs.CURRENT.set(("alice", "O123"))
    try:
        logger.info("processing")
    finally:
        logs.CURRENT.reset(token)
    logger.info("after")
    first, after = lines(buffer)
    assert (first["account_id"], first["order_id"]) == ("alice", "O123")
    assert "account_id" not in after


def test_api_keys_are_redacted_in_messages_arguments_and_tracebacks(captured):
    logger, buffer = captured
    logger.warning("key %s refused", KEY)
    logger.warning(f"inline {KEY}")
    try:
        raise ValueError(f"bad key {KEY}")
    except ValueError:
        logger.exception("failed")
    text = buffer.getvalue()
    assert KEY not in text and text.count(logs.REDACTED) == 3
    assert "ValueError: bad key [REDACTED]" in lines(buffer)[2]["exc_info"]


def test_the_kafka_password_is_redacted(captured, monkeypatch):
    logger, buffer = captured
    monkeypatch.setattr(logs, "secrets", lambda: ("s3cret-passw0rd",))
    for handler in logger.handlers:
        handler.filters = [logs.Redact()]
    logger.error("sign-in failed for worker:s3cret-passw0rd@broker")
    [line] = lines(buffer)
    assert "s3cret" not in json.dumps(line) and line["message"] == "sign-in failed for worker:[REDACTED]@broker"


def test_the_worker_config_picks_the_format_and_always_redacts():
    config = logs.logging_config()
    handler = config["handlers"]["default"]
    assert handler["filters"] == ["redact"] and config["merge"] is True
    assert handler["formatter"] in config["formatters"] and config["filters"]["redact"]["()"] is logs.Redact


def test_a_record_whose_arguments_do_not_fit_passes_the_filter_untouched():
    # Filters run outside the handler's error handling: raising here would raise into the caller (an agent).
    record = logging.LogRecord("atlas.test", logging.WARNING, __file__, 1, "%d orders", ("not a number",), None)
    assert logs.Redact().filter(record) is True
    assert (record.msg, record.args) == ("%d orders", ("not a number",))


def test_extra_fields_are_redacted_too(captured):
    logger, buffer = captured
    logger.info("signed in", extra={"key": KEY, "note": f"with {KEY}"})
    [line] = lines(buffer)
    assert line["key"] == logs.REDACTED and line["note"] == f"with {logs.REDACTED}"
