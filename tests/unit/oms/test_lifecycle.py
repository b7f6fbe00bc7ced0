"""The order lifecycle table: every legal edge, every illegal one."""
from __future__ import annotations

import itertools

import pytest

from atlas.core.events import OrdStatus
from atlas.oms.lifecycle import TRANSITIONS, InvalidTransition, LifecycleEvent, allows, next_status
from tests.helpers import D

S, E = OrdStatus, LifecycleEvent
NONE, PART, ALL = D("0"), D("0.4"), D("1")  # filled so far, of a quantity of 1
QTY = D("1")

# (status, event, filled after the event, expected status): the spec, written out by hand.
EDGES = [
    (S.PENDING_NEW, E.ACKNOWLEDGE, NONE, S.NEW),
    (S.PENDING_NEW, E.REJECT, NONE, S.REJECTED),
    (S.PENDING_NEW, E.REQUEST_CANCEL, NONE, S.PENDING_CANCEL),
    (S.PENDING_NEW, E.CANCEL, NONE, S.CANCELED),
    (S.PENDING_NEW, E.EXPIRE, NONE, S.EXPIRED),
    (S.NEW, E.FILL, PART, S.PARTIALLY_FILLED),
    (S.NEW, E.FILL, ALL, S.FILLED),
    (S.NEW, E.REQUEST_CANCEL, NONE, S.PENDING_CANCEL),
    (S.NEW, E.REQUEST_REPLACE, NONE, S.PENDING_REPLACE),
    (S.NEW, E.CANCEL, NONE, S.CANCELED),
    (S.NEW, E.EXPIRE, NONE, S.EXPIRED),
    (S.PARTIALLY_FILLED, E.FILL, D("0.7"), S.PARTIALLY_FILLED),
    (S.PARTIALLY_FILLED, E.FILL, ALL, S.FILLED),
    (S.PARTIALLY_FILLED, E.REQUEST_CANCEL, PART, S.PENDING_CANCEL),
    (S.PARTIALLY_FILLED, E.REQUEST_REPLACE, PART, S.PENDING_REPLACE),
    (S.PARTIALLY_FILLED, E.CANCEL, PART, S.CANCELED),
    (S.PARTIALLY_FILLED, E.EXPIRE, PART, S.EXPIRED),
    (S.PENDING_CANCEL, E.ACKNOWLEDGE, NONE, S.PENDING_CANCEL),
    (S.PENDING_CANCEL, E.FILL, PART, S.PENDING_CANCEL),
    (S.PENDING_CANCEL, E.FILL, ALL, S.FILLED),
    (S.PENDING_CANCEL, E.CANCEL, PART, S.CANCELED),
    (S.PENDING_CANCEL, E.REJECT_CANCEL, NONE, S.NEW),
    (S.PENDING_CANCEL, E.REJECT_CANCEL, PART, S.PARTIALLY_FILLED),
    (S.PENDING_CANCEL, E.REJECT, NONE, S.REJECTED),
    (S.PENDING_CANCEL, E.EXPIRE, PART, S.EXPIRED),
    (S.PENDING_CANCEL, E.REPLACE, NONE, S.PENDING_CANCEL),  # kill switch during a replace
    (S.PENDING_CANCEL, E.REJECT_REPLACE, PART, S.PENDING_CANCEL),
    (S.PENDING_REPLACE, E.ACKNOWLEDGE, NONE, S.PENDING_REPLACE),
    (S.PENDING_REPLACE, E.FILL, PART, S.PENDING_REPLACE),
    (S.PENDING_REPLACE, E.FILL, ALL, S.FILLED),
    (S.PENDING_REPLACE, E.REPLACE, NONE, S.NEW),
    (S.PENDING_REPLACE, E.REPLACE, PART, S.PARTIALLY_FILLED),
    (S.PENDING_REPLACE, E.REPLACE, ALL, S.FILLED),  # replaced down to exactly what has filled
    (S.PENDING_REPLACE, E.REJECT_REPLACE, NONE, S.NEW),
    (S.PENDING_REPLACE, E.REJECT_REPLACE, PART, S.PARTIALLY_FILLED),
    (S.PENDING_REPLACE, E.CANCEL, PART, S.CANCELED),
    (S.PENDING_REPLACE, E.EXPIRE, NONE, S.EXPIRED),
    (S.PENDING_REPLACE, E.REQUEST_CANCEL, NONE, S.PENDING_CANCEL),
]
LEGAL = {(status, event) for status, event, _, _ in EDGES}
ILLEGAL = sorted(set(itertools.product(S, E)) - LEGAL, key=lambda pair: (pair[0].value, pair[1].value))
CLOSED = [s for s in S if s.is_closed]


@pytest.mark.parametrize(("status", "event", "filled", "expected"), EDGES,
                         ids=[f"{s.value}-{e.value}-{f}" for s, e, f, _ in EDGES])
def test_next_status_on_legal_edge_yields_expected_status(status, event, filled, expected):
    assert next_status(status, event, filled=filled, quantity=QTY) is expected


def test_transition_table_has_exactly_the_specified_edges():
    assert set(TRANSITIONS) == LEGAL


@pytest.mark.parametrize(("status", "event"), ILLEGAL, ids=[f"{s.value}-{e.value}" for s, e in ILLEGAL])
def test_next_status_on_illegal_edge_raises_invalid_transition_naming_both(status, event):
    with pytest.raises(InvalidTransition) as raised:
        next_status(status, event, filled=NONE, quantity=QTY)
    assert raised.value.status is status and raised.value.event is event
    assert status.value in str(raised.value) and event.value in str(raised.value)


@pytest.mark.parametrize("status", CLOSED, ids=[s.value for s in CLOSED])
def test_closed_status_allows_no_event(status):
    assert not any(allows(status, event) for event in E)
    for event in E:
        with pytest.raises(InvalidTransition):
            next_status(status, event, filled=ALL, quantity=QTY)


def test_closed_statuses_are_filled_canceled_rejected_expired():
    assert set(CLOSED) == {S.FILLED, S.CANCELED, S.REJECTED, S.EXPIRED}


def test_allows_agrees_with_next_status_for_every_pair():
    for status, event in itertools.product(S, E):
        try:
            next_status(status, event, filled=NONE, quantity=QTY)
            raised = False
        except InvalidTransition:
            raised = True
        assert allows(status, event) is not raised, (status, event)
