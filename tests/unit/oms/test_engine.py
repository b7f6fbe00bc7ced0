"""Scenarios through the OMS core, one account at a time.

Every step goes through `Book`, which checks `assert_invariants` after it. Defaults: alice
holds 1,000,000 USD and 10 BTC; `submit()` is BTC-USD BUY LIMIT 0.5 @ 64000 (32000 USD).
"""
from __future__ import annotations

from decimal import Decimal

import pytest

from atlas.core.accounts import Directory
from atlas.core.events import ExecType, OrdStatus, VenueReportKind
from atlas.core.values import OrderType, Side, order_id_for
from atlas.oms.engine import (
    MAX_REFUSALS_KEPT, apply_command, apply_venue_report, needs_open_orders, new_account, orders_needed, replay_requests,
)
from atlas.oms.risk import RejectCode
from tests.helpers import (
    ACCOUNTS_FILE, D, T0, Book, account, assert_invariants, cancel, kill_switch, limits, market, replace, set_limits,
    submit, venue_report,
)

USD0, BTC0 = D("1000000"), D("10")


def test_new_account_starts_with_deposits_available_and_nothing_open():
    state = account()
    assert state.balance("USD").available == USD0 and state.balance("USD").reserved == 0
    assert state.deposits["BTC"] == BTC0
    assert state.open_count == 0 and state.net_fills == {}
    assert_invariants(state, {})


def test_new_account_from_the_accounts_file_takes_its_limits_or_the_defaults():
    directory = Directory.load(ACCOUNTS_FILE)
    fallback = limits(max_order_notional="5")
    alice = new_account(directory.get("alice"), fallback)
    assert alice.limits == limits() and alice.balance("SOL").available == D("1000")
    admin = new_account(directory.get("admin"), fallback)
    assert admin.limits == fallback and admin.balances == {}


# -- submit, ack, fills ------------------------------------------------------------------


def test_submit_within_limits_reports_pending_new_requests_venue_and_reserves_quote():
    book = Book()
    cmd = submit()
    outcome = book.command(cmd)
    order_id = order_id_for("alice", cmd.client_order_id)

    (report,) = outcome.reports
    assert (report.exec_type, report.status, report.order_id) == (ExecType.PENDING_NEW, OrdStatus.PENDING_NEW, order_id)
    assert (report.seq, report.cause_id, report.cum_qty, report.leaves_qty) == (1, cmd.command_id, 0, D("0.5"))
    (request,) = outcome.venue
    assert (request.request, request.order_id, request.request_id) == ("new", order_id, report.exec_id)
    assert (request.quantity, request.price, request.side, request.limit_guard) == (
        D("0.5"), D("64000"), Side.BUY, None)
    assert book.balance("USD") == (USD0 - 32000, D("32000"))
    assert book.account.open_count == 1
    assert book.account.open_buys == {"BTC": D("0.5")}
    assert outcome.dead_letter is None


def test_ack_of_pending_new_order_reports_new():
    book = Book()
    order = book.submit()
    outcome = book.venue(order.order_id, "ACCEPTED")
    (report,) = outcome.reports
    assert (report.exec_type, report.status, report.seq) == (ExecType.NEW, OrdStatus.NEW, 2)
    assert outcome.venue == ()
    assert book.balance("USD") == (USD0 - 32000, D("32000"))


def test_partial_fill_pays_at_fill_price_and_releases_price_improvement():
    book = Book()
    order = book.place()
    outcome = book.fill(order.order_id, "0.2", "63900")

    (report,) = outcome.reports
    assert (report.exec_type, report.status) == (ExecType.TRADE, OrdStatus.PARTIALLY_FILLED)
    assert (report.last_qty, report.last_px, report.cum_qty, report.leaves_qty) == (
        D("0.2"), D("63900"), D("0.2"), D("0.3"))
    assert report.avg_px == D("63900")
    # Paid 12780; the rest (0.3) stays held at the limit: 19200; 20 of improvement comes back.
    assert book.balance("USD") == (USD0 - 12780 - 19200, D("19200"))
    assert book.balance("BTC") == (BTC0 + D("0.2"), 0)
    assert book.account.net_fills == {"USD": D("-12780"), "BTC": D("0.2")}
    assert book.account.open_buys == {"BTC": D("0.3")}


def test_fill_of_the_rest_fills_the_order_and_releases_everything():
    book = Book()
    order = book.place()
    book.fill(order.order_id, "0.2", "63900")
    outcome = book.fill(order.order_id, "0.3", "63990")

    (report,) = outcome.reports
    assert (report.status, report.cum_qty, report.leaves_qty) == (OrdStatus.FILLED, D("0.5"), 0)
    assert report.avg_px == D("63954")  # (12780 + 19197) / 0.5
    assert book.balance("USD") == (USD0 - 12780 - 19197, 0)
    assert book.balance("BTC") == (BTC0 + D("0.5"), 0)
    assert book.account.open_count == 0
    assert book.order(order.order_id).reserved == 0


