"""The DynamoDB read model: a projector that follows the OMS's outputs into tables a gateway can read.

Its own consumer group (`<app id>-projector`), like the audit exporter, reading two topics:
- `atlas.executions`: each execution report becomes an item of `<prefix>-executions` (order id, seq)
  and updates its order's item in `<prefix>-orders` (account id, order id);
- the OMS table's changelog (`<app id>-oms-changelog`, compacted, keyed by account): each account
  state it carries sets that account's items in `<prefix>-balances` (account id, asset).

Every write is conditional on a version taken from the event (a report's `seq` for its order, an
account state's `seq` for its balances), so a replay, a report sent again or an older write arriving
late never moves an item backwards. Each report also writes an idempotency item (its exec_id, with
a TTL), in one transaction with the execution item: a report already applied writes nothing more.
Offsets are committed after the writes, so a projector killed at any point reads again what it may
not have written, and converges. It runs beside the order path, never on it.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Any

from cachetools import LRUCache
from pydantic import ValidationError
from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_exponential_jitter

from atlas.cloud.resources import BALANCES, EXECUTIONS, IDEMPOTENCY, ORDERS
from atlas.core.events import ExecutionReport
from atlas.core.values import STORED, decimal_text
from atlas.oms.state import AccountState

log = logging.getLogger(__name__)
BALANCES_REMEMBERED = 100_000  # (account, asset) versions kept in memory, to skip sending what cannot be newer
IDEMPOTENCY_DAYS = 7  # how long an applied exec_id is remembered (a replay further back relies on versions alone)
ACCOUNT_PREFIX = b"a/"  # the OMS table's key of an account's state (`atlas.tables.oms.account_key`)


def created_key(ts: int, order_id: str) -> str:
    """The sort key of `by-created` and `open-orders`: creation time in ms, then the order id (newest first, reversed)."""
    return f"{ts:015d}#{order_id}"


def _s(value: Any) -> dict:
    return {"NULL": True} if value is None else {"S": str(value)}


def _amount(value: Any) -> dict:
    return {"NULL": True} if value is None else {"S": decimal_text(value)}


def execution_item(report: ExecutionReport) -> dict:
    """The report as an item of the executions table: every field, amounts as the API writes them."""
    item = {name: _s(value) for name, value in report.model_dump(mode="json").items() if name not in ("seq", "ts")}
    item.update(seq={"N": str(report.seq)}, ts={"N": str(report.ts)})
    return item


def order_update(report: ExecutionReport) -> dict:
    """UpdateItem arguments (without the table) that set the order's item to what `report` says of it."""
    values = {
        ":v": {"N": str(report.seq)}, ":client": _s(report.client_order_id), ":symbol": _s(report.symbol),
        ":side": _s(report.side.value if report.side else None), ":type": _s(report.type.value if report.type else None),
        ":tif": _s(report.time_in_force.value if report.time_in_force else None), ":status": _s(report.status.value),
        ":quantity": _amount(report.quantity), ":price": _amount(report.price), ":filled": _amount(report.cum_qty),
        ":leaves": _amount(report.leaves_qty), ":avg": _amount(report.avg_px), ":updated": {"N": str(report.ts)},
        ":exec": _s(report.exec_id), ":created": {"N": str(report.ts)},
        ":created_key": {"S": created_key(report.ts, report.order_id)},
    }
    sets = ["version = :v", "client_order_id = :client", "symbol = :symbol", "side = :side", "order_type = :type",
            "time_in_force = :tif", "#status = :status", "quantity = :quantity", "price = :price",
            "filled_quantity = :filled", "leaves_quantity = :leaves", "avg_price = :avg", "updated_at = :updated",
            "last_exec_id = :exec",
            # Creation: the first report's time (a PENDING_NEW's ts is its SubmitOrder's), kept by every later one.
            "created_at = if_not_exists(created_at, :created)", "created_key = if_not_exists(created_key, :created_key)"]
    removes = []
    if not report.status.is_closed:
        sets.append("open_account_id = :account")
        values[":account"] = {"S": report.account_id}
    else:
        removes.append("open_account_id")
    if report.status.value == "REJECTED":  # the order's own reason (a refused cancel's is the report's alone)
        sets.append("reject_reason = :reason")
        values[":reason"] = _s(report.reason)
    expression = "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else "")
    return {"Key": {"account_id": {"S": report.account_id}, "order_id": {"S": report.order_id}},
            "UpdateExpression": expression, "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": values,
            "ConditionExpression": "attribute_not_exists(order_id) OR version < :v"}


