"""Seeing a step through when the agent stops.

The agent stops by cancelling its tasks (agent.py `_cancel`). A step that moves data from
one home to another (samples from memory into the outbox, an ack into the outbox) must
not stop half-way: a bare ``await asyncio.to_thread(...)`` cancelled while its call still
waits for an executor thread (a busy gateway) cancels the call itself, and what the step
had already taken (samples from the pending queue, an ack from the ack queue) is then
lost, or it runs and its bookkeeping after it does not (the next batch then reuses its
sequence number and forks the chain). `through` runs the step to its end and only then
lets the cancellation through.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def through(step: Awaitable[T]) -> T:
    """Await `step` to its end even if the caller is cancelled meanwhile (cancelled again,
    too: `_cancel` repeats itself), then raise the cancellation; otherwise its result."""
    task = asyncio.ensure_future(step)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.cancelled():  # the step itself was cancelled, not its caller
                raise
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    return task.result()