def test_fill_of_an_order_the_venue_never_acknowledged_is_a_dead_letter_and_changes_nothing():
    # Issue 14: the venue acknowledges every order before it fills it; such a fill is not true.
    book = Book()
    order = book.submit()
    balances = dict(book.account.balances)
    outcome = book.fill(order.order_id, "0.1", "64000")
    assert outcome.dead_letter.startswith("UNACKNOWLEDGED_FILL") and outcome.reports == ()
    assert book.order(order.order_id).status is OrdStatus.PENDING_NEW and book.account.balances == balances


def test_fill_of_an_order_canceled_before_the_venue_acknowledged_it_is_a_dead_letter_until_the_ack():
    book = Book()
    order = book.submit()
    book.command(cancel(order.order_id))
    assert book.order(order.order_id).status is OrdStatus.PENDING_CANCEL

    for position in ({"venue_offset": 3, "venue_index": 1}, {}):  # numbered by the venue, or not
        early = book.venue(order.order_id, "FILL", last_qty="0.1", last_px="64000", **position)
        assert early.dead_letter.startswith("UNACKNOWLEDGED_FILL") and early.reports == ()

    book.venue(order.order_id, "ACCEPTED", venue_offset=4, venue_index=1)
    fill = book.venue(order.order_id, "FILL", last_qty="0.1", last_px="64000", venue_offset=4, venue_index=2)
    assert fill.dead_letter is None and book.order(order.order_id).filled_quantity == D("0.1")


def test_sell_fill_moves_base_out_of_reservation_and_credits_quote():
    book = Book()
    order = book.place(side=Side.SELL, quantity="1", price="65000")
    assert book.balance("BTC") == (BTC0 - 1, D("1"))
    assert book.account.open_buys == {}

    book.fill(order.order_id, "0.4", "65100")
    assert book.balance("BTC") == (BTC0 - 1, D("0.6"))
    assert book.balance("USD") == (USD0 + 26040, 0)

    book.fill(order.order_id, "0.6", "65000")
    assert book.balance("BTC") == (BTC0 - 1, 0)
    assert book.balance("USD") == (USD0 + 26040 + 39000, 0)
    assert book.order(order.order_id).status is OrdStatus.FILLED


def test_market_buy_reserves_at_collar_high_and_releases_the_rest_on_fill():
    book = Book()
    (request,) = book.command(submit(type=OrderType.MARKET, quantity="0.5")).venue
    assert (request.type, request.price, request.limit_guard) == (OrderType.MARKET, None, D("71500"))
    order = book.order(request.order_id)
    book.venue(order.order_id, "ACCEPTED")
    assert book.balance("USD") == (USD0 - 35750, D("35750"))
    book.fill(order.order_id, "0.5", "65010")
    assert book.balance("USD") == (USD0 - 32505, 0)


def test_market_buy_filled_beyond_its_guard_pays_the_excess_from_available():
    book = Book()
    order = book.place(type=OrderType.MARKET, quantity="0.5")
    book.fill(order.order_id, "0.5", "72000")
    assert book.balance("USD") == (USD0 - 36000, 0)


def test_submit_failing_a_check_reports_rejected_and_holds_nothing():
    book = Book()
    cmd = submit(price="80000")
    outcome = book.command(cmd)
    (report,) = outcome.reports
    assert (report.exec_type, report.status) == (ExecType.REJECTED, OrdStatus.REJECTED)
    assert report.reason.startswith("PRICE_COLLAR")
    assert outcome.venue == ()
    assert book.account.open_count == 0 and book.balance("USD") == (USD0, 0)


def test_submit_beyond_the_rate_rejects_rate_limit():
    book = Book(account(limits=limits(max_orders_per_second=3)))
    outcomes = [book.command(submit(), ts=T0) for _ in range(4)]
    assert [o.reports[0].exec_type for o in outcomes] == [ExecType.PENDING_NEW] * 3 + [ExecType.REJECTED]
    assert outcomes[-1].reports[0].reason.startswith("RATE_LIMIT")
    assert book.command(submit(), ts=T0 + 334).reports[0].exec_type is ExecType.PENDING_NEW


# -- cancel ------------------------------------------------------------------------------


def test_cancel_of_working_order_reports_pending_cancel_and_requests_venue_cancel():
    book = Book()
    order = book.place()
    cmd = cancel(order.order_id)
    outcome = book.command(cmd)
    (report,) = outcome.reports
    assert (report.exec_type, report.status, report.cause_id) == (
        ExecType.PENDING_CANCEL, OrdStatus.PENDING_CANCEL, cmd.command_id)
    (request,) = outcome.venue
    assert (request.request, request.order_id, request.request_id) == ("cancel", order.order_id, report.exec_id)
    assert book.balance("USD") == (USD0 - 32000, D("32000"))  # held until the venue confirms


