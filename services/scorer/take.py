"""Micro-batches from a faust stream that the caller acks itself, so the next batch can be
taken and scored while the previous one is still being stored.

faust's `Stream.take_events` acks a batch in the `finally` after its `yield`, i.e. when the
agent asks for the next batch, and its buffer stops filling while the agent works; so a
worker built on it idles its model between batches (the last slice's store and publish,
the ack and the next fetch, the next batch's parse). `PipelinedTake` buffers through the
same stream processor hook as `take_events`, but hands a batch over without acking it and
keeps filling the buffer while the caller works; the caller acks a batch with `ack` once it
is stored. The consumer commits only the highest contiguous acked offset per partition, so
batches may be acked in any order and an unacked batch holds back every offset after it.

Backpressure: at most `max_unacked` events are held (buffered or handed over and not yet
acked); the stream's processor waits for acks beyond that, which stops consumption just as
a full `take_events` buffer does. A rebalance or a graceful stop waits for every held event
to be acked (`Consumer.wait_empty`), so `max_unacked` also bounds how long that takes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

from faust.types import EventT, StreamT


class PipelinedTake:
    """Batches of up to `max_batch` events, handed over when full or `within` seconds after
    the caller asked for one (whichever is first; an empty wait just waits again)."""

    def __init__(self, stream: StreamT[Any], *, max_batch: int, within: float, max_unacked: int) -> None:
        if max_batch < 1 or max_unacked < max_batch:
            raise ValueError(f"need 1 <= max_batch <= max_unacked, got {max_batch} and {max_unacked}")
        self._stream = stream
        self.max_batch = max_batch
        self.within = within
        self.max_unacked = max_unacked
        self._buffer: list[EventT] = []
        self._held = 0  # buffered + handed over, not yet acked
        self._full = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()

    @property
    def held(self) -> int:
        return self._held

    async def _add(self, value: Any) -> Any:
        """The stream processor: runs for every event the stream reads, before the next."""
        event = self._stream.current_event
        if event is None:
            raise RuntimeError("stream processor called without a current event")
        self._buffer.append(event)
        self._held += 1
        if len(self._buffer) >= self.max_batch:
            self._full.set()
        while self._held >= self.max_unacked and not self._stream.should_stop:
            self._room.clear()
            await self._stream.wait(self._room)  # type: ignore[attr-defined]  # returns on stop too
        return value

    async def batches(self) -> AsyncIterator[list[EventT]]:
        stream: Any = self._stream
        acks_before = stream.enable_acks
        stream.enable_acks = False  # acks are the caller's (`ack`)
        stream.add_processor(self._add)
        try:
            # The same passive drain `take_events` uses: the stream is iterated in the background
            # and every event passes through `_add`.
            stream._enable_passive(aiter(stream.channel))
            while not stream.should_stop:
                await stream.wait_for_stopped(self._full, timeout=self.within)
                if not self._buffer:
                    continue
                batch = self._buffer[: self.max_batch]
                del self._buffer[: self.max_batch]
                if len(self._buffer) < self.max_batch:
                    self._full.clear()
                yield batch
        finally:
            # As `take_events` does: a restarted agent on the same stream must not find this
            # processor still filling a buffer that nobody reads.
            stream.enable_acks = acks_before
            stream._processors.remove(self._add)

    async def ack(self, events: Sequence[EventT]) -> None:
        """Mark `events` done (stored and published): their offsets may now be committed."""
        for event in events:
            await self._stream.ack(event)
        self._held -= len(events)
        if self._held < self.max_unacked:
            self._room.set()
