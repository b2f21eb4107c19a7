"""Request budgets shared by every source that uses the same credential.

Some platforms limit requests per token, not per query (VK: three a second per token), so two
sources configured with one token must share one budget. Sources are built one by one and know
nothing of each other; this registry hands each the budget of its credential.

The key is a digest of the credential, so the token itself is kept nowhere new. Budgets are per
event loop: a budget holds an asyncio lock, which must not be shared between loops (each test and
each ``clamor sources fetch`` runs its own). The budget is per process: listener replicas poll
different sources, so a token used by sources on several replicas should get a lower rate.
"""

from __future__ import annotations

import asyncio
import hashlib
import weakref

from services.shared.budget import RateBudget

_BUDGETS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, str], RateBudget]] = (
    weakref.WeakKeyDictionary()
)


def credential_budget(platform: str, credential: str, *, rate_per_s: float) -> RateBudget:
    """The budget every source of ``platform`` with this ``credential`` draws from, in the running loop.

    One request at a time: the next waits ``1 / rate_per_s`` after the last one's answer, which keeps
    under a limit counted when requests arrive whatever the network does on the way.
    """
    loop = asyncio.get_running_loop()
    key = (platform, hashlib.sha256(credential.encode()).hexdigest())
    budgets = _BUDGETS.setdefault(loop, {})
    budget = budgets.get(key)
    if budget is None:
        budget = budgets[key] = RateBudget(rate_per_s)
    return budget