def test_canceled_by_venue_releases_the_reservation():
    book = Book()
    order = book.place()
    book.command(cancel(order.order_id))
    outcome = book.venue(order.order_id, "CANCELED")
    assert outcome.reports[0].status is OrdStatus.CANCELED
    assert book.balance("USD") == (USD0, 0)
    assert book.account.open_count == 0 and not any(book.account.open_buys.values())


def test_cancel_of_pending_new_order_is_accepted_and_a_trailing_ack_changes_nothing():
    book = Book()
    order = book.submit()
    book.command(cancel(order.order_id))
    outcome = book.venue(order.order_id, "ACCEPTED")
    assert outcome.reports == () and outcome.dead_letter is None
    assert book.order(order.order_id).status is OrdStatus.PENDING_CANCEL


def test_cancel_when_filled_is_rejected_too_late():
    book = Book()
    order = book.place()
    book.fill(order.order_id, "0.5", "64000")
    outcome = book.command(cancel(order.order_id))
    (report,) = outcome.reports
    assert (report.exec_type, report.status) == (ExecType.CANCEL_REJECTED, OrdStatus.FILLED)
    assert report.reason.startswith(RejectCode.TOO_LATE.value)
    assert outcome.venue == ()


def test_cancel_of_unknown_order_is_rejected_unknown_order():
    book = Book()
    cmd = cancel("O-nope")
    outcome = book.command(cmd)
    (report,) = outcome.reports
    assert (report.exec_type, report.status, report.order_id, report.seq) == (
        ExecType.CANCEL_REJECTED, OrdStatus.REJECTED, "O-nope", 0)
    assert report.reason.startswith(RejectCode.UNKNOWN_ORDER.value)
    assert report.symbol is None and report.cause_id == cmd.command_id
    assert outcome.orders == () and outcome.venue == ()


def test_cancel_when_cancel_pending_is_rejected_already_pending():
    book = Book()
    order = book.place()
    book.command(cancel(order.order_id))
    outcome = book.command(cancel(order.order_id))
    (report,) = outcome.reports
    assert (report.exec_type, report.status) == (ExecType.CANCEL_REJECTED, OrdStatus.PENDING_CANCEL)
    assert report.reason.startswith(RejectCode.ALREADY_PENDING.value)
    assert outcome.venue == ()


def test_cancel_rejected_by_venue_returns_the_order_to_working():
    book = Book()
    order = book.place()
    book.fill(order.order_id, "0.1", "64000")
    book.command(cancel(order.order_id))
    outcome = book.venue(order.order_id, "CANCEL_REJECTED", reason="too late to cancel")
    (report,) = outcome.reports
    assert (report.exec_type, report.status, report.reason) == (
        ExecType.CANCEL_REJECTED, OrdStatus.PARTIALLY_FILLED, "too late to cancel")


def test_retried_cancel_with_same_command_id_changes_nothing_and_resends_its_outputs():
    book = Book()
    order = book.place()
    cmd = cancel(order.order_id)
    first = book.command(cmd)
    before = (book.account, dict(book.orders))
    outcome = book.command(cmd)
    assert outcome.orders == () and outcome.dead_letter is None
    assert (outcome.reports, outcome.venue) == (first.reports, first.venue)
    assert (book.account, book.orders) == before
    assert (first.replayed, outcome.replayed) == (False, True)  # the agent marks its sends possible duplicates


def test_retried_cancel_that_was_rejected_resends_the_same_reject():
    book = Book()
    order = book.place()
    book.fill(order.order_id, "0.5", "64000")
    cmd = cancel(order.order_id)
    first = book.command(cmd)
    again = book.command(cmd)
    assert again.reports == first.reports and again.orders == ()
    assert len(book.executions(order.order_id)) == first.orders[0].exec_seq


# -- fills racing a cancel ---------------------------------------------------------------


def test_fill_racing_a_cancel_counts_and_the_cancel_releases_the_rest():
    book = Book()
    order = book.place()
    book.command(cancel(order.order_id))
    outcome = book.fill(order.order_id, "0.2", "64000")
    assert outcome.reports[0].status is OrdStatus.PENDING_CANCEL
    assert book.balance("USD") == (USD0 - 32000, D("19200"))

    outcome = book.venue(order.order_id, "CANCELED")
    (report,) = outcome.reports
    assert (report.status, report.cum_qty, report.leaves_qty) == (OrdStatus.CANCELED, D("0.2"), 0)
    assert book.balance("USD") == (USD0 - 12800, 0)
    assert book.balance("BTC") == (BTC0 + D("0.2"), 0)


