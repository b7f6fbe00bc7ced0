"""What every API view needs: the caller, a validated body, a routed read, a produced command."""
from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any, Awaitable, Callable, NamedTuple, TypeVar

import aiohttp
from pydantic import BaseModel, ValidationError
from yarl import URL

from atlas.app import app
from atlas.core.accounts import KEY_PATTERN, Principal, Scope
from atlas.runtime.partitioning import partition_for
from atlas.runtime.producer import BrokerUnavailable, CommandProducer, Written
from atlas.runtime.reference import directory
from atlas.settings import settings
from atlas.tables.oms import load_account, oms_table
from atlas.tables.venue import venue_table
from atlas.web.problems import Problem

M = TypeVar("M", bound=BaseModel)
auth_log = logging.getLogger("atlas.auth")
log = logging.getLogger(__name__)
CALLER = "atlas.caller"  # the request's principal (or None), as the guard found it from its X-API-Key
_UNSEEN = object()
RETRY_AFTER = {"Retry-After": "2"}


def presented_key(request: Any) -> str | None:
    """The API key a request carries: its `X-API-Key` header, or `Authorization: Bearer <key>` (how Prometheus sends one)."""
    key = request.headers.get("X-API-Key")
    if key:
        return key
    header = request.headers.get("Authorization", "")
    return header[7:].strip() or None if header[:7].lower() == "bearer " else None


def principal(request: Any, scope: Scope = Scope.READ) -> Principal:
    """The caller behind the request's API key, whose key has `scope`: a 401 without a valid key, a 403 without the scope."""
    key = presented_key(request)
    if not key:
        raise Problem(401, "UNAUTHENTICATED", "send your API key in the X-API-Key header",
                      headers={"WWW-Authenticate": "ApiKey"})
    found = request.get(CALLER, _UNSEEN)  # the guard signed the key in already (web.security)
    if found is _UNSEEN:
        found = directory().authenticate(key)
    if found is None:
        log_failed_sign_in(f"{request.method} {request.path} from {request.remote}", key)
        raise Problem(401, "UNAUTHENTICATED", "the API key is not valid", headers={"WWW-Authenticate": "ApiKey"})
    if not found.may(scope):
        auth_log.warning("forbidden: %s %s for %s with key %s, which lacks the %s scope", request.method, request.path,
                         found.account_id, found.key_id or "(demo)", scope.value)
        raise Problem(403, "FORBIDDEN", "this needs an admin key" if scope is Scope.ADMIN
                      else "this needs a key with the metrics scope" if scope is Scope.METRICS
                      else f"this key may not {scope.value} (its scopes: {', '.join(sorted(s.value for s in found.scopes))})")
    return found


def admin(request: Any) -> Principal:
    """The caller, who must hold an admin key (403 otherwise)."""
    return principal(request, Scope.ADMIN)


_FAILED = [0]  # failed sign-ins since the worker started: logged at the 1st, 2nd, 4th, 8th...
POWERS_OF_TWO = frozenset(2 ** n for n in range(64))  # sampled warnings: at the 1st, 2nd, 4th, 8th... occurrence


def log_failed_sign_in(what: str, key: str) -> None:
    """A WARNING for a failed sign-in, sampled (an address can send hundreds a second), never with the key."""
    _FAILED[0] += 1
    if _FAILED[0] in POWERS_OF_TWO:
        auth_log.warning("authentication failed (%d so far): %s with %s", _FAILED[0], what, key_hint(key))


def is_worker(address: str | None) -> bool:
    """True when `address` is this worker's host or another worker's (as the group's assignor knows them)."""
    hosts = {URL(url).host for url in app.router.table_metadata(ACCOUNTS.table.name)}
    hosts.add(app.conf.canonical_url.host)
    return address is not None and address in hosts


def key_hint(key: str) -> str:
    """What a log line may say of a key that failed: its id when it has the form of one, never any of its secret."""
    found = KEY_PATTERN.fullmatch(key) if key.isascii() else None
    return f"key id {found['key_id']}" if found else f"a key that is not an ATLAS key ({len(key)} characters)"


async def body(request: Any, model: type[M]) -> M:
    """The request body parsed as JSON and validated by `model`, or a 4xx problem."""
    limit = settings.max_body_bytes
    declared = request.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise Problem(413, "BODY_TOO_LARGE", f"the body may hold at most {limit} bytes")
    raw = await request.read()  # aiohttp stops a chunked body at the same limit (a 413)
    if len(raw) > limit:
        raise Problem(413, "BODY_TOO_LARGE", f"the body may hold at most {limit} bytes")
    if nesting(raw) > settings.max_json_depth:
        raise Problem(400, "JSON_TOO_DEEP", f"the body nests arrays and objects more than {settings.max_json_depth} deep")
    try:
        json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Problem(400, "MALFORMED_JSON", f"the body is not valid JSON: {exc}") from None
    try:
        return model.model_validate_json(raw)  # in JSON mode: a decimal is a string, as on Kafka
    except ValidationError as exc:
        raise validation_problem(exc) from None


