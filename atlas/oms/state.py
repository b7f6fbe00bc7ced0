"""The OMS's state: an account (balances, limits, throttle) and its orders.

Both are frozen values; the pure core returns new versions and the agent stores them.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field

from atlas.core.accounts import Limits
from atlas.core.events import OrdStatus
from atlas.core.values import ZERO, OrderType, Side, StoredDec, TimeInForce, decimal_text
from atlas.oms.positions import Holding

# Stored state is read back from changelogs written by earlier versions: fields they had
# and this version dropped are ignored rather than fatal.
_FROZEN = ConfigDict(frozen=True, extra="ignore")


class Balance(BaseModel):
    """One asset of one account."""

    model_config = _FROZEN

    available: StoredDec = ZERO
    reserved: StoredDec = ZERO

    @property
    def total(self) -> Decimal:
        return self.available + self.reserved

    def public(self) -> dict:
        """The balance as the API shows it."""
        return {"available": decimal_text(self.available), "reserved": decimal_text(self.reserved),
                "total": decimal_text(self.total)}


class PendingReplace(BaseModel):
    """The terms a replace request asks for, held until the venue answers."""

    model_config = _FROZEN

    quantity: StoredDec
    price: StoredDec | None
    command_id: str


# An order remembers the ids of its latest few commands (and of venue reports that carry no
# place in the venue's log), so a client's retry is recognised; older ids are forgotten.
RECENT_IDS = 16
LAYOUT = 2  # of the stored state: 1 kept every report and applied id inside the order


class Order(BaseModel):
    """An order as the OMS knows it now; its execution reports are stored apart, one key each."""

    model_config = _FROZEN

    order_id: str
    client_order_id: str
    account_id: str
    symbol: str
    side: Side
    type: OrderType
    time_in_force: TimeInForce
    quantity: StoredDec
    price: StoredDec | None
    status: OrdStatus
    filled_quantity: StoredDec = ZERO
    filled_notional: StoredDec = ZERO
    reject_reason: str | None = None
    created_at: int
    updated_at: int
    # Funds held for the rest of the order, in `reserve_asset`, at `reserve_price` per unit for buys.
    reserve_asset: str
    reserve_price: StoredDec | None = None
    reserved: StoredDec = ZERO
    limit_guard: StoredDec | None = None
    pending_replace: PendingReplace | None = None
    # Fingerprint of the submission, so a reuse of client_order_id with other terms is caught.
    terms_digest: str
    # Its place among the account's orders (from 1, in submission order), and among its closed
    # orders (from 1, in closing order; 0 while open): the keys of the listing and of retention.
    number: int = 0
    closed_no: int = 0
    # Number of execution reports so far: the seq of the latest.
    exec_seq: int = 0
    # Refused cancels and replaces that its history keeps (at most MAX_REFUSALS_KEPT).
    refusals: int = 0
    # The latest ids applied: "c:<command_id>", and "r:<report_id>" for a venue report without a venue position.
    recent_ids: tuple[str, ...] = ()
    # (offset, index) of the latest venue report applied: the venue numbers its reports in its
    # symbol's log, so a report at or below this mark is one the OMS has already applied.
    venue_mark: tuple[int, int] | None = None
    # False from the submission until the venue's ACCEPTED: no fill is true before it. (True by
    # default: an order stored before this field existed was acknowledged, or is PENDING_NEW, where
    # the lifecycle refuses fills anyway.)
    acknowledged: bool = True

    @property
    def leaves_quantity(self) -> Decimal:
        return ZERO if self.status.is_closed else self.quantity - self.filled_quantity

    @property
    def avg_price(self) -> Decimal | None:
        if self.filled_quantity == 0:
            return None
        return (self.filled_notional / self.filled_quantity).quantize(Decimal("1e-10")).normalize()

    @property
    def is_open(self) -> bool:
        return not self.status.is_closed

    def remember(self, event_id: str) -> "Order":
        """The order with `event_id` among its recent ids (the oldest forgotten past RECENT_IDS)."""
        return self.model_copy(update={"recent_ids": (self.recent_ids + (event_id,))[-RECENT_IDS:]})

    def public(self) -> dict:
        """The order as the REST API shows it."""
        return {
            "order_id": self.order_id,
            "client_order_id": self.client_order_id,
            "account_id": self.account_id,
            "symbol": self.symbol,
            "side": self.side.value,
            "type": self.type.value,
            "time_in_force": self.time_in_force.value,
            "quantity": decimal_text(self.quantity),
            "price": decimal_text(self.price),
            "status": self.status.value,
            "filled_quantity": decimal_text(self.filled_quantity),
            "leaves_quantity": decimal_text(self.leaves_quantity),
            "avg_price": decimal_text(self.avg_price),
            "reject_reason": self.reject_reason,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "seq": self.exec_seq,  # of its latest execution report: a client keeps the newest
        }


class AccountState(BaseModel):
    """One account's balances, limits and bookkeeping."""

    model_config = _FROZEN

    account_id: str
    # Number of events applied; each stored order version records the seq (and epoch) that wrote it.
    seq: int = 0
    # The first seq of each epoch. A worker starts a new epoch the first time it touches the
    # account after a restart or a rebalance, so a seq reused after a lost account write
    # (an order version whose event the account never recorded) is told apart by its epoch.
    epochs: tuple[int, ...] = (1,)
    balances: dict[str, Balance] = Field(default_factory=dict)
    deposits: dict[str, StoredDec] = Field(default_factory=dict)
    net_fills: dict[str, StoredDec] = Field(default_factory=dict)
    limits: Limits
    # Ids of the latest account-level commands (limits, kill switch), so a retry is a no-op.
    recent_commands: tuple[str, ...] = ()
    killed: bool = False
    kill_reason: str = ""
    # Number of open orders (the orders themselves are found by a prefix scan when needed, so
    # the account's stored value stays the same size however many orders are open).
    open_count: int = 0
    # Leaves quantity of open buys per base asset, for the position limit.
    open_buys: dict[str, StoredDec] = Field(default_factory=dict)
    throttle_tokens: int = 0  # thousandths of an order
    throttle_ts: int = 0
    # Offset of the latest message applied, per input "topic/partition": one read again after a
    # crash is recognised exactly (an account's messages all come from one partition of each topic).
    offsets: dict[str, int] = Field(default_factory=dict)
    # Orders submitted, closed and archived so far (the archived are the oldest closed ones).
    orders: int = 0
    closed: int = 0
    archived: int = 0
    # Each traded symbol's holding, updated on every fill.
    positions: dict[str, Holding] = Field(default_factory=dict)
    layout: int = 1  # a new account is written in LAYOUT; 1 is the previous layout, migrated on load

    @property
    def epoch(self) -> int:
        """The epoch the next event is written in."""
        return len(self.epochs) - 1

    def new_epoch(self) -> "AccountState":
        """The account with a new epoch starting at the next event."""
        return self.model_copy(update={"epochs": self.epochs + (self.seq + 1,)})

    def includes(self, seq: int, epoch: int) -> bool:
        """True when the version written at (seq, epoch) belongs to this account's history."""
        if seq > self.seq:
            return False
        started = [i for i, first in enumerate(self.epochs) if first <= seq]
        return bool(started) and started[-1] == epoch

    def balance(self, asset: str) -> Balance:
        return self.balances.get(asset) or Balance()

    def has_read(self, source: str, offset: int) -> bool:
        """True when the message at `offset` of `source` ("topic/partition") was applied already (it is read again)."""
        return offset <= self.offsets.get(source, -1)


class StoredOrder(BaseModel):
    """An order version and the version before it, tagged with the account seq that wrote it (see tables.oms)."""

    model_config = ConfigDict(frozen=True)

    seq: int
    epoch: int = 0
    cur: Order
    prev: Order | None = None

    def version(self, account: AccountState) -> Order | None:
        """The order as the account's history has it: `prev` when the account never recorded the write of `cur`."""
        return self.cur if account.includes(self.seq, self.epoch) else self.prev


@dataclass(frozen=True)
class Retention:
    """How long a closed order stays in the hot tables: the newest `keep` of an account's closed orders, at most `max_age_ms`."""

    keep: int
    max_age_ms: int | None = None

    def due(self, account: AccountState, closed_at: int, now: int) -> bool:
        """True when the account's oldest closed order still held (closed at `closed_at`) is to be archived at `now`."""
        if account.archived >= account.closed:
            return False
        aged = self.max_age_ms is not None and closed_at <= now - self.max_age_ms
        return account.closed - account.archived > self.keep or aged
