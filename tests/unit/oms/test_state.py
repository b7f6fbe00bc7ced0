"""AccountState.includes: which stored order versions belong to the account's history."""
from __future__ import annotations

from tests.helpers import account


def test_version_written_at_or_before_the_account_seq_in_its_epoch_is_included():
    acct = account().model_copy(update={"seq": 5})
    assert acct.includes(5, 0) and acct.includes(1, 0)


def test_version_beyond_the_account_seq_is_not_included():
    acct = account().model_copy(update={"seq": 5})
    assert not acct.includes(6, 0)


def test_seq_reused_after_a_lost_account_write_is_told_apart_by_its_epoch():
    # An event wrote an order at seq 6 (epoch 0), but its account write was lost: the account
    # stayed at 5. After the restart the worker starts epoch 1 at seq 6 and applies another event.
    acct = account().model_copy(update={"seq": 5}).new_epoch().model_copy(update={"seq": 6})
    assert acct.epoch == 1
    assert not acct.includes(6, 0)
    assert acct.includes(6, 1)
    assert acct.includes(5, 0)


def test_new_epoch_starts_at_the_next_event():
    acct = account().model_copy(update={"seq": 9}).new_epoch()
    assert acct.epochs[-1] == 10 and acct.epoch == len(acct.epochs) - 1
