"""Work done once however many callers ask for it at the same time."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import TypeVar

T = TypeVar("T")


async def single_flight(
    pending: dict[Hashable, asyncio.Task[T]], key: Hashable, work: Callable[[], Awaitable[T]]
) -> T:
    """Run ``work`` for ``key`` unless it is already running; every caller gets its result.

    The work runs in a task of its own: a caller that is cancelled stops waiting, not the
    work, so the other callers still get the result (or its error).
    """
    task = pending.get(key)
    if task is None:

        async def run() -> T:
            return await work()

        task = asyncio.ensure_future(run())
        pending[key] = task
        task.add_done_callback(lambda _: pending.pop(key, None))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
    return await asyncio.shield(task)
