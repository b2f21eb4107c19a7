"""The listener's metrics, read back from a real meter provider: polls, errors, posts, rate-limit waits, silence.

The sources run against a real nats-server and a local API, webhook posts arrive over real HTTP, and
time is a manual clock: what the test asserts is what the parts did, counted by the SDK.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Protocol

import aiohttp
import pytest
from aiohttp import web
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from services.listener.clients import AlertPublisher, MentionPublisher, StateStore
from services.listener.config import JsonApiSourceSettings, ReplaySourceSettings, WebhookSourceSettings
from services.listener.poller import ReplaySource
from services.listener.runner import PushedSource, SourceRunner
from services.listener.source_metrics import (
    NEWEST_POST_AGE,
    POLL_ERRORS,
    POLLS,
    POSTS_NEW,
    POSTS_SEEN,
    RATE_LIMIT_WAITS,
)
from services.listener.sources.base import Post
from services.listener.sources.json_api import JsonApiSource
from services.listener.watch import Watch
from services.listener.webhook import SIGNATURE_HEADER, WebhookReceiver
from services.shared.jetstream import ensure_streams
from services.shared.metric_catalogue import ERROR_TYPE, SOURCE, SOURCE_KIND
from services.shared.outbound import OutboundClient, OutboundPolicy
from tests.http_server import LocalHttpServer, serve
from tests.integration.listener_replicas import Replica, sees_alive, settle, start_replica
from tests.support.clock import ManualClock, tracer
from tests.support.eventually import eventually
from tests.support.metrics import RecordedMetrics

REVIEWS = {SOURCE: "reviews"}
ITEMS = [
    {"id": "r1", "text": "Voltio charger smells of smoke"},
    {"id": "r2", "text": "Lovely weather today"},
    {"id": "r3", "text": "Voltio app locked me out"},
]
SECRET = "webhook-secret-for-tests"


@pytest.fixture
async def js(nc: NatsClient) -> JetStreamContext:
    context = nc.jetstream()
    await ensure_streams(context)
    return context


class Api:
    """A JSON API whose next answer the test decides."""

    def __init__(self) -> None:
        self.status = 200
        self.headers: dict[str, str] = {}
        self.items: list[dict[str, str]] = list(ITEMS)

    async def handle(self, _: web.Request) -> web.Response:
        return web.json_response({"items": self.items}, status=self.status, headers=self.headers)


@pytest.fixture
async def api() -> AsyncIterator[tuple[Api, LocalHttpServer]]:
    state = Api()
    async with serve({("GET", "/reviews"): state.handle}) as server:
        yield state, server


class BuildRunner(Protocol):
    async def __call__(self, *, watch: Watch | None = None) -> SourceRunner: ...


@pytest.fixture
def recorded() -> RecordedMetrics:
    return RecordedMetrics()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def make_runner(
    js: JetStreamContext, api: tuple[Api, LocalHttpServer], recorded: RecordedMetrics, clock: ManualClock
) -> AsyncIterator[BuildRunner]:
    """Builds the runner of the ``reviews`` JSON source on the API above, recording to ``recorded``."""
    _, server = api
    opened: list[SourceRunner] = []

    async def build(*, watch: Watch | None = None) -> SourceRunner:
        config = JsonApiSourceSettings(
            kind="json",
            name="reviews",
            url=server.url("/reviews"),
            items_path="items",
            allow_hosts=["127.0.0.1"],
            interval_s=60,
            jitter=0,
        )
        spans = tracer()
        runner = SourceRunner(
            config,
            JsonApiSource(config),
            http=OutboundClient(OutboundPolicy(("127.0.0.1",)), clock=clock),
            states=await StateStore.open(js, replicas=1),
            publisher=MentionPublisher(js, spans),
            alerts=AlertPublisher(js, spans, clock=clock),
            watch=watch,
            tracer=spans,
            counters=recorded.counters,
            first_poll_within_s=0,
            clock=clock,
        )
        opened.append(runner)
        return runner

    yield build
    for runner in opened:
        await runner.close()


async def one_scheduled_poll(runner: SourceRunner, clock: ManualClock) -> float:
    """Let the source's own loop poll once, stop it, and return the wait it chose before the next poll."""
    stopping = asyncio.Event()
    task = asyncio.create_task(runner.run(stopping))

    def scheduled() -> bool:
        # Set before the first poll to "now" (no start-up spread), then after it to now + the wait.
        next_at = runner.status.next_poll_at
        return next_at is not None and next_at > clock() + timedelta(seconds=1)

    try:
        await eventually(scheduled, what="one poll and the next one scheduled")
    finally:
        stopping.set()
        await task
    assert runner.status.next_poll_at is not None
    return (runner.status.next_poll_at - clock()).total_seconds()


