"""`PipelinedTake` on a faust agent's in-memory test context (no broker): batches are handed
over unacked, the next one fills while the caller works, and nothing beyond `max_unacked`
is taken until the caller acks."""

from __future__ import annotations

import asyncio
from typing import Any

import faust
import pytest

from services.scorer.take import PipelinedTake


def run_agent(max_batch: int, max_unacked: int, script: Any) -> None:
    """Start an agent whose stream goes through a PipelinedTake and run `script(ctx, take, batches)`."""
    app = faust.App("take-test", broker="kafka://127.0.0.1:9", store="memory://", web_enabled=False)
    batches: asyncio.Queue[list[Any]] = asyncio.Queue()
    box: dict[str, PipelinedTake] = {}

    @app.agent()
    async def agent(stream: faust.StreamT) -> None:
        take = PipelinedTake(stream, max_batch=max_batch, within=0.02, max_unacked=max_unacked)
        box["take"] = take
        async for events in take.batches():
            await batches.put(events)

    async def main() -> None:
        async with agent.test_context() as ctx:
            await asyncio.wait_for(script(ctx, box, batches), timeout=20)

    asyncio.run(main())


async def next_values(batches: asyncio.Queue[list[Any]]) -> tuple[list[Any], list[int]]:
    events = await asyncio.wait_for(batches.get(), timeout=5)
    return events, [event.value for event in events]


def test_batches_are_handed_over_unacked_and_held_back_beyond_the_limit() -> None:
    async def script(ctx: Any, box: dict[str, PipelinedTake], batches: asyncio.Queue[list[Any]]) -> None:
        for i in range(5):
            await ctx.put(i, wait=False)
        first, values = await next_values(batches)
        assert values == [0, 1]
        second, values = await next_values(batches)
        assert values == [2, 3]  # taken while the first is still unacked
        take = box["take"]
        await asyncio.sleep(0.2)
        assert take.held == 4 and batches.empty()  # the fifth waits for an ack
        assert not any(event.message.acked for event in [*first, *second])
        await take.ack(first)
        assert all(event.message.acked for event in first)
        _, values = await next_values(batches)
        assert values == [4]  # a partial batch once `within` has passed
        assert take.held == 3

    run_agent(2, 4, script)


def test_batches_are_never_larger_than_max_batch() -> None:
    async def script(ctx: Any, box: dict[str, PipelinedTake], batches: asyncio.Queue[list[Any]]) -> None:
        for i in range(7):
            await ctx.put(i, wait=False)
        sizes = []
        for _ in range(3):
            events, _ = await next_values(batches)
            sizes.append(len(events))
            await box["take"].ack(events)
        assert sizes == [3, 3, 1]

    run_agent(3, 9, script)


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        PipelinedTake(object(), max_batch=4, within=0.1, max_unacked=3)  # type: ignore[arg-type]


def test_a_finished_take_leaves_the_stream_as_it_found_it() -> None:
    """Like faust's `take_events`: once the batch loop ends, the processor is gone and the
    stream's own acks are back, so a restarted agent does not feed a buffer nobody reads."""
    app = faust.App("take-cleanup", broker="kafka://127.0.0.1:9", store="memory://", web_enabled=False)
    seen: dict[str, Any] = {}

    @app.agent()
    async def agent(stream: faust.StreamT) -> None:
        take = PipelinedTake(stream, max_batch=1, within=0.02, max_unacked=2)
        seen["before"] = (stream.enable_acks, len(stream._processors))  # type: ignore[attr-defined]
        batches = take.batches()
        async for events in batches:
            seen["during"] = (stream.enable_acks, len(stream._processors))  # type: ignore[attr-defined]
            await take.ack(events)
            break
        await batches.aclose()
        seen["after"] = (stream.enable_acks, len(stream._processors))  # type: ignore[attr-defined]

    async def main() -> None:
        async with agent.test_context() as ctx:
            await ctx.put(1, wait=False)
            for _ in range(200):
                if "after" in seen:
                    break
                await asyncio.sleep(0.02)

    asyncio.run(main())
    acks, processors = seen["before"]
    assert acks is True
    assert seen["during"] == (False, processors + 1)
    assert seen["after"] == (True, processors)