# A string, or an unclosed one to the end (always matches where it starts: linear, never backtracking).
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"?', re.S)
_BRACKET = re.compile(rb"[\[\]{}]")


def nesting(raw: bytes) -> int:
    """How deep a JSON document nests arrays and objects, read without parsing it (strings skipped)."""
    depth = deepest = 0
    for bracket in _BRACKET.findall(_STRING.sub(b"", raw)):
        if bracket in b"[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def validation_problem(exc: ValidationError) -> Problem:
    """A 422 listing each invalid field, with the first one in the detail."""
    errors = [{"field": ".".join(str(p) for p in e["loc"]) or "body", "message": _message(e)} for e in exc.errors()]
    first = errors[0]
    return Problem(422, "VALIDATION_ERROR", f"{first['field']}: {first['message']}", errors=errors)


def _message(error: dict) -> str:
    if error["type"] == "missing":
        return "field required"
    if error["type"] == "extra_forbidden":
        return "unknown field"
    return error["msg"].removeprefix("Value error, ")


async def produce(topic: str, key: str, value: BaseModel) -> Written:
    """Write a command to Kafka and wait for the ack (returns where it was put), or answer 503 with Retry-After."""
    producer = CommandProducer.current
    if producer is None:
        raise Problem(503, "NOT_READY", "the worker is starting", headers=RETRY_AFTER)
    try:
        return await producer.send(topic, key, value.model_dump_json().encode())
    except BrokerUnavailable as exc:
        raise Problem(503, "BROKER_UNAVAILABLE", f"the command was not accepted: {exc}", headers=RETRY_AFTER) from None


async def read_model(read: Callable[..., Any], *args: Any) -> Any:
    """A read of the DynamoDB read model (`atlas.cloud.reads`), in a thread; a 503 when DynamoDB fails to answer."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return await asyncio.to_thread(read, *args)
    except (BotoCoreError, ClientError) as exc:
        log.warning("read model: %s failed: %s", getattr(read, "__name__", "read"), str(exc)[:200])
        raise Problem(503, "NOT_READY", "the read model does not answer", headers=RETRY_AFTER) from None


async def on_owner(view: Any, request: Any, key: str, local: Callable[[], Awaitable[Any]], *,
                   route: "Route | None" = None) -> Any:
    """Answer on the worker that owns `key`'s partition (an account's by default), forwarding the request there if it is not us."""
    base = owner_url(key, route or ACCOUNTS)
    if base is None:
        return await local()
    if request.headers.get(FORWARDED_HEADER):
        # Two workers disagree on the owner: a rebalance is under way.
        raise Problem(503, "NOT_READY", "partition ownership is moving (rebalancing)", headers=RETRY_AFTER)
    headers = {k: v for k, v in request.headers.items() if k.lower() in _FORWARDED_REQUEST_HEADERS}
    headers[FORWARDED_HEADER] = "1"
    try:
        async with app.http_client.request(request.method, f"{base}{request.path_qs}", headers=headers) as response:
            payload = await response.read()
    except aiohttp.ClientError:
        # The owner died or is restarting: its partitions move once the group notices (session timeout).
        raise Problem(503, "NOT_READY", f"the worker that owns this key ({base}) does not answer",
                      headers=RETRY_AFTER) from None
    kept = {k: v for k, v in response.headers.items() if k.lower() in _FORWARDED_RESPONSE_HEADERS}
    return view.bytes(payload, content_type=response.content_type, status=response.status, headers=kept)


async def account_read(view: Any, request: Any, account_id: str, *, tables: Callable[[], Awaitable[Any]],
                       dynamodb: Callable[[], Awaitable[Any]]) -> Any:
    """An account's read, where this gateway reads: the DynamoDB read model (`ATLAS_READ_MODEL=dynamodb`, answered
    here) or the tables (on the worker that owns the account)."""
    if settings.read_model == "dynamodb":
        return await dynamodb()
    return await on_owner(view, request, account_id, tables)


FORWARDED_HEADER = "X-Atlas-Forwarded"
_FORWARDED_REQUEST_HEADERS = {"x-api-key", "accept", "idempotency-key", "x-atlas-timestamp", "x-atlas-signature"}
_FORWARDED_RESPONSE_HEADERS = {"retry-after", "idempotent-replayed", "x-atlas-terms-digest", "www-authenticate",
                               "location", "x-atlas-worker"}


class Route(NamedTuple):
    """Where a key's state lives: the topic whose partition owns it, and the table holding it."""

    topic: str
    table: Any


ACCOUNTS = Route(settings.topic("commands"), oms_table)
SYMBOLS = Route(settings.topic("venue.orders"), venue_table)


