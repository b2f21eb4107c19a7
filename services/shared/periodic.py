"""Work on an interval until a service stops: the loop behind ``ServiceRuntime.add_periodic``.

It lives apart from the runtime so that harnesses and benches that run a service's parts alone
(no gRPC server, no NATS connection of the runtime's) run the same loop the service does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from services.shared.errors import TransientError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


async def every(interval_s: float, tick: Callable[[], Awaitable[None]], stopping: asyncio.Event, *, name: str) -> None:
    """Run ``tick`` every ``interval_s`` seconds until ``stopping`` is set.

    A :class:`TransientError` is logged and the next tick tries again; any other error propagates,
    so whoever runs the loop (the runtime's worker guard) stops the service and it is restarted.
    """
    while not stopping.is_set():
        try:
            await tick()
        except TransientError as exc:
            log.warning("%s failed, trying again in %.0fs: %s", name, interval_s, exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), timeout=interval_s)
