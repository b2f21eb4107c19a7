"""Rate budgets per channel or destination: a token bucket, and the pause a 429 ``Retry-After`` asks for.

Messages wait for their turn rather than being dropped. The budget is per replica:
with N replicas sharing one Slack channel or CRM, give each ``rate_per_s / N``.
"""

from __future__ import annotations

import asyncio
import time


class RateBudget:
    def __init__(self, rate_per_s: float, *, burst: int = 1) -> None:
        self._rate = rate_per_s
        self._burst = float(burst)
        self._tokens = float(burst)
        self._updated = time.monotonic()
        self._paused_until = 0.0
        self._lock = asyncio.Lock()

    def _refill(self, now: float) -> None:
        self._tokens = min(self._burst, self._tokens + (now - self._updated) * self._rate)
        self._updated = now

    def wait_s(self) -> float:
        """Seconds until a message may go (0 when one may go now)."""
        now = time.monotonic()
        self._refill(now)
        paused = max(0.0, self._paused_until - now)
        short = max(0.0, (1.0 - self._tokens) / self._rate)
        return max(paused, short)

    async def acquire(self) -> None:
        """Wait for a token and take it; callers queue in order."""
        async with self._lock:
            # A 429 may lengthen the pause while we sleep, so the wait is measured again after it.
            wait = self.wait_s()
            while wait > 0:
                await asyncio.sleep(wait)
                wait = self.wait_s()
            self._tokens -= 1.0

    def pause(self, seconds: float) -> None:
        """The service said 429: nothing goes through this channel for ``seconds``."""
        self._paused_until = max(self._paused_until, time.monotonic() + seconds)
