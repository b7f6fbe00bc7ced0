"""The gateway's reads from the DynamoDB read model (`ATLAS_READ_MODEL=dynamodb`): the API's documents, from items.

Every read is strongly consistent (a table or its local index; never the global one), so a gateway
answers what the projector has written, whichever gateway the load balancer picked. Documents have
the shapes the tables' answers have; cursors are opaque (a key of the last item, base64 JSON).
Calls are synchronous boto3: the views run them in a thread.
"""
from __future__ import annotations

import base64
import binascii
import json
import threading
from typing import Any

from atlas.cloud.resources import BALANCES, CREATED_INDEX, EXECUTIONS, ORDERS

QUERIES_PER_PAGE = 8  # the most a page's request asks of DynamoDB (each reads up to `limit` orders)
ORDER_FIELDS = ("client_order_id", "symbol", "side", "time_in_force", "quantity", "price", "status",
                "filled_quantity", "leaves_quantity", "avg_price", "reject_reason")


class BadCursor(ValueError):
    """A cursor this read model did not hand out."""


_made = threading.Lock()
_the_client: Any = None


def client() -> Any:
    """One DynamoDB client per process (boto3 configured the usual AWS way). A boto3 client is safe to share
    between threads, its making is not: it is made once, under a lock that later calls do not take."""
    global _the_client
    if _the_client is None:
        with _made:
            if _the_client is None:
                _the_client = _make_client()
    return _the_client


def _make_client() -> Any:
    import boto3
    from botocore.config import Config

    # Short timeouts: a read model that does not answer is a 503 soon, not a request held a minute.
    return boto3.client("dynamodb", config=Config(connect_timeout=2, read_timeout=5,
                                                  retries={"mode": "standard", "max_attempts": 2}))


def _plain(item: dict) -> dict:
    return {k: None if "NULL" in v else next(iter(v.values())) for k, v in item.items()}


def order_doc(item: dict) -> dict:
    """An order item as `Order.public()` writes the order."""
    plain = _plain(item)
    doc = {"order_id": plain["order_id"], "account_id": plain["account_id"], "type": plain.get("order_type")}
    doc.update({name: plain.get(name) for name in ORDER_FIELDS})
    doc.update(created_at=int(plain["created_at"]), updated_at=int(plain["updated_at"]), seq=int(plain["version"]))
    return {k: doc[k] for k in ("order_id", "client_order_id", "account_id", "symbol", "side", "type", "time_in_force",
                                "quantity", "price", "status", "filled_quantity", "leaves_quantity", "avg_price",
                                "reject_reason", "created_at", "updated_at", "seq")}


def execution_doc(item: dict) -> dict:
    """An execution item as the report's `model_dump(mode="json")` writes it."""
    plain = _plain(item)
    return {**plain, "seq": int(plain["seq"]), "ts": int(plain["ts"])}


def _cursor(key: dict | None) -> str | None:
    return None if key is None else base64.urlsafe_b64encode(json.dumps(key, sort_keys=True).encode()).decode()


def _key(cursor: str | None, account_id: str) -> dict | None:
    """The start key a cursor names, checked to be one of this account's order keys."""
    if not cursor:
        return None
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise BadCursor("cursor is not one this API handed out") from None
    if not isinstance(key, dict) or set(key) != {"account_id", "order_id", "created_key"} \
            or key["account_id"] != {"S": account_id} \
            or not all(isinstance(v, dict) and list(v) == ["S"] and isinstance(v["S"], str) and 0 < len(v["S"]) <= 128
                       for v in key.values()):
        raise BadCursor("cursor is not one this API handed out")
    return key


def order(table_prefix: str, account_id: str, order_id: str) -> dict | None:
    found = client().get_item(TableName=ORDERS.name(table_prefix), ConsistentRead=True,
                              Key={"account_id": {"S": account_id}, "order_id": {"S": order_id}}).get("Item")
    return None if found is None else order_doc(found)


def orders(table_prefix: str, account_id: str, status: str, symbol: str | None, cursor: str | None,
           limit: int) -> tuple[list[dict], str | None]:
    """A page of the account's orders, newest first (`status`: open, closed or all)."""
    filters, values, names = [], {":a": {"S": account_id}}, {}
    if status == "open":
        filters.append("attribute_exists(open_account_id)")
    elif status == "closed":
        filters.append("attribute_not_exists(open_account_id)")
    if symbol:
        filters.append("#symbol = :s")
        values[":s"] = {"S": symbol}
        names["#symbol"] = "symbol"
    start, page = _key(cursor, account_id), []
    for _ in range(QUERIES_PER_PAGE):
        args: dict[str, Any] = {"TableName": ORDERS.name(table_prefix), "IndexName": CREATED_INDEX,
                                "ConsistentRead": True, "ScanIndexForward": False, "Limit": limit - len(page),
                                "KeyConditionExpression": "account_id = :a", "ExpressionAttributeValues": values}
        if filters:
            args["FilterExpression"] = " AND ".join(filters)
        if names:
            args["ExpressionAttributeNames"] = names
        if start:
            args["ExclusiveStartKey"] = start
        answer = client().query(**args)
        page += [order_doc(item) for item in answer["Items"]]
        start = answer.get("LastEvaluatedKey")
        if start is None or len(page) >= limit:
            break
    # A filter that matches few orders ends a page early, with a cursor to go on from (as the tables' reads do).
    return page, _cursor(start)


def executions(table_prefix: str, account_id: str, order_id: str, after: int,
               limit: int) -> tuple[list[dict], str | None] | None:
    """A page of the order's reports, oldest first, after seq `after`; None when the account has no such order."""
    found = order(table_prefix, account_id, order_id)
    if found is None:
        return None
    answer = client().query(TableName=EXECUTIONS.name(table_prefix), ConsistentRead=True, Limit=limit,
                            KeyConditionExpression="order_id = :o AND seq > :after",
                            ExpressionAttributeValues={":o": {"S": order_id}, ":after": {"N": str(after)}})
    page = [execution_doc(item) for item in answer["Items"]]
    more = bool(page) and page[-1]["seq"] < found["seq"]
    return page, str(page[-1]["seq"]) if more else None


def balances(table_prefix: str, account_id: str) -> dict[str, dict] | None:
    """The account's balances by asset, as `Balance.public()` writes them; None before the projector has any."""
    answer = client().query(TableName=BALANCES.name(table_prefix), ConsistentRead=True,
                            KeyConditionExpression="account_id = :a",
                            ExpressionAttributeValues={":a": {"S": account_id}})
    if not answer["Items"]:
        return None
    return {i["asset"]["S"]: {"available": i["available"]["S"], "reserved": i["reserved"]["S"], "total": i["total"]["S"]}
            for i in sorted(answer["Items"], key=lambda i: i["asset"]["S"])}
