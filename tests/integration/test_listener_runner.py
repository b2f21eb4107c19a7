"""The source loops against a real nats-server and a local API: politeness, watches, own accounts, pause, poll-now."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import nats
import pytest
from aiohttp import web
from nats.js import JetStreamContext
from opentelemetry.sdk.trace import TracerProvider

from clamor.v1 import mention_pb2
from services.listener.clients import AlertPublisher, MentionPublisher, StateStore
from services.listener.config import JsonApiSourceSettings, ReplaySourceSettings
from services.listener.poller import ReplaySource
from services.listener.runner import MAX_BACKOFF_S, SourceRunner, next_poll_delay
from services.listener.sources.base import SourceState
from services.listener.sources.json_api import JsonApiSource
from services.listener.watch import Watch
from services.shared import subjects
from services.shared.jetstream import ensure_streams
from services.shared.nats_server import LocalNatsServer
from services.shared.outbound import OutboundClient, OutboundPolicy
from services.shared.status import Counters
from tests.http_server import LocalHttpServer, serve
from tests.support.clock import ManualClock
from tests.support.eventually import eventually

ITEMS = [
    {"id": "r1", "text": "Voltio charger smells of smoke"},
    {"id": "r2", "text": "Lovely weather today"},
    {"id": "r3", "text": "Voltio app locked me out"},
]


@pytest.fixture
async def js(nats_server: LocalNatsServer) -> AsyncIterator[JetStreamContext]:
    nc = await nats.connect(nats_server.url)
    context = nc.jetstream()
    await ensure_streams(context)
    yield context
    await nc.close()


class Api:
    """A JSON API whose next answer the test decides."""

    def __init__(self) -> None:
        self.status = 200
        self.headers: dict[str, str] = {}
        self.items: list[dict[str, str]] = ITEMS

    async def handle(self, _: web.Request) -> web.Response:
        return web.json_response({"items": self.items}, status=self.status, headers=self.headers)


@pytest.fixture
async def api() -> AsyncIterator[tuple[Api, LocalHttpServer]]:
    state = Api()
    async with serve({("GET", "/reviews"): state.handle}) as server:
        yield state, server


OPEN: list[SourceRunner] = []
# The runners' clock, never turned: a scheduled wait is read against it exactly, not against the wall.
CLOCK = ManualClock()


@pytest.fixture(autouse=True)
async def close_runners() -> AsyncIterator[None]:
    yield
    while OPEN:
        await OPEN.pop().close()


async def make_runner(
    js: JetStreamContext, server: LocalHttpServer, *, watch: Watch | None = None, **settings: Any
) -> SourceRunner:
    config = JsonApiSourceSettings(
        kind="json",
        name="reviews",
        url=server.url("/reviews"),
        items_path="items",
        allow_hosts=["127.0.0.1"],
        interval_s=60,
        jitter=0,
        **settings,
    )
    tracer = TracerProvider().get_tracer("test")
    runner = SourceRunner(
        config,
        JsonApiSource(config),
        http=OutboundClient(OutboundPolicy(("127.0.0.1",)), clock=CLOCK),
        states=await StateStore.open(js, replicas=1),
        publisher=MentionPublisher(js, tracer),
        alerts=AlertPublisher(js, tracer, clock=CLOCK),
        watch=watch,
        tracer=tracer,
        counters=Counters(),
        first_poll_within_s=0,
        clock=CLOCK,
    )
    OPEN.append(runner)
    return runner


async def first_scheduled_wait(runner: SourceRunner) -> float:
    """Let the loop poll once, then read how long it chose to wait."""
    stopping = asyncio.Event()
    task = asyncio.create_task(runner.run(stopping))
    for _ in range(500):
        if runner.status.last_success_at or runner.status.last_error:
            next_at = runner.status.next_poll_at
            if next_at is not None and next_at > CLOCK() + timedelta(seconds=1):
                break
        await asyncio.sleep(0.01)
    stopping.set()
    await task
    assert runner.status.next_poll_at is not None
    return (runner.status.next_poll_at - CLOCK()).total_seconds()


async def stream_count(js: JetStreamContext) -> int:
    return int((await js.stream_info(subjects.MENTIONS.name)).state.messages)


async def published(js: JetStreamContext) -> list[mention_pb2.Mention]:
    """Every mention on the MENTIONS stream, oldest first."""
    found = []
    for seq in range(1, await stream_count(js) + 1):
        raw = await js.get_msg(subjects.MENTIONS.name, seq=seq)
        found.append(mention_pb2.Mention.FromString(raw.data or b""))
    return found


async def test_a_429_with_retry_after_is_waited_out(js: JetStreamContext, api: tuple[Api, LocalHttpServer]) -> None:
    state, server = api
    state.status, state.headers = 429, {"Retry-After": "600"}
    runner = await make_runner(js, server)
    wait = await first_scheduled_wait(runner)
    assert wait == 600
    assert runner.status.consecutive_failures == 1
    assert "HTTP 429" in runner.status.last_error


async def test_a_spent_budget_delays_the_next_poll_past_the_interval(
    js: JetStreamContext, api: tuple[Api, LocalHttpServer]
) -> None:
    state, server = api
    state.headers = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "900"}
    runner = await make_runner(js, server)
    wait = await first_scheduled_wait(runner)
    assert wait == 900
    assert runner.status.published == 3


async def test_only_posts_matching_the_watch_are_published(
    js: JetStreamContext, api: tuple[Api, LocalHttpServer]
) -> None:
    _, server = api
    runner = await make_runner(js, server, watch=Watch(name="voltio", terms=("Voltio",)))
    outcome = await runner.poll_now()
    assert (outcome.fetched, outcome.published) == (3, 2)
    assert runner.status.posts_seen == 3
    assert await stream_count(js) == 2


async def test_an_own_post_is_published_marked_own_even_when_no_term_matches(
    js: JetStreamContext, api: tuple[Api, LocalHttpServer]
) -> None:
    state, server = api
    state.items = [
        {"id": "c1", "author": "leah_g", "text": "Voltio charger smells of smoke"},
        {"id": "b1", "author": "voltiorides", "text": "@leah_g so sorry, a technician is booked for Friday"},
        {"id": "b2", "author": "VoltioRidesFan", "text": "@leah_g same here, so sorry"},
    ]
    watch = Watch(name="voltio", terms=("Voltio",), own_handles=frozenset({"@VoltioRides"}))
    fields = {"id": "id", "text": "text", "author_handle": "author"}
    runner = await make_runner(js, server, watch=watch, fields=fields)
    outcome = await runner.poll_now()
    assert (outcome.fetched, outcome.published) == (3, 2)
    assert {(m.native_id, m.author.handle, m.own_account) for m in await published(js)} == {
        ("c1", "leah_g", False),
        ("b1", "voltiorides", True),
    }


async def test_a_replayed_post_by_an_own_handle_of_its_watch_is_marked_own(
    js: JetStreamContext, tmp_path: Path
) -> None:
    posts = [
        {"id": "p1", "watch": "lumo", "author": {"handle": "kev_oconnor"}, "text": "third day without internet"},
        {"id": "p2", "watch": "lumo", "author": {"handle": "@LumoMobile"}, "text": "Hi Kevin, really sorry, DM us"},
        {"id": "p3", "watch": "other", "author": {"handle": "LumoMobile"}, "text": "not this watch's account"},
        {"id": "p4", "author": {"handle": "LumoMobile"}, "text": "no watch at all"},
    ]
    path = tmp_path / "posts.jsonl"
    path.write_text("".join(json.dumps(post) + "\n" for post in posts), encoding="utf-8")
    tracer = TracerProvider().get_tracer("test")
    replay = ReplaySource(
        ReplaySourceSettings(name="sample", path=path, rate_per_second=1000),
        publisher=MentionPublisher(js, tracer),
        states=await StateStore.open(js, replicas=1),
        tracer=tracer,
        counters=Counters(),
        watches={"lumo": Watch(name="lumo", own_handles=frozenset({"lumomobile"}))},
    )
    await replay.run(asyncio.Event())
    assert replay.status.exhausted
    assert [(m.native_id, m.own_account) for m in await published(js)] == [
        ("p1", False),
        ("p2", True),
        ("p3", False),
        ("p4", False),
    ]


async def test_a_replay_source_reports_the_posts_after_its_cursor_as_remaining(
    js: JetStreamContext, tmp_path: Path
) -> None:
    posts = [{"id": f"r{n}", "author": {"handle": "kev"}, "text": f"still no signal, day {n}"} for n in range(4)]
    path = tmp_path / "posts.jsonl"
    # A blank line is no post: it is skipped, so it is never waiting either.
    path.write_text("".join(json.dumps(post) + "\n\n" for post in posts), encoding="utf-8")
    tracer = TracerProvider().get_tracer("test")
    states = await StateStore.open(js, replicas=1)
    await states.save("sample", SourceState(cursor="2"))  # the first post and its blank line are done
    replay = ReplaySource(
        ReplaySourceSettings(name="sample", path=path, rate_per_second=1000),
        publisher=MentionPublisher(js, tracer),
        states=states,
        tracer=tracer,
        counters=Counters(),
    )
    replay.pause()
    running = asyncio.create_task(replay.run(asyncio.Event()))
    await eventually(lambda: replay.status.remaining == 3, what="three posts after the cursor waiting")
    assert await stream_count(js) == 0
    replay.resume()
    await running
    assert replay.status.exhausted
    assert replay.status.remaining == 0
    assert [m.native_id for m in await published(js)] == ["r1", "r2", "r3"]


async def test_a_second_poll_publishes_nothing_new(js: JetStreamContext, api: tuple[Api, LocalHttpServer]) -> None:
    _, server = api
    runner = await make_runner(js, server)
    await runner.poll_now()
    again = await runner.poll_now()
    assert (again.fetched, again.published) == (0, 0)
    assert await stream_count(js) == 3


async def test_a_paused_source_is_not_polled_on_schedule(
    js: JetStreamContext, api: tuple[Api, LocalHttpServer]
) -> None:
    _, server = api
    runner = await make_runner(js, server)
    runner.pause()
    stopping = asyncio.Event()
    task = asyncio.create_task(runner.run(stopping))
    await asyncio.sleep(0.3)
    stopping.set()
    await task
    assert server.requests == []
    outcome = await runner.poll_now()
    assert outcome.published == 3


async def test_a_poll_now_restarts_the_schedule_without_a_second_request(
    js: JetStreamContext, api: tuple[Api, LocalHttpServer]
) -> None:
    _, server = api
    runner = await make_runner(js, server)
    stopping = asyncio.Event()
    task = asyncio.create_task(runner.run(stopping))
    try:
        await eventually(lambda: len(server.requests) == 1 and runner.status.next_poll_at is not None, what="a poll")
        CLOCK.advance(10)
        await runner.poll_now()
        # The loop wakes and schedules its next poll an interval after the manual one...
        await eventually(
            lambda: runner.status.next_poll_at == CLOCK() + timedelta(seconds=60), what="the schedule restarted"
        )
        # ...having made no request of its own in between.
        assert len(server.requests) == 2
    finally:
        stopping.set()
        await task


def test_the_delay_is_the_interval_with_jitter() -> None:
    delays = [next_poll_delay(100, jitter=0.1, failures=0, asked_s=None, rng=random.Random(n)) for n in range(50)]
    assert all(90 <= d <= 110 for d in delays)
    assert len(set(delays)) > 1


def test_failures_double_the_delay_up_to_the_cap() -> None:
    assert [next_poll_delay(60, jitter=0.1, failures=n, asked_s=None) for n in (1, 2, 3)] == [60, 120, 240]
    assert next_poll_delay(60, jitter=0, failures=30, asked_s=None) == MAX_BACKOFF_S


def test_the_platform_wait_wins_when_longer() -> None:
    assert next_poll_delay(60, jitter=0, failures=0, asked_s=3600) == 3600
    assert next_poll_delay(60, jitter=0, failures=0, asked_s=5) == 60
