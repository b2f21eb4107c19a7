"""Channel rate budgets: a burst goes at once, then one message per 1/rate, and a 429 pauses the channel."""

from __future__ import annotations

import asyncio

from services.shared.budget import RateBudget


def test_a_fresh_budget_may_send_now() -> None:
    assert RateBudget(1.0).wait_s() == 0.0


async def test_a_burst_of_tokens_is_available_at_once() -> None:
    budget = RateBudget(1.0, burst=3)
    waits = []
    for _ in range(3):
        waits.append(budget.wait_s())
        await budget.acquire()
    assert waits == [0.0, 0.0, 0.0]


async def test_after_the_burst_the_next_message_waits_about_one_over_the_rate() -> None:
    budget = RateBudget(1.0, burst=2)
    await budget.acquire()
    await budget.acquire()
    assert 0.9 < budget.wait_s() <= 1.0


async def test_the_budget_refills_at_its_rate() -> None:
    budget = RateBudget(1000.0)
    await budget.acquire()
    await asyncio.sleep(0.005)
    assert budget.wait_s() == 0.0


async def test_a_refill_never_exceeds_the_burst() -> None:
    budget = RateBudget(50.0, burst=2)
    await asyncio.sleep(0.1)  # five messages' worth of time
    await budget.acquire()
    await budget.acquire()
    assert budget.wait_s() > 0.0


def test_pause_makes_the_channel_wait_at_least_the_pause() -> None:
    budget = RateBudget(1000.0, burst=5)
    budget.pause(2.0)
    assert 1.9 < budget.wait_s() <= 2.0


def test_a_shorter_pause_does_not_cut_a_longer_one() -> None:
    budget = RateBudget(1000.0)
    budget.pause(5.0)
    budget.pause(1.0)
    assert budget.wait_s() > 4.9


def test_a_pause_outlasts_the_token_wait() -> None:
    budget = RateBudget(0.1)
    budget.pause(30.0)
    assert budget.wait_s() > 29.9


class Ticks:
    """A monotonic clock the test sets."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_time_in_flight_earns_nothing_so_the_next_send_waits_one_over_the_rate_from_the_answer() -> None:
    ticks = Ticks()
    budget = RateBudget(1.0, monotonic=ticks)
    await budget.acquire()
    ticks.now = 0.6  # the request was slow on its way: the service may count it only now
    budget.answered()
    ticks.now = 1.0
    assert budget.wait_s() == 0.6
    ticks.now = 1.6
    assert budget.wait_s() == 0.0


async def test_an_answer_keeps_the_tokens_a_burst_still_has() -> None:
    ticks = Ticks()
    budget = RateBudget(1.0, burst=3, monotonic=ticks)
    await budget.acquire()
    ticks.now = 5.0
    budget.answered()
    assert budget.wait_s() == 0.0