def test_full_fill_racing_a_cancel_fills_the_order_and_the_late_cancel_is_a_dead_letter():
    book = Book()
    order = book.place()
    book.command(cancel(order.order_id))
    assert book.fill(order.order_id, "0.5", "64000").reports[0].status is OrdStatus.FILLED
    before = book.account
    outcome = book.venue(order.order_id, "CANCELED")
    assert outcome.dead_letter.startswith("INVALID_TRANSITION")
    assert outcome.orders == () and outcome.reports == () and book.account is before


# -- replace -----------------------------------------------------------------------------


def test_replace_up_reserves_the_extra_at_request_and_keeps_it_when_replaced():
    book = Book()
    order = book.place()
    cmd = replace(order.order_id, quantity="1")
    outcome = book.command(cmd)
    (report,) = outcome.reports
    assert (report.exec_type, report.status, report.quantity) == (
        ExecType.PENDING_REPLACE, OrdStatus.PENDING_REPLACE, D("0.5"))
    (request,) = outcome.venue
    assert (request.request, request.quantity, request.price, request.request_id) == (
        "replace", D("1"), D("64000"), report.exec_id)
    assert book.balance("USD") == (USD0 - 64000, D("64000"))

    outcome = book.venue(order.order_id, "REPLACED", quantity="1", price="64000")
    (report,) = outcome.reports
    assert (report.exec_type, report.status, report.quantity, report.leaves_qty) == (
        ExecType.REPLACED, OrdStatus.NEW, D("1"), D("1"))
    assert book.balance("USD") == (USD0 - 64000, D("64000"))
    assert book.account.open_buys == {"BTC": D("1")}
    assert book.order(order.order_id).pending_replace is None


def test_replace_down_keeps_the_reservation_until_replaced_then_releases_the_surplus():
    book = Book()
    order = book.place()
    book.command(replace(order.order_id, quantity="0.2", price="63000"))
    assert book.balance("USD") == (USD0 - 32000, D("32000"))

    book.venue(order.order_id, "REPLACED")  # terms taken from the pending request
    replaced = book.order(order.order_id)
    assert (replaced.quantity, replaced.price, replaced.status) == (D("0.2"), D("63000"), OrdStatus.NEW)
    assert book.balance("USD") == (USD0 - 12600, D("12600"))
    assert book.account.open_buys == {"BTC": D("0.2")}


def test_replace_of_sell_price_only_holds_the_same_base():
    book = Book()
    order = book.place(side=Side.SELL, price="66000")
    book.command(replace(order.order_id, price="67000"))
    book.venue(order.order_id, "REPLACED")
    assert book.order(order.order_id).price == D("67000")
    assert book.balance("BTC") == (BTC0 - D("0.5"), D("0.5"))


def test_replace_rejected_by_venue_restores_the_reservation_and_terms():
    book = Book()
    order = book.place()
    book.command(replace(order.order_id, quantity="1", price="64500"))
    assert book.balance("USD") == (USD0 - 64500, D("64500"))

    outcome = book.venue(order.order_id, "REPLACE_REJECTED", reason="no")
    (report,) = outcome.reports
    assert (report.exec_type, report.status, report.quantity, report.price) == (
        ExecType.REPLACE_REJECTED, OrdStatus.NEW, D("0.5"), D("64000"))
    assert book.balance("USD") == (USD0 - 32000, D("32000"))
    assert book.order(order.order_id).pending_replace is None


def test_fill_during_pending_replace_pays_from_the_larger_reservation():
    book = Book()
    order = book.place()
    book.command(replace(order.order_id, quantity="1"))
    book.fill(order.order_id, "0.3", "64000")
    assert book.order(order.order_id).status is OrdStatus.PENDING_REPLACE
    book.venue(order.order_id, "REPLACED")
    assert book.order(order.order_id).status is OrdStatus.PARTIALLY_FILLED
    assert book.balance("USD") == (USD0 - 64000, D("44800"))  # 0.7 left at 64000


@pytest.mark.parametrize(("change", "code"), [
    ({"quantity": "0.00001"}, RejectCode.INVALID_QUANTITY),
    ({"price": "64000.005"}, RejectCode.INVALID_PRICE),
    ({"price": "90000"}, RejectCode.PRICE_COLLAR),
    ({"quantity": "11"}, RejectCode.MAX_ORDER_QUANTITY),
    ({"quantity": "0.1"}, RejectCode.INVALID_QUANTITY),  # not above the 0.2 filled
], ids=["off-lot", "off-tick", "collar", "max-qty", "below-filled"])
def test_replace_with_bad_terms_is_rejected_with_its_code(change, code):
    book = Book()
    order = book.place()
    book.fill(order.order_id, "0.2", "64000")
    outcome = book.command(replace(order.order_id, **change))
    (report,) = outcome.reports
    assert (report.exec_type, report.status) == (ExecType.REPLACE_REJECTED, OrdStatus.PARTIALLY_FILLED)
    assert report.reason.startswith(code.value)
    assert outcome.venue == ()


