"""Rate budgets per channel or destination: a token bucket, and the pause a 429 ``Retry-After`` asks for.

Messages wait for their turn rather than being dropped. The budget is per replica:
with N replicas sharing one Slack channel or CRM, give each ``rate_per_s / N``.

A service counts a request when it arrives, which is some time after we took its token: one that
spent longer on its way than the next would reach the service less than ``1 / rate_per_s`` before
it. A sender that calls :meth:`RateBudget.answered` when the reply comes closes that gap: the time
the request was in flight earns no tokens, so the next request starts ``1 / rate_per_s`` after the
reply at the earliest, and so arrives at least that long after this one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class RateBudget:
    def __init__(self, rate_per_s: float, *, burst: int = 1, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._rate = rate_per_s
        self._burst = float(burst)
        self._monotonic = monotonic
        self._tokens = float(burst)
        self._updated = monotonic()
        # The level the last acquire left: what :meth:`answered` brings the bucket back to.
        self._after_take = self._tokens
        self._paused_until = 0.0
        self._lock = asyncio.Lock()

    def _refill(self, now: float) -> None:
        self._tokens = min(self._burst, self._tokens + (now - self._updated) * self._rate)
        self._updated = now

    def wait_s(self) -> float:
        """Seconds until a message may go (0 when one may go now)."""
        now = self._monotonic()
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
            self._after_take = self._tokens

    def answered(self) -> None:
        """The request the last token paid for was answered (or failed): refill from now, not from the take.

        The service may have counted the request at any moment up to now, so the time it was in flight
        must not count towards the next one.
        """
        self._refill(self._monotonic())
        self._tokens = min(self._tokens, self._after_take)

    def pause(self, seconds: float) -> None:
        """The service said 429: nothing goes through this channel for ``seconds``."""
        self._paused_until = max(self._paused_until, self._monotonic() + seconds)
