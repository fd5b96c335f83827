"""Small asyncio helpers shared by the long-running parts."""

from __future__ import annotations

import asyncio
from typing import Any


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel a background task and wait until it has really finished (its `finally` blocks ran)."""
    if task is None:
        return
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
