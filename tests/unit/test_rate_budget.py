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