def test_replace_beyond_available_funds_is_rejected_insufficient_funds():
    book = Book(account(balances={"USD": "40000"}))
    order = book.place()
    outcome = book.command(replace(order.order_id, quantity="0.7"))  # 12800 more, 8000 free
    assert outcome.reports[0].reason.startswith(RejectCode.INSUFFICIENT_FUNDS.value)
    assert book.balance("USD") == (D("8000"), D("32000"))


def test_replace_beyond_max_notional_is_rejected():
    book = Book(account(limits=limits(max_order_notional="50000")))
    order = book.place()
    assert book.command(replace(order.order_id, quantity="1")).reports[0].reason.startswith("MAX_ORDER_NOTIONAL")


def test_replace_of_market_order_is_rejected_invalid_command():
    book = Book()
    order = book.place(type=OrderType.MARKET)
    assert book.command(replace(order.order_id, quantity="1")).reports[0].reason.startswith("INVALID_COMMAND")


def test_replace_of_pending_new_order_is_rejected_until_acknowledged():
    book = Book()
    order = book.submit()
    assert book.command(replace(order.order_id, quantity="1")).reports[0].reason.startswith("ALREADY_PENDING")


def test_replace_of_unknown_order_is_rejected_unknown_order():
    outcome = Book().command(replace("O-nope", quantity="1"))
    (report,) = outcome.reports
    assert report.exec_type is ExecType.REPLACE_REJECTED and report.reason.startswith("UNKNOWN_ORDER")


def test_replace_of_buy_beyond_max_position_is_rejected_position_limit():
    book = Book(account(limits=limits(max_position={"BTC": "11"})))  # holds 10
    order = book.place(quantity="0.5")
    (report,) = book.command(replace(order.order_id, quantity="5")).reports
    assert report.exec_type is ExecType.REPLACE_REJECTED
    assert report.reason.startswith(RejectCode.POSITION_LIMIT.value)


@pytest.mark.parametrize("side, worse, better", [(Side.BUY, "64000.01", "63999.99"), (Side.SELL, "63999.99", "64000.01")])
def test_a_fill_worse_than_the_limit_is_a_dead_letter_and_changes_nothing(side, worse, better):
    # Issue 14: a venue report that cannot be true for its order is refused, not applied.
    book = Book()
    order = book.place(side=side, quantity="0.5", price="64000")
    balances = dict(book.account.balances)
    outcome = book.fill(order.order_id, "0.1", worse)
    assert outcome.dead_letter is not None and "worse than its limit" in outcome.dead_letter
    assert book.order(order.order_id).filled_quantity == 0 and dict(book.account.balances) == balances
    assert book.fill(order.order_id, "0.1", better).dead_letter is None
    assert book.order(order.order_id).filled_quantity == D("0.1")


@pytest.mark.parametrize("refused", ["cancel", "replace"])
def test_refused_cancels_and_replaces_of_a_closed_order_stop_growing_its_history(refused):
    # Issue 14: 1,200 DELETEs of a filled order grew its stored value to 1.24 MB. Now its history keeps
    # the first MAX_REFUSALS_KEPT refusals; later ones are sent (seq 0) and change no stored order.
    book = Book()
    order = book.place(quantity="0.5")
    book.fill(order.order_id, "0.5", "64000")
    seq = book.order(order.order_id).exec_seq
    command = (lambda: cancel(order.order_id)) if refused == "cancel" else (lambda: replace(order.order_id, price="63000"))
    outcomes = [book.command(command()) for _ in range(MAX_REFUSALS_KEPT + 50)]
    assert all(len(o.reports) == 1 and o.reports[0].reason.startswith(RejectCode.TOO_LATE.value) for o in outcomes)
    assert [o.reports[0].seq for o in outcomes] == [seq + n for n in range(1, MAX_REFUSALS_KEPT + 1)] + [0] * 50
    assert all(not o.orders and not o.venue for o in outcomes[MAX_REFUSALS_KEPT:])
    assert book.order(order.order_id).exec_seq == seq + MAX_REFUSALS_KEPT
    assert len(book.executions(order.order_id)) == seq + MAX_REFUSALS_KEPT
    late = outcomes[-1].reports[0]
    assert (late.order_id, late.symbol, late.status, late.cum_qty) == (order.order_id, "BTC-USD", OrdStatus.FILLED, D("0.5"))


