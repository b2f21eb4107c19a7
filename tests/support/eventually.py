"""Wait for something that happens in another task, process or server: poll until it holds.

Work crosses real servers and processes in these tests, so "it happened" is observed, not
awaited. The time limit is not a claim about speed: it is generous, so that it fails only a test
that is really stuck, on a busy machine as on a quiet one. Timing claims belong to the manual
clock (``tests/support/clock.py``), not to how long a poll took.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable

# Long enough for a loaded CI machine, short enough that a hung test ends on its own.
GENEROUS_S = 60.0
# Often enough that a test never waits long after the condition holds, rarely enough to stay cheap.
EVERY_S = 0.02

Check = Callable[[], bool | Awaitable[bool]]


async def eventually(check: Check, *, what: str, within_s: float = GENEROUS_S, every_s: float = EVERY_S) -> None:
    """Return once ``check()`` (plain or async) is true; fail the test, naming ``what``, after ``within_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while True:
        result = check()
        if await result if inspect.isawaitable(result) else result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"{what}: not within {within_s:g}s")
        await asyncio.sleep(every_s)
