"""The executions feed's fan-out: every subscriber gets its account's records from the instant it joined, once."""
from __future__ import annotations

from typing import NamedTuple

from atlas.web.stream import MAX_BACKLOG, FanOut, Overflow


class Record(NamedTuple):
    offset: int
    key: bytes
    value: bytes = b"{}"
    headers: tuple = ()


def drain(queue) -> list:
    items = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items


def test_a_subscriber_gets_every_record_of_its_key_from_live_from_on_and_nothing_before():
    fan = FanOut()
    fan.positions[3] = 10
    fan.deliver(3, [Record(10, b"alice"), Record(11, b"bob")])
    queue, live_from = fan.subscribe(3, b"alice")
    assert live_from == 12  # what came before was delivered already: the subscriber reads it itself
    fan.deliver(3, [Record(12, b"alice"), Record(13, b"bob"), Record(14, b"alice")])
    fan.deliver(4, [Record(15, b"alice")])  # another partition
    assert [r.offset for r in drain(queue)] == [12, 14]


def test_a_subscriber_before_any_record_starts_at_the_feeds_starting_position():
    fan = FanOut()
    fan.positions[0] = 42
    _, live_from = fan.subscribe(0, b"alice")
    assert live_from == 42


def test_two_subscribers_of_one_account_both_get_each_record_and_a_leaver_gets_no_more():
    fan = FanOut()
    fan.positions[1] = 0
    first, _ = fan.subscribe(1, b"alice")
    second, _ = fan.subscribe(1, b"alice")
    fan.deliver(1, [Record(0, b"alice")])
    fan.unsubscribe(1, b"alice", first)
    fan.deliver(1, [Record(1, b"alice")])
    assert ([r.offset for r in drain(first)], [r.offset for r in drain(second)]) == ([0], [0, 1])


def test_a_subscriber_too_far_behind_is_dropped_with_an_overflow_marker_and_no_record_lost_silently():
    fan = FanOut()
    fan.positions[2] = 0
    queue, _ = fan.subscribe(2, b"alice")
    fan.deliver(2, [Record(n, b"alice") for n in range(MAX_BACKLOG + 5)])
    items = drain(queue)
    assert len(items) == MAX_BACKLOG + 1 and items[-1] is Overflow
    assert [r.offset for r in items[:-1]] == list(range(MAX_BACKLOG))
    fan.deliver(2, [Record(MAX_BACKLOG + 5, b"alice")])
    assert queue.empty()  # it must subscribe again, with `since`, to read on


def test_records_before_the_position_are_dropped_as_a_stale_fetch_after_the_feed_moved_to_the_end():
    fan = FanOut()
    fan.positions[0] = 100  # the feed just moved to the topic's end
    queue, live_from = fan.subscribe(0, b"alice")
    fan.deliver(0, [Record(50, b"alice"), Record(60, b"bob")])  # wholly stale: the position must not go back
    assert fan.positions[0] == 100
    fan.deliver(0, [Record(98, b"alice"), Record(99, b"alice"), Record(100, b"alice")])
    assert live_from == 100 and [r.offset for r in drain(queue)] == [100]
    assert fan.subscribed()
    fan.unsubscribe(0, b"alice", queue)
    assert not fan.subscribed()


def test_a_pump_that_swallowed_its_cancel_is_cancelled_again_and_the_session_ends():
    import asyncio

    from atlas.web.stream import _stop

    async def swallowing_pump(queue: asyncio.Queue) -> None:
        try:
            await asyncio.sleep(3600)  # a send the cancel lands in, which swallows it (as aiohttp's send_json did)
        except asyncio.CancelledError:
            pass
        await queue.get()  # then waits for a queue nobody fills any more

    async def run() -> list[bool]:
        queue: asyncio.Queue = asyncio.Queue()
        pumps = [asyncio.create_task(swallowing_pump(queue)), asyncio.create_task(queue.get())]
        await asyncio.sleep(0)
        await asyncio.wait_for(_stop(pumps, "trader-01"), timeout=5)
        return [task.done() for task in pumps]

    assert asyncio.run(run()) == [True, True]