def test_refusals_of_an_order_with_a_request_pending_stop_growing_its_history_too():
    # A venue that never answers a cancel: every DELETE after it is refused ALREADY_PENDING.
    book = Book()
    order = book.place(quantity="0.5")
    book.command(cancel(order.order_id))
    seq = book.order(order.order_id).exec_seq
    outcomes = [book.command(cancel(order.order_id)) for _ in range(MAX_REFUSALS_KEPT + 20)]
    assert all(o.reports[0].reason.startswith(RejectCode.ALREADY_PENDING.value) for o in outcomes)
    assert [o.reports[0].seq for o in outcomes][MAX_REFUSALS_KEPT:] == [0] * 20
    assert book.order(order.order_id).exec_seq == seq + MAX_REFUSALS_KEPT


def test_a_refusal_past_the_cap_read_again_is_the_same_report():
    book = Book()
    order = book.place(quantity="0.5")
    book.fill(order.order_id, "0.5", "64000")
    for _ in range(MAX_REFUSALS_KEPT):
        book.command(cancel(order.order_id))
    late = cancel(order.order_id)
    first, again = book.command(late).reports[0], book.command(late).reports[0]
    assert first.seq == 0 and first.exec_id == again.exec_id  # a consumer drops the copy by its id


def test_replaced_below_the_filled_quantity_is_a_dead_letter():
    book = Book(check=False)
    order = book.place(quantity="1")
    book.command(replace(order.order_id, quantity="0.5"))
    book.fill(order.order_id, "0.7", "64000")  # raced the replace
    outcome = book.venue(order.order_id, "REPLACED")
    assert outcome.dead_letter is not None and outcome.dead_letter.startswith("INVALID_REPORT")
    assert_invariants(book.account, book.orders)


# -- venue rejects, duplicates and bad reports -------------------------------------------


def test_venue_rejected_order_releases_its_funds():
    book = Book()
    order = book.submit()
    outcome = book.venue(order.order_id, "REJECTED", reason="no liquidity")
    (report,) = outcome.reports
    assert (report.exec_type, report.status, report.leaves_qty) == (ExecType.REJECTED, OrdStatus.REJECTED, 0)
    assert report.reason == "VENUE_REJECTED: no liquidity"
    assert book.order(order.order_id).reject_reason == "VENUE_REJECTED: no liquidity"
    assert book.balance("USD") == (USD0, 0)
    assert book.account.open_count == 0


def test_venue_expired_order_releases_its_funds():
    book = Book()
    order = book.place(side=Side.SELL, price="66000")
    book.fill(order.order_id, "0.1", "66000")
    assert book.venue(order.order_id, "EXPIRED").reports[0].status is OrdStatus.EXPIRED
    assert book.balance("BTC") == (BTC0 - D("0.1"), 0)


def test_duplicate_submit_with_same_terms_is_a_no_op():
    book = Book()
    book.command(submit(client_order_id="dup-1"))
    before = (book.account, dict(book.orders))
    outcome = book.command(submit(client_order_id="dup-1"))  # another command id, same terms
    assert (outcome.orders, outcome.reports, outcome.venue, outcome.dead_letter) == ((), (), (), None)
    assert (book.account, book.orders) == before


def test_duplicate_submit_with_other_terms_is_a_dead_letter_duplicate_order():
    book = Book()
    book.command(submit(client_order_id="dup-2"))
    before = book.account
    outcome = book.command(submit(client_order_id="dup-2", quantity="0.6"))
    assert outcome.dead_letter.startswith(RejectCode.DUPLICATE_ORDER.value)
    assert outcome.orders == () and outcome.reports == () and book.account == before


def test_resubmit_of_a_risk_rejected_order_is_a_no_op():
    book = Book()
    book.command(submit(client_order_id="dup-3", price="1"))
    assert book.command(submit(client_order_id="dup-3", price="1")).reports == ()


def test_duplicated_venue_report_changes_nothing_and_resends_its_report():
    book = Book()
    order = book.place()
    fill = venue_report(order.order_id, "FILL", last_qty="0.2", last_px="64000")
    first = book.report(fill)
    before = (book.account, dict(book.orders))
    outcome = book.report(fill)
    assert (outcome.orders, outcome.venue, outcome.dead_letter) == ((), (), None)
    assert outcome.reports == first.reports and (first.replayed, outcome.replayed) == (False, True)
    assert (book.account, book.orders) == before


def test_duplicated_ack_changes_nothing():
    book = Book()
    order = book.submit()
    ack = venue_report(order.order_id, "ACCEPTED")
    first = book.report(ack)
    again = book.report(ack)
    assert again.orders == () and again.reports == first.reports
    assert [e.exec_type.value for e in book.executions(order.order_id)] == ["PENDING_NEW", "NEW"]


