"""Readiness and Counters: what health and `clamor status` report."""

from __future__ import annotations

import pytest

from services.shared.status import Counters, Readiness, StatusReporter


class Heard:
    """Records every readiness value a listener is told."""

    def __init__(self) -> None:
        self.values: list[bool] = []

    async def __call__(self, ready: bool) -> None:
        self.values.append(ready)


@pytest.fixture
def heard() -> Heard:
    return Heard()


async def test_readiness_starts_not_ready_until_every_condition_holds() -> None:
    readiness = Readiness("nats", "consumer")
    await readiness.mark("nats", True)
    assert not readiness.ready
    assert readiness.not_ready == ["consumer"]
    await readiness.mark("consumer", True)
    assert readiness.ready
    assert readiness.not_ready == []


def test_readiness_without_conditions_is_ready() -> None:
    assert Readiness().ready


async def test_listener_hears_when_the_last_condition_holds(heard: Heard) -> None:
    readiness = Readiness("nats", "consumer")
    readiness.add_listener(heard)
    await readiness.mark("nats", True)
    assert heard.values == []
    await readiness.mark("consumer", True)
    assert heard.values == [True]


async def test_listener_is_not_called_when_the_total_does_not_change(heard: Heard) -> None:
    readiness = Readiness("nats", "consumer")
    readiness.add_listener(heard)
    await readiness.mark("nats", True)
    await readiness.mark("nats", True)
    await readiness.mark("consumer", False)
    assert heard.values == []


async def test_listener_hears_each_change_of_the_total(heard: Heard) -> None:
    readiness = Readiness("nats")
    readiness.add_listener(heard)
    for ok in (True, True, False, False, True):
        await readiness.mark("nats", ok)
    assert heard.values == [True, False, True]


async def test_every_listener_is_told(heard: Heard) -> None:
    other = Heard()
    readiness = Readiness("nats")
    readiness.add_listener(heard)
    readiness.add_listener(other)
    await readiness.mark("nats", True)
    assert heard.values == other.values == [True]


async def test_mark_all_down_reports_not_ready_once(heard: Heard) -> None:
    readiness = Readiness("nats", "consumer", "model")
    for name in ("nats", "consumer", "model"):
        await readiness.mark(name, True)
    readiness.add_listener(heard)
    await readiness.mark_all_down()
    assert not readiness.ready
    assert readiness.not_ready == ["consumer", "model", "nats"]
    assert heard.values == [False]


async def test_mark_all_down_when_already_down_tells_nobody(heard: Heard) -> None:
    readiness = Readiness("nats", "consumer")
    await readiness.mark("nats", True)
    readiness.add_listener(heard)
    await readiness.mark_all_down()
    assert heard.values == []


async def test_required_condition_must_hold_before_ready() -> None:
    readiness = Readiness("nats")
    await readiness.require("model")
    await readiness.mark("nats", True)
    assert readiness.not_ready == ["model"]


async def test_require_keeps_a_condition_that_already_holds() -> None:
    readiness = Readiness("nats")
    await readiness.mark("nats", True)
    await readiness.require("nats")
    assert readiness.ready


async def test_require_on_a_ready_set_tells_listeners(heard: Heard) -> None:
    readiness = Readiness("nats")
    await readiness.mark("nats", True)
    readiness.add_listener(heard)
    await readiness.require("consumer")
    assert heard.values == [False]


def test_counter_starts_at_zero() -> None:
    assert Counters().get("published") == 0


def test_counter_adds_increments() -> None:
    counters = Counters()
    counters.inc("published")
    counters.inc("published", 4)
    assert counters.get("published") == 5


def test_counter_snapshot_is_sorted_by_name() -> None:
    counters = Counters()
    for name in ("zeta", "alpha", "mid"):
        counters.inc(name)
    assert list(counters.snapshot()) == ["alpha", "mid", "zeta"]


def test_counter_snapshot_is_a_copy() -> None:
    counters = Counters()
    counters.inc("a")
    snapshot = counters.snapshot()
    counters.inc("a")
    assert snapshot == {"a": 1}


async def test_status_reports_readiness_and_counters() -> None:
    readiness = Readiness("nats")
    counters = Counters()
    counters.inc("classified", 3)
    status = StatusReporter("triage", readiness, counters).status()
    assert (status.service, status.ready, list(status.not_ready)) == ("triage", False, ["nats"])
    assert [(c.name, c.value) for c in status.counters] == [("classified", 3)]
    assert status.uptime_seconds >= 0
