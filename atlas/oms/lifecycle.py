"""The order lifecycle (FIX OrdStatus) as a literal transition table.

`next_status(order_status, event, ...)` returns the status after an event or raises
`InvalidTransition`. A few targets depend on the fills so far; they are the sentinels
`WORKING` (NEW, or PARTIALLY_FILLED once something filled) and `AFTER_FILL`
(PARTIALLY_FILLED or FILLED). `KEEP` leaves a pending status in place.
"""
from __future__ import annotations

import enum
from decimal import Decimal

from atlas.core.events import OrdStatus


class LifecycleEvent(str, enum.Enum):
    ACKNOWLEDGE = "ACKNOWLEDGE"
    FILL = "FILL"
    REQUEST_CANCEL = "REQUEST_CANCEL"
    CANCEL = "CANCEL"
    REJECT_CANCEL = "REJECT_CANCEL"
    REQUEST_REPLACE = "REQUEST_REPLACE"
    REPLACE = "REPLACE"
    REJECT_REPLACE = "REJECT_REPLACE"
    REJECT = "REJECT"
    EXPIRE = "EXPIRE"


class _Target(enum.Enum):
    WORKING = "WORKING"
    AFTER_FILL = "AFTER_FILL"
    KEEP = "KEEP"


WORKING, AFTER_FILL, KEEP = _Target.WORKING, _Target.AFTER_FILL, _Target.KEEP

S, E = OrdStatus, LifecycleEvent
_LIVE = {
    E.FILL: AFTER_FILL,
    E.REQUEST_CANCEL: S.PENDING_CANCEL,
    E.REQUEST_REPLACE: S.PENDING_REPLACE,
    # Unsolicited: an IOC remainder, a venue-side cancel.
    E.CANCEL: S.CANCELED,
    E.EXPIRE: S.EXPIRED,
}
TRANSITIONS: dict[tuple[OrdStatus, LifecycleEvent], OrdStatus | _Target] = {
    (S.PENDING_NEW, E.ACKNOWLEDGE): S.NEW,
    (S.PENDING_NEW, E.REJECT): S.REJECTED,
    # No (PENDING_NEW, FILL): the venue acknowledges every order before it fills it, so a fill of
    # an order it never acknowledged is not true, and is refused (a forged or misrouted report).
    (S.PENDING_NEW, E.REQUEST_CANCEL): S.PENDING_CANCEL,
    (S.PENDING_NEW, E.CANCEL): S.CANCELED,
    (S.PENDING_NEW, E.EXPIRE): S.EXPIRED,
    **{(S.NEW, e): t for e, t in _LIVE.items()},
    **{(S.PARTIALLY_FILLED, e): t for e, t in _LIVE.items()},
    # The ack can overtake nothing but may trail a cancel or replace request.
    (S.PENDING_CANCEL, E.ACKNOWLEDGE): KEEP,
    # Fills race a cancel: they count, and a full fill ends the order.
    (S.PENDING_CANCEL, E.FILL): KEEP,
    (S.PENDING_CANCEL, E.CANCEL): S.CANCELED,
    (S.PENDING_CANCEL, E.REJECT_CANCEL): WORKING,
    (S.PENDING_CANCEL, E.REJECT): S.REJECTED,
    (S.PENDING_CANCEL, E.EXPIRE): S.EXPIRED,
    # The kill switch cancels an order whose replace is still pending: the venue answers
    # the replace first (requests for a symbol are handled in order), then the cancel.
    (S.PENDING_CANCEL, E.REPLACE): KEEP,
    (S.PENDING_CANCEL, E.REJECT_REPLACE): KEEP,
    (S.PENDING_REPLACE, E.ACKNOWLEDGE): KEEP,
    (S.PENDING_REPLACE, E.FILL): KEEP,
    (S.PENDING_REPLACE, E.REPLACE): WORKING,
    (S.PENDING_REPLACE, E.REJECT_REPLACE): WORKING,
    (S.PENDING_REPLACE, E.CANCEL): S.CANCELED,
    (S.PENDING_REPLACE, E.EXPIRE): S.EXPIRED,
    # Only the kill switch asks this (a client's cancel is refused as already pending).
    (S.PENDING_REPLACE, E.REQUEST_CANCEL): S.PENDING_CANCEL,
}
del S, E


class InvalidTransition(Exception):
    """An event that the order's status does not allow."""

    def __init__(self, status: OrdStatus, event: LifecycleEvent):
        super().__init__(f"{event.value} is not allowed in status {status.value}")
        self.status = status
        self.event = event


def next_status(
    status: OrdStatus, event: LifecycleEvent, *, filled: Decimal, quantity: Decimal
) -> OrdStatus:
    """The status after `event`, given the fills counted after it."""
    target = TRANSITIONS.get((status, event))
    if target is None:
        raise InvalidTransition(status, event)
    if filled >= quantity and event in (LifecycleEvent.FILL, LifecycleEvent.REPLACE, LifecycleEvent.REJECT_CANCEL,
                                        LifecycleEvent.REJECT_REPLACE, LifecycleEvent.ACKNOWLEDGE):
        return OrdStatus.FILLED
    if target is KEEP:
        return status
    if target is WORKING or target is AFTER_FILL:
        return OrdStatus.PARTIALLY_FILLED if filled > 0 else OrdStatus.NEW
    return target


def allows(status: OrdStatus, event: LifecycleEvent) -> bool:
    """True when the table has an edge for this status and event."""
    return (status, event) in TRANSITIONS