def owner_url(key: str, route: Route = ACCOUNTS) -> str | None:
    """Base URL of the worker that owns the key's partition, or None when it is this one."""
    url = partition_owner(partition_for(key.encode()), route)
    if url is None:
        raise Problem(503, "NOT_READY", "partition ownership is not known yet (rebalancing)", headers=RETRY_AFTER)
    here = app.conf.canonical_url
    target = URL(url)
    return None if (target.host, target.port) == (here.host, here.port) else str(target).rstrip("/")


def partition_owner(partition: int, route: Route = ACCOUNTS) -> str | None:
    """URL of the worker that processes this partition of the route's topic (and so holds its state)."""
    if app.consumer is not None and any(tp.topic == route.topic and tp.partition == partition
                                        for tp in app.consumer.assignment()):
        return str(app.conf.canonical_url)
    # Another worker's: from the assignor's view of the table's changelog, which is
    # co-partitioned with the route's topic.
    changelog = route.table.changelog_topic.get_topic_name()
    for url, topics in app.router.table_metadata(route.table.name).items():
        if partition in topics.get(changelog, ()):
            return url
    return None


# Worker to worker: answer once the OMS has applied the account's message at "partition:offset" of
# the route's topic (`commands` for an order, `admin` for an operator's change). What makes a cancel
# of an order nobody holds a 404, and an operator's change take effect before its answer.
APPLIED_HEADER = "X-Atlas-Applied-After"
APPLIED_WAIT_S = 2.0
_APPLIED = re.compile(r"^(\d{1,5}):(\d{1,18})$")
SIGNATURE_HEADER = "X-Atlas-Signature"


def applied_after(request: Any) -> Written | None:
    """Where the message named by `X-Atlas-Applied-After` is, or None (absent or malformed: an ordinary request)."""
    match = _APPLIED.match(request.headers.get(APPLIED_HEADER, ""))
    return Written(int(match[1]), int(match[2])) if match else None


class Fence:
    """Waits, on an account's owner, until the OMS has applied a message the account was sent.

    The account records the last offset it read of each topic partition, and the OMS writes it
    with the state the message changed, so once it reaches the message everything before it is
    applied too. At most `most` requests wait at once; past that, or past APPLIED_WAIT_S, the
    answer is "not known" and the caller says so (a 202, not a verdict).
    """

    def __init__(self, most: int = 256) -> None:
        self.most = most
        self.waiting = 0

    async def applied(self, account_id: str, topic: str, written: Written) -> bool:
        """True once the account has read `written` of `topic`; False if that is not known in time."""
        if self.waiting >= self.most:
            return False
        self.waiting += 1
        try:
            source = f"{topic}/{written.partition}"
            loop = asyncio.get_running_loop()
            deadline = loop.time() + APPLIED_WAIT_S
            while True:
                account = load_account(account_id)
                if account is not None and account.has_read(source, written.offset):
                    return True
                if loop.time() >= deadline:
                    return False
                await asyncio.sleep(0.02)
        finally:
            self.waiting -= 1


FENCE = Fence()


async def status_once_applied(request: Any, account_id: str, topic: str, written: Written, probe_path: str,
                              local: Callable[[], int]) -> int | None:
    """What `local()` says on the account's owner once the OMS has applied `written`, or None if not known in time.

    On another worker it is asked with a GET of `probe_path` carrying APPLIED_HEADER, which the
    owner answers 204 (or 404) once applied. A signed request is not asked: the owner would want
    a signature of a GET the client never made.
    """
    try:
        base = owner_url(account_id)
    except Problem:
        return None  # ownership is moving; the command is written all the same
    if base is None:
        return local() if await FENCE.applied(account_id, topic, written) else None
    if request.headers.get(SIGNATURE_HEADER):
        return None
    headers = {"X-API-Key": request.headers["X-API-Key"], FORWARDED_HEADER: "1",
               APPLIED_HEADER: f"{written.partition}:{written.offset}"}
    try:
        async with app.http_client.get(f"{base}{probe_path}", headers=headers,
                                       timeout=aiohttp.ClientTimeout(total=APPLIED_WAIT_S + 1)) as response:
            return response.status if response.status in (204, 404) else None
    except (aiohttp.ClientError, asyncio.TimeoutError):
        return None


async def probe_once_applied(view: Any, request: Any, account_id: str, topic: str, written: Written,
                             exists: Callable[[], bool]) -> Any:
    """The owner's side of `status_once_applied`: 204 if `exists()` once the message is applied, else 404."""
    async def local() -> Any:
        if not await FENCE.applied(account_id, topic, written):
            raise Problem(503, "NOT_READY", "the OMS has not applied the message yet", headers=RETRY_AFTER)
        if not exists():
            raise Problem(404, "NOT_FOUND", "not found once the message was applied")
        return view.bytes(b"", status=204)

    return await on_owner(view, request, account_id, local)


app.service(CommandProducer)
