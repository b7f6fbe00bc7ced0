"""RFC 9457 problem documents: every API error is `application/problem+json` with a stable code."""
from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web as aiohttp_web
from faust import web

log = logging.getLogger(__name__)
PROBLEM_TYPE = "application/problem+json"
WORKER_HEADER = "X-Atlas-Worker"


class Problem(Exception):
    """An error the API reports: HTTP status, stable code, human detail."""

    def __init__(self, status: int, code: str, detail: str, *, title: str | None = None,
                 headers: dict[str, str] | None = None, **extra: Any):
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail
        self.title = title or code.replace("_", " ").capitalize()
        self.headers = headers or {}
        self.extra = extra

    def body(self, instance: str | None = None) -> dict:
        doc = {"type": f"/problems/{self.code.lower().replace('_', '-')}", "title": self.title,
               "status": self.status, "detail": self.detail, "code": self.code}
        if instance:
            doc["instance"] = instance
        doc.update(self.extra)
        return doc


def http_problem(exc: aiohttp_web.HTTPException) -> Problem:
    """aiohttp's own error (an unknown route, a body past the size limit, a bad WebSocket handshake) as a problem."""
    headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
    return Problem(exc.status, _HTTP_CODES.get(exc.status, "HTTP_ERROR"), exc.reason, headers=headers)


_HTTP_CODES = {400: "BAD_REQUEST", 404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 413: "BODY_TOO_LARGE",
               414: "URI_TOO_LONG", 431: "HEADERS_TOO_LARGE"}


def not_found(what: str) -> Problem:
    return Problem(404, "NOT_FOUND", f"{what} not found")


class ApiView(web.View):
    """A view whose errors, expected or not, become problem documents."""

    async def dispatch(self, request: Any) -> Any:
        try:
            return await super().dispatch(request)
        except Problem as problem:
            return self.problem(problem, request)
        except aiohttp_web.HTTPException as exc:
            if exc.status < 400:
                raise
            return self.problem(http_problem(exc), request)
        except Exception:  # never a stack trace or an HTML page to a client
            log.exception("unhandled error in %s %s", request.method, request.path)
            return self.problem(Problem(500, "INTERNAL_ERROR", "the server failed to handle this request"), request)

    def problem(self, problem: Problem, request: Any) -> Any:
        return self.bytes(json.dumps(problem.body(request.path)).encode(), content_type=PROBLEM_TYPE,
                          status=problem.status, headers=self._headers(problem.headers))

    def ok(self, doc: Any, status: int = 200, headers: dict[str, str] | None = None) -> Any:
        return self.bytes(json.dumps(doc).encode(), content_type="application/json", status=status,
                          headers=self._headers(headers))

    def _headers(self, extra: dict[str, str] | None) -> dict[str, str]:
        # Which worker answered: reads are served by the account's owner, wherever they arrive.
        return {WORKER_HEADER: str(self.app.conf.canonical_url), **(extra or {})}
