"""The worker's log lines: plain text for a terminal, or one JSON object per line (`ATLAS_LOG_FORMAT=json`).

A JSON line carries the active span's `trace_id` and `span_id` (so a log search leads to the
trace), and the `account_id` and `order_id` of the message being processed when there is one.
Whatever the format, a line never carries a secret: API keys (anything of their form) and the
Kafka password are replaced by `[REDACTED]` before the line is written (`Redact`), wherever in
the message, its arguments, its traceback or its `extra=` fields they appear. (Signing secrets
and key digests live in the keys file only, and no code path logs them.)
"""
from __future__ import annotations

import contextvars
import logging
import re
from typing import Any

from opentelemetry import trace
from pythonjsonlogger.json import JsonFormatter as _JsonFormatter

from atlas.settings import settings

REDACTED = "[REDACTED]"
# An ATLAS API key (atlas_<key id>_<secret>); `key_hint` logs only the id of one.
_KEY = re.compile(r"atlas_[0-9a-f]{12}_[A-Za-z0-9_\-]{43}")
# The message being processed: (account_id, order_id), set by the agents and views.
JSON = settings.log_format == "json"  # the agents set CURRENT only then: text lines do not show it
NO_IDS: tuple[str | None, str | None] = (None, None)
CURRENT: contextvars.ContextVar[tuple[str | None, str | None]] = contextvars.ContextVar("atlas_log_ids",
                                                                                         default=NO_IDS)


def secrets() -> tuple[str, ...]:
    """The configured secrets a log line must never show (longest first, so none is partly replaced)."""
    found = []
    if settings.kafka_password is not None:
        found.append(settings.kafka_password.get_secret_value())
    return tuple(sorted((s for s in found if len(s) >= 4), key=len, reverse=True))


def redact(text: str, known: tuple[str, ...] = ()) -> str:
    """`text` without API keys or any of the `known` secrets."""
    for secret in known:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return _KEY.sub(REDACTED, text) if "atlas_" in text else text


class Redact(logging.Filter):
    """Replaces secrets in a record's message (its arguments merged in) and in its exception text."""

    def __init__(self) -> None:
        super().__init__()
        self.known = secrets()

    def filter(self, record: logging.LogRecord) -> bool:
        # Filters run outside the handler's own error handling: a record this cannot read (a call with
        # arguments that do not fit its format, say) is passed on as it is, for the handler to report.
        try:
            self._clean(record)
        except Exception:
            pass
        return True

    def _clean(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        cleaned = redact(message, self.known)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            cleaned = redact(record.exc_text, self.known)
            if cleaned != record.exc_text:
                # Formatters would format the exception again from exc_info: they get the cleaned text only.
                record.exc_text, record.exc_info = cleaned, None
        if record.stack_info:
            record.stack_info = redact(record.stack_info, self.known)


class JsonFormatter(_JsonFormatter):
    """A log record as one JSON object: time, level, logger, message, trace and span ids, account and order ids."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("rename_fields", {"asctime": "time", "levelname": "level", "name": "logger"})
        kwargs.setdefault("timestamp", False)
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s", *args, **kwargs)
        self._known = secrets()

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        super().add_fields(log_data, record, message_dict)
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            log_data["trace_id"] = f"{context.trace_id:032x}"
            log_data["span_id"] = f"{context.span_id:016x}"
        for name, value in list(log_data.items()):  # `extra=` fields too
            if isinstance(value, str) and name != "message":
                log_data[name] = redact(value, self._known)
        account_id, order_id = CURRENT.get()
        if account_id is not None:
            log_data.setdefault("account_id", account_id)
        if order_id is not None:
            log_data.setdefault("order_id", order_id)


def logging_config() -> dict[str, Any]:
    """Faust's `logging_config`: merged into the worker's own (its level stays), the format and the filter ours."""
    handler: dict[str, Any] = {"class": "logging.StreamHandler", "stream": "ext://sys.stdout", "filters": ["redact"]}
    config: dict[str, Any] = {"version": 1, "merge": True, "disable_existing_loggers": False,
                              "filters": {"redact": {"()": Redact}}}
    if settings.log_format == "json":
        config["formatters"] = {"json": {"()": JsonFormatter}}
        handler["formatter"] = "json"
    else:
        config["formatters"] = {"plain": {"format": "[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s"}}
        handler["formatter"] = "plain"
    config["handlers"] = {"default": handler}
    return config