class Projector:
    """Applies records to the tables (synchronous boto3 calls; `run` drives it from a Kafka consumer)."""

    def __init__(self, dynamodb: Any, table_prefix: str):
        self.db = dynamodb
        self.orders, self.executions = ORDERS.name(table_prefix), EXECUTIONS.name(table_prefix)
        self.balances, self.idempotency = BALANCES.name(table_prefix), IDEMPOTENCY.name(table_prefix)
        # (account, asset) -> the version this process last wrote or saw refused: an older state is not sent.
        self._written: LRUCache = LRUCache(maxsize=BALANCES_REMEMBERED)
        self.applied = self.duplicates = self.stale = self.unstored = self.unreadable = 0

    def report(self, report: ExecutionReport) -> str:
        """Apply one execution report: "applied", "duplicate" (its exec_id was applied, or its order has a report
        at its seq), "stale" (its order's item holds a later version; the report itself is kept) or "unstored"
        (seq 0: a report the OMS keeps nowhere, about an order it does not hold, such as a cancel of an unknown id)."""
        from botocore.exceptions import ClientError

        if report.seq == 0:
            self.unstored += 1
            return "unstored"

        remember = {"Put": {"TableName": self.idempotency, "ConditionExpression": "attribute_not_exists(id)",
                            "Item": {"id": {"S": report.exec_id},
                                     "expires_at": {"N": str(int(time.time()) + IDEMPOTENCY_DAYS * 86_400)}}}}
        # An order's report at a seq is written once: the first writer wins (the OMS never sends two at one seq).
        keep = {"Put": {"TableName": self.executions, "Item": execution_item(report),
                        "ConditionExpression": "attribute_not_exists(order_id)"}}
        update = {"Update": {"TableName": self.orders, **order_update(report)}}
        try:
            self.db.transact_write_items(TransactItems=[remember, keep, update])
            self.applied += 1
            return "applied"
        except ClientError as exc:
            reasons = [r.get("Code") for r in exc.response.get("CancellationReasons", [])]
            if exc.response["Error"]["Code"] != "TransactionCanceledException" or len(reasons) != 3:
                raise
            exc_of_cancel = exc
        if "ConditionalCheckFailed" in reasons[:2]:  # its exec_id, or its order's report at its seq, is there
            self.duplicates += 1
            return "duplicate"
        if reasons[2] != "ConditionalCheckFailed":
            raise exc_of_cancel  # a conflict or a throttle: `records` asks again
        # The order's item is newer: keep the report, and the creation time if this is the order's first report.
        try:
            self.db.transact_write_items(TransactItems=[remember, keep])
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "TransactionCanceledException":
                raise
            self.duplicates += 1
            return "duplicate"
        if report.seq == 1:
            self.db.update_item(TableName=self.orders, Key=update["Update"]["Key"],
                                UpdateExpression="SET created_at = :created, created_key = :created_key",
                                ExpressionAttributeValues={":created": {"N": str(report.ts)},
                                                           ":created_key": {"S": created_key(report.ts,
                                                                                             report.order_id)}})
        self.stale += 1
        return "stale"

    def account(self, account: AccountState) -> int:
        """Set the account's balances to its state's (each only when newer than the item); returns the writes."""
        from botocore.exceptions import ClientError

        writes = 0
        for asset, balance in sorted(account.balances.items()):
            known = self._written.get((account.account_id, asset))
            if known is not None and known >= account.seq:
                continue
            try:
                self.db.update_item(
                    TableName=self.balances, Key={"account_id": {"S": account.account_id}, "asset": {"S": asset}},
                    UpdateExpression="SET version = :v, available = :available, reserved = :reserved, #total = :total",
                    ConditionExpression="attribute_not_exists(asset) OR version < :v",
                    ExpressionAttributeNames={"#total": "total"},
                    ExpressionAttributeValues={":v": {"N": str(account.seq)},
                                               ":available": {"S": decimal_text(balance.available)},
                                               ":reserved": {"S": decimal_text(balance.reserved)},
                                               ":total": {"S": decimal_text(balance.total)}})
                writes += 1
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                    raise
            self._written[(account.account_id, asset)] = account.seq
        return writes

    def records(self, records: Iterable[Any], executions_topic: str) -> None:
        """Apply consumed records in order: execution reports and account states; anything else is skipped.

        A record that cannot be read, or that DynamoDB refuses as invalid, is counted and skipped; a throttle or
        a conflicting transaction is retried with backoff (raised after five minutes: the process stops and is
        restarted, and reads again from its last commit).
        """
        from botocore.exceptions import ClientError

        for record in records:
            if record.value is None:
                continue  # a tombstone: an archived key; the read model keeps what it had
            try:
                for attempt in Retrying(wait=wait_exponential_jitter(initial=0.1, max=5), stop=stop_after_delay(300),
                                        retry=retry_if_exception(_transient), reraise=True):
                    with attempt:
                        self._record(record, executions_topic)
            except (ValidationError, ValueError) as exc:
                self._skip(record, exc)
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "ValidationException":
                    raise
                self._skip(record, exc)

    def _record(self, record: Any, executions_topic: str) -> None:
        if record.topic == executions_topic:
            self.report(ExecutionReport.model_validate_json(record.value))
        elif record.key is not None and record.key.startswith(ACCOUNT_PREFIX):
            self.account(AccountState.model_validate_json(record.value, context=STORED))

    def _skip(self, record: Any, exc: Exception) -> None:
        self.unreadable += 1
        log.warning("projector: %s[%d]@%d unreadable, skipped: %s", record.topic, record.partition, record.offset,
                    str(exc)[:200])