def test_fill_beyond_leaves_is_a_dead_letter_and_changes_nothing():
    book = Book()
    order = book.place()
    book.fill(order.order_id, "0.3", "64000")
    before = book.account
    outcome = book.fill(order.order_id, "0.3", "64000")
    assert outcome.dead_letter.startswith("INVALID_REPORT")
    assert outcome.orders == () and outcome.reports == () and outcome.account is before


def test_venue_report_for_unknown_order_is_a_dead_letter_unknown_order():
    book = Book()
    outcome = book.venue("O-nope", "FILL", last_qty="1", last_px="64000")
    assert outcome.dead_letter.startswith(RejectCode.UNKNOWN_ORDER.value)
    assert outcome.orders == () and outcome.reports == ()


def test_report_not_allowed_in_status_is_a_dead_letter_invalid_transition():
    book = Book()
    order = book.place()
    outcome = book.venue(order.order_id, "CANCEL_REJECTED")
    assert outcome.dead_letter.startswith("INVALID_TRANSITION")
    assert "REJECT_CANCEL" in outcome.dead_letter and "NEW" in outcome.dead_letter


def test_replaced_without_a_pending_replace_is_a_dead_letter():
    book = Book()
    order = book.place()
    outcome = book.venue(order.order_id, "REPLACED", quantity="1")
    assert outcome.dead_letter is not None
    assert book.order(order.order_id).quantity == D("0.5")


def test_venue_fill_whose_id_matches_a_client_command_id_is_still_applied():
    book = Book()
    order = book.place()
    book.command(cancel(order.order_id, command_id="fill-7"))
    outcome = book.report(venue_report(order.order_id, "FILL", report_id="fill-7", last_qty="0.1", last_px="64000"))
    assert outcome.reports and book.order(order.order_id).filled_quantity == D("0.1")


# -- limits and kill switch --------------------------------------------------------------


def test_set_limits_replaces_the_account_limits():
    book = Book()
    tighter = limits(max_order_notional="1000")
    outcome = book.command(set_limits(tighter))
    assert outcome.account.limits == tighter and outcome.reports == ()
    assert book.command(submit()).reports[0].reason.startswith("MAX_ORDER_NOTIONAL")


def test_kill_switch_engaged_requests_cancel_of_every_open_order():
    book = Book()
    pending = book.submit()
    working = book.place(side=Side.SELL, price="66000")
    filled = book.place()
    book.fill(filled.order_id, "0.5", "64000")

    cmd = kill_switch(True, "ops")
    outcome = book.command(cmd)
    assert book.account.killed and book.account.kill_reason == "ops"
    assert {r.order_id for r in outcome.reports} == {pending.order_id, working.order_id}
    assert all(r.exec_type is ExecType.PENDING_CANCEL and r.cause_id == cmd.command_id for r in outcome.reports)
    assert {(v.request, v.order_id) for v in outcome.venue} == {
        ("cancel", pending.order_id), ("cancel", working.order_id)}
    assert book.order(pending.order_id).status is OrdStatus.PENDING_CANCEL


def test_kill_switch_engaged_rejects_new_orders_until_released():
    book = Book()
    book.command(kill_switch(True, "ops"))
    report = book.command(submit()).reports[0]
    assert report.status is OrdStatus.REJECTED and report.reason.startswith("KILL_SWITCH")
    book.command(kill_switch(False))
    assert book.command(submit()).reports[0].status is OrdStatus.PENDING_NEW


def test_only_engaging_the_kill_switch_reads_every_open_order():
    assert needs_open_orders(kill_switch(True))
    assert not needs_open_orders(kill_switch(False)) and not needs_open_orders(submit())


def test_kill_switch_engaged_requests_cancel_of_order_pending_replace():
    book = Book()
    order = book.place()
    book.command(replace(order.order_id, price="64100"))
    outcome = book.command(kill_switch(True, "ops"))
    assert [(v.request, v.order_id) for v in outcome.venue] == [("cancel", order.order_id)]
    assert book.order(order.order_id).status is OrdStatus.PENDING_CANCEL


@pytest.mark.parametrize("answer", ["REPLACED", "REPLACE_REJECTED"])
def test_kill_switch_during_replace_ends_canceled_with_funds_released(answer):
    book = Book()
    order = book.place(quantity="1", price="64000")
    book.command(replace(order.order_id, quantity="2", price="64000"))
    book.command(kill_switch(True, "ops"))
    book.venue(order.order_id, answer)
    assert book.order(order.order_id).status is OrdStatus.PENDING_CANCEL
    book.venue(order.order_id, "CANCELED")
    assert book.order(order.order_id).status is OrdStatus.CANCELED
    assert book.balance("USD")[1] == 0
    assert book.account.open_count == 0


def test_client_cancel_of_order_pending_replace_is_rejected_already_pending():
    book = Book()
    order = book.place()
    book.command(replace(order.order_id, price="64100"))
    report = book.command(cancel(order.order_id)).reports[0]
    assert report.exec_type is ExecType.CANCEL_REJECTED and report.reason.startswith("ALREADY_PENDING")


