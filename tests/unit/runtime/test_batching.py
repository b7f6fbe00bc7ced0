"""`ready_batches`: the first event plus those already delivered, acked only after the batch is processed."""
from __future__ import annotations

import asyncio

from atlas.runtime.batching import ready_batches


class FakeStream:
    """A stream over an asyncio queue, as a Faust agent's stream reads its channel's queue."""

    def __init__(self) -> None:
        self.enable_acks = True
        self.channel = type("Channel", (), {})()
        self.channel.queue = asyncio.Queue()
        self.acked: list[int] = []

    async def events(self):
        while True:
            event = await self.channel.queue.get()
            assert not self.enable_acks, "the stream would ack each event itself"
            yield event

    async def ack(self, event: int) -> None:
        self.acked.append(event)


def test_takes_what_is_waiting_up_to_the_max_and_acks_a_batch_once_it_is_processed():
    async def scenario() -> tuple[list[list[int]], list[list[int]]]:
        stream = FakeStream()
        for n in range(7):
            stream.channel.queue.put_nowait(n)
        batches, acked_when_taken = [], []
        async for batch in ready_batches(stream, 3):
            acked_when_taken.append(list(stream.acked))
            batches.append(batch)
            if len(batches) == 3:
                break
        return batches, acked_when_taken

    batches, acked = asyncio.run(scenario())
    assert batches == [[0, 1, 2], [3, 4, 5], [6]]
    assert acked == [[], [0, 1, 2], [0, 1, 2, 3, 4, 5]]


def test_at_a_trickle_each_event_is_a_batch_of_its_own_without_waiting():
    async def scenario() -> list[list[int]]:
        stream = FakeStream()
        batches = []

        async def trickle() -> None:
            for n in range(3):
                await asyncio.sleep(0.01)
                stream.channel.queue.put_nowait(n)

        feeder = asyncio.create_task(trickle())
        async for batch in ready_batches(stream, 500):
            batches.append(batch)
            if len(batches) == 3:
                break
        await feeder
        return batches

    assert asyncio.run(scenario()) == [[0], [1], [2]]


def test_an_event_the_batch_does_not_keep_is_left_out_and_not_acked():
    async def scenario() -> tuple[list[list[int]], list[int]]:
        stream = FakeStream()
        for n in range(4):
            stream.channel.queue.put_nowait(n)
        batches = []
        async for batch in ready_batches(stream, 10, keep=lambda events: [n for n in events if n % 2 == 0]):
            batches.append(batch)
            stream.channel.queue.put_nowait(4)
            break
        return batches, stream.acked

    batches, acked = asyncio.run(scenario())
    assert batches == [[0, 2]] and acked == []