_TRANSIENT = frozenset({"ThrottlingException", "ProvisionedThroughputExceededException", "RequestLimitExceeded",
                        "TransactionConflictException", "InternalServerError", "ServiceUnavailable"})


def _transient(exc: BaseException) -> bool:
    """A DynamoDB refusal that asking again later can mend (a transaction cancelled by a conflict among them)."""
    from botocore.exceptions import ClientError, ConnectionError as BotoConnectionError

    if isinstance(exc, BotoConnectionError):
        return True
    if not isinstance(exc, ClientError):
        return False
    code = exc.response["Error"]["Code"]
    reasons = [r.get("Code") for r in exc.response.get("CancellationReasons", [])]
    return code in _TRANSIENT or (code == "TransactionCanceledException" and
                                  any(r in ("TransactionConflict", "ThrottlingError") for r in reasons))


async def run(dynamodb: Any, table_prefix: str, kafka: dict, executions_topic: str, changelog_topic: str,
              group: str, stop: asyncio.Event | None = None) -> None:
    """Follow both topics until `stop` is set: apply each batch of records, then commit their offsets."""
    from aiokafka import AIOKafkaConsumer

    projector = Projector(dynamodb, table_prefix)
    consumer = AIOKafkaConsumer(executions_topic, changelog_topic, **kafka, group_id=group,
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                isolation_level="read_committed", max_poll_records=500)
    await consumer.start()
    log.info("projector: %s and %s into the tables %s-*, group %s", executions_topic, changelog_topic, table_prefix,
             group)
    stop = stop or asyncio.Event()
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=500)
            if not batches:
                continue
            records = [record for batch in batches.values() for record in batch]
            await asyncio.to_thread(projector.records, records, executions_topic)
            await consumer.commit({tp: batch[-1].offset + 1 for tp, batch in batches.items()})
    finally:
        await consumer.stop()
        log.info("projector: stopped; %d reports applied, %d duplicates, %d stale, %d unstored, %d unreadable",
                 projector.applied, projector.duplicates, projector.stale, projector.unstored, projector.unreadable)