def ages(recorded: RecordedMetrics) -> dict[str, float]:
    return {attrs[SOURCE]: point.value for attrs, point in recorded.points(NEWEST_POST_AGE)}


# --- polled sources --------------------------------------------------------------------------


async def test_a_poll_counts_the_posts_it_returned_and_the_new_ones_it_published(
    make_runner: BuildRunner, recorded: RecordedMetrics
) -> None:
    runner = await make_runner(watch=Watch(name="voltio", terms=("Voltio",)))
    outcome = await runner.poll_now()
    assert (outcome.fetched, outcome.published) == (3, 2)
    assert recorded.value(POLLS, {SOURCE: "reviews", SOURCE_KIND: "json"}) == 1
    assert recorded.value(POSTS_SEEN, REVIEWS) == 3
    assert recorded.value(POSTS_NEW, REVIEWS) == 2
    # The next poll finds nothing it has not seen: a poll more, no posts more.
    again = await runner.poll_now()
    assert (again.fetched, again.published) == (0, 0)
    assert recorded.value(POLLS, REVIEWS) == 2
    assert (recorded.value(POSTS_SEEN, REVIEWS), recorded.value(POSTS_NEW, REVIEWS)) == (3, 2)
    assert recorded.series(POLL_ERRORS) == []


async def test_a_failed_poll_is_a_poll_and_an_error_named_by_its_class(
    make_runner: BuildRunner, api: tuple[Api, LocalHttpServer], recorded: RecordedMetrics
) -> None:
    state, _ = api
    runner = await make_runner()
    state.status = 503
    assert (await runner.poll_now()).error
    state.status = 404
    assert (await runner.poll_now()).error
    state.status = 200
    assert not (await runner.poll_now()).error
    assert recorded.value(POLLS, REVIEWS) == 3
    assert recorded.value(POLL_ERRORS, REVIEWS) == 2
    by_class = {attrs[ERROR_TYPE]: point.value for attrs, point in recorded.points(POLL_ERRORS)}
    assert by_class == {"OutboundError": 1, "HttpStatusError": 1}
    # Only the names the catalogue lists, with values from the config and the code, never the URL or the body.
    assert {frozenset(attrs.items()) for attrs in recorded.series(POLL_ERRORS)} == {
        frozenset({SOURCE: "reviews", SOURCE_KIND: "json", ERROR_TYPE: name}.items())
        for name in ("OutboundError", "HttpStatusError")
    }


# (status, headers) the API answers → (seconds until the next poll, rate-limit waits counted).
RateCase = tuple[tuple[int, dict[str, str]], tuple[float, int]]


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(((429, {"Retry-After": "600"}), (600, 1)), id="429-retry-after"),
        pytest.param(((200, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "900"}), (900, 1)), id="budget-spent"),
        pytest.param(((200, {"X-RateLimit-Remaining": "7", "X-RateLimit-Reset": "900"}), (60, 0)), id="budget-left"),
        pytest.param(((503, {}), (60, 0)), id="5xx-without-retry-after"),
    ],
)
async def test_a_poll_that_waits_for_what_the_platform_asked_counts_a_rate_limit_wait(
    make_runner: BuildRunner,
    api: tuple[Api, LocalHttpServer],
    recorded: RecordedMetrics,
    clock: ManualClock,
    case: RateCase,
) -> None:
    state, _ = api
    (state.status, state.headers), (wait_s, waits) = case
    runner = await make_runner()
    assert await one_scheduled_poll(runner, clock) == wait_s
    assert recorded.value(POLLS, REVIEWS) == 1
    assert recorded.value(RATE_LIMIT_WAITS, REVIEWS) == waits


async def test_the_newest_post_age_is_the_silence_since_the_last_new_post(
    make_runner: BuildRunner, api: tuple[Api, LocalHttpServer], recorded: RecordedMetrics, clock: ManualClock
) -> None:
    state, _ = api
    state.items = []
    runner = await make_runner()
    # Nothing published yet: the silence since the source started running here.
    clock.advance(30)
    assert ages(recorded) == {"reviews": 30}
    state.items = list(ITEMS)
    await runner.poll_now()
    assert ages(recorded) == {"reviews": 0}
    clock.advance(90)
    # A poll that brings nothing new does not reset it.
    assert (await runner.poll_now()).published == 0
    clock.advance(10)
    assert ages(recorded) == {"reviews": 100}
    # A paused source is quiet on purpose, and a removed one is gone.
    runner.pause()
    assert ages(recorded) == {}
    runner.resume()
    assert ages(recorded) == {"reviews": 100}
    await runner.close()
    assert ages(recorded) == {}


# --- replicas: each reports the sources whose lease it holds ----------------------------------


