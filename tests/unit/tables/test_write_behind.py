"""The write-behind of a batch: one write per key, the `last` keys after the rest, each under its own event."""
from __future__ import annotations

from faust.streams import current_event

from atlas.tables.write_behind import WriteBehind, processing
from tests.unit.agents.oms_harness import MemoryTable


class Event:
    """Stands in for a Faust event (which the table's partition comes from)."""

    def __init__(self, name: str) -> None:
        self.name = name


class RecordingTable(MemoryTable):
    """Notes which event was current at each write."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list = []

    def __setitem__(self, key, value) -> None:
        self.events.append(current_event())
        super().__setitem__(key, value)


def test_a_key_written_twice_is_flushed_once_with_its_last_value_and_the_last_keys_after_the_rest():
    table = RecordingTable()
    pending = WriteBehind(table, last=lambda key: key.startswith("a/"))
    pending.put("a/x", b"1")
    pending.put("o/x/1", b"first")
    pending.put("a/x", b"2")
    pending.put("o/x/1", b"second")
    pending.put("e/x/1/1", {"n": 1}, encode=lambda v: str(v["n"]).encode())

    assert pending.get("o/x/1") == b"second" and "a/x" in pending and pending.get("nothing", 7) == 7
    assert pending.flush() == 3

    assert [key for key, _ in table.writes] == [b"o/x/1", b"e/x/1/1", b"a/x"]
    assert (table.get("a/x"), table.get("o/x/1"), table.get("e/x/1/1")) == (b"2", b"second", b"1")
    assert pending.pending == {}


def test_a_key_put_and_deleted_within_the_batch_never_reaches_the_table():
    table = RecordingTable()
    table["n/x/1"] = b"1"
    table.writes.clear()
    pending = WriteBehind(table, last=lambda key: False)
    pending.put("n/x/2", b"1")
    pending.delete("n/x/2")
    pending.delete("n/x/1")

    assert pending.get("n/x/2") is None
    pending.flush()

    assert table.writes == [(b"n/x/1", 0)] and table.get("n/x/2") is None


def test_each_key_is_written_under_the_event_that_wrote_it():
    table = RecordingTable()
    pending = WriteBehind(table, last=lambda key: False)
    first, second = Event("first"), Event("second")
    with processing(first):
        pending.put("k1", b"1")
    with processing(second):
        pending.put("k2", b"2")
    assert current_event() is None

    pending.flush()

    assert [e.name for e in table.events] == ["first", "second"] and current_event() is None