# -- determinism and replay --------------------------------------------------------------


def test_same_command_on_same_state_gives_identical_outcome():
    book = Book()
    order = book.place()
    cmd = replace(order.order_id, quantity="0.8", price="64100")
    first = apply_command(book.account, dict(book.orders), cmd, market(), T0 + 5)
    second = apply_command(book.account, dict(book.orders), cmd, market(), T0 + 5)
    assert first == second


def test_same_venue_report_on_same_state_gives_identical_outcome():
    book = Book()
    order = book.place()
    fill = venue_report(order.order_id, "FILL", last_qty="0.2", last_px="63950")
    assert apply_venue_report(book.account, dict(book.orders), fill, market()) == \
        apply_venue_report(book.account, dict(book.orders), fill, market())


def test_replay_requests_of_pending_new_report_rebuilds_the_new_request():
    book = Book()
    outcome = book.command(submit())
    order = book.orders[outcome.reports[0].order_id]
    assert replay_requests(order, outcome.reports[0]) == outcome.venue


def test_replay_requests_of_pending_cancel_report_rebuilds_the_cancel_request():
    book = Book()
    order = book.place()
    outcome = book.command(cancel(order.order_id))
    assert replay_requests(book.order(order.order_id), outcome.reports[0]) == outcome.venue


def test_replay_requests_of_pending_replace_report_rebuilds_it_until_answered():
    book = Book()
    order = book.place()
    outcome = book.command(replace(order.order_id, quantity="0.7"))
    assert replay_requests(book.order(order.order_id), outcome.reports[0]) == outcome.venue
    book.venue(order.order_id, "REPLACED")
    assert replay_requests(book.order(order.order_id), outcome.reports[0]) == ()


def test_a_request_the_venue_has_answered_is_not_sent_again_when_its_command_is_retried():
    book = Book()
    cmd = submit()
    first = book.command(cmd)
    order_id = first.reports[0].order_id
    book.command(cancel_early := cancel(order_id))  # cancelled before the venue's ack: the "new" may not be there
    assert book.command(cmd).venue == first.venue
    book.venue(order_id, "ACCEPTED")
    assert book.command(cmd).venue == ()  # the venue has the order
    assert [r.request for r in book.command(cancel_early).venue] == ["cancel"]  # but not the cancel's answer yet
    book.venue(order_id, "CANCELED")
    assert book.command(cancel_early).venue == book.command(cmd).venue == ()

    second = submit()
    filled = book.command(second).reports[0].order_id
    book.venue(filled, "ACCEPTED")
    book.fill(filled, "0.5", "64000")
    assert book.order(filled).status is OrdStatus.FILLED
    # A retry of its submit long after: its report again, and no request that would trade it twice.
    again = book.command(second)
    assert again.replayed and [r.exec_type for r in again.reports] == [ExecType.PENDING_NEW] and again.venue == ()


def test_replay_requests_of_a_report_without_request_is_empty():
    book = Book()
    order = book.place()
    ack = book.executions(order.order_id)[-1]
    assert ack.exec_type is ExecType.NEW
    assert replay_requests(book.order(order.order_id), ack) == ()


def test_every_report_seq_counts_up_from_one_per_order():
    book = Book()
    order = book.place()
    book.fill(order.order_id, "0.1", "64000")
    book.command(cancel(order.order_id))
    book.venue(order.order_id, "CANCELED")
    executions = book.executions(order.order_id)
    assert [r.seq for r in executions] == [1, 2, 3, 4, 5]
    assert [r.exec_type for r in executions] == [
        ExecType.PENDING_NEW, ExecType.NEW, ExecType.TRADE, ExecType.PENDING_CANCEL, ExecType.CANCELED]
    assert len({r.exec_id for r in executions}) == 5


def test_orders_needed_names_the_order_of_a_submit_cancel_replace_or_report():
    cmd = submit(client_order_id="x1")
    assert orders_needed(cmd) == (order_id_for("alice", "x1"),)
    assert orders_needed(cancel("O1")) == ("O1",)
    assert orders_needed(replace("O2", price="1")) == ("O2",)
    assert orders_needed(venue_report("O3", VenueReportKind.ACCEPTED)) == ("O3",)
    assert orders_needed(set_limits(limits())) == ()


def test_decimal_results_are_exact():
    book = Book()
    order = book.place(symbol="SOL-USD", quantity="3.33", price="150.001")
    book.fill(order.order_id, "1.11", "149.999")
    assert book.balance("USD")[1] == D("2.22") * D("150.001")
    assert isinstance(book.account.net_fills["USD"], Decimal)
    assert book.account.net_fills["USD"] == -D("1.11") * D("149.999")