@pytest.fixture
async def quiet_feeds() -> AsyncIterator[LocalHttpServer]:
    async def empty(_: web.Request) -> web.Response:
        return web.json_response({"items": []})

    async with serve({("GET", "/feeds/{source}"): empty}) as server:
        yield server


def feed_sources(server: LocalHttpServer) -> list[JsonApiSourceSettings]:
    return [
        JsonApiSourceSettings(
            kind="json",
            name=name,
            url=server.url(f"/feeds/{name}"),
            items_path="items",
            allow_hosts=["127.0.0.1"],
            interval_s=5,
            jitter=0,
        )
        for name in ("s0", "s1", "s2", "s3")
    ]


async def test_each_replica_reports_the_silence_of_the_sources_it_holds_only(
    js: JetStreamContext, quiet_feeds: LocalHttpServer, clock: ManualClock
) -> None:
    recorded = {name: RecordedMetrics() for name in ("a", "b")}
    replicas: list[Replica] = []
    try:
        for name in ("a", "b"):
            replicas.append(
                await start_replica(js, name, feed_sources(quiet_feeds), clock, counters=recorded[name].counters)
            )
        a, b = replicas
        await settle(a, b, clock=clock)
        assert (len(a.held()), len(b.held())) == (2, 2)
        for replica in replicas:
            await replica.polls_only_what_it_holds()
        assert set(ages(recorded["a"])) == a.held()
        assert set(ages(recorded["b"])) == b.held()
        # a stops and hands its leases over: b reports every source, a none.
        await a.stop()
        await sees_alive(b, {"b"}, clock)
        await b.keeper.tick()
        assert b.held() == {"s0", "s1", "s2", "s3"}
        assert set(ages(recorded["b"])) == b.held()
        assert ages(recorded["a"]) == {}
    finally:
        for replica in replicas:
            await replica.stop()


# --- replayed and pushed sources -------------------------------------------------------------


async def test_a_replayed_file_counts_its_posts_seen_and_new(
    js: JetStreamContext, tmp_path: Path, recorded: RecordedMetrics, clock: ManualClock
) -> None:
    lines = [json.dumps({"id": f"p{n}", "text": f"still no signal, day {n}"}) for n in range(3)]
    path = tmp_path / "posts.jsonl"
    # The same post twice: seen twice, new once (JetStream drops the repeated id).
    path.write_text("\n".join([*lines, lines[0], "not json"]) + "\n", encoding="utf-8")
    spans = tracer()
    replay = ReplaySource(
        ReplaySourceSettings(name="sample", path=path, rate_per_second=1000),
        publisher=MentionPublisher(js, spans),
        states=await StateStore.open(js, replicas=1),
        tracer=spans,
        counters=recorded.counters,
        clock=clock,
    )
    clock.advance(5)
    assert ages(recorded) == {"sample": 5}
    await replay.run(asyncio.Event())
    assert replay.status.exhausted
    sample = {SOURCE: "sample"}
    assert (recorded.value(POSTS_SEEN, sample), recorded.value(POSTS_NEW, sample)) == (4, 3)
    assert recorded.series(POLLS) == []
    # Done with its file: a finished replay is not a silent source.
    assert ages(recorded) == {}


async def test_pushed_posts_count_as_seen_and_new_per_source(
    js: JetStreamContext, recorded: RecordedMetrics, clock: ManualClock
) -> None:
    settings = WebhookSourceSettings(name="support", kind="webhook", platform="helpdesk", secrets=[SECRET])
    spans = tracer()
    source = PushedSource(
        settings,
        publisher=MentionPublisher(js, spans),
        watch=None,
        tracer=spans,
        counters=recorded.counters,
        clock=clock,
    )

    async def on_posts(_: WebhookSourceSettings, posts: list[Post]) -> None:
        await source.accept(posts)

    receiver = WebhookReceiver([settings], on_posts, clock=clock)
    port = await receiver.start("127.0.0.1", 0)

    async def push(*ids: str) -> int:
        body = json.dumps({"posts": [{"id": i, "text": f"order {i} never came"} for i in ids]}).encode()
        digest = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: f"sha256={digest}"}
        async with session.post(f"http://127.0.0.1:{port}/hooks/support", data=body, headers=headers) as answer:
            return answer.status

    try:
        async with aiohttp.ClientSession() as session:
            clock.advance(20)
            assert ages(recorded) == {"support": 20}
            assert await push("t1", "t2") == 202
            clock.advance(7)
            # The sender retries one post: seen again, not new again.
            assert await push("t2", "t3") == 202
            clock.advance(3)
    finally:
        await receiver.stop()
    support = {SOURCE: "support"}
    assert (recorded.value(POSTS_SEEN, support), recorded.value(POSTS_NEW, support)) == (4, 3)
    assert ages(recorded) == {"support": 3}
    assert recorded.series(POLLS) == []
