"""Two listener replicas on one NATS and one set of sources: each source polled by one replica at a time.

The feed server counts requests per source and replica (each replica's copy of a source sends its
name in a header), so a poll by the replica that does not hold the lease would show; JetStream drops a
repeated mention id, so a repeat shows in the replicas' ``duplicates`` counters, not in the stream.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from services.listener.config import JsonApiSourceSettings, ReplaySourceSettings
from services.listener.errors import NotHolderError
from services.listener.runner import SourceRunner
from services.shared import subjects
from services.shared.jetstream import ensure_streams
from tests.http_server import LocalHttpServer, serve
from tests.integration.listener_replicas import (
    TTL_S,
    Replica,
    sees_alive,
    settle,
    start_replica,
    stored_mention_ids,
)
from tests.support.clock import ManualClock
from tests.support.eventually import eventually

SOURCES = ("s0", "s1", "s2", "s3")
REPLICA_HEADER = "X-Replica"


@pytest.fixture
async def js(nc: NatsClient) -> JetStreamContext:
    context = nc.jetstream()
    await ensure_streams(context)
    return context


class Feeds:
    """One JSON feed per source at /feeds/<source>; the test adds posts to all of them at once."""

    def __init__(self) -> None:
        self.items: dict[str, list[dict[str, str]]] = {name: [] for name in SOURCES}
        self.failing = False

    def add(self, count: int) -> None:
        for name, items in self.items.items():
            start = len(items)
            items.extend({"id": f"{name}-{n}", "text": f"post {n} of {name}"} for n in range(start, start + count))

    def ids(self) -> set[str]:
        return {f"json:{item['id']}" for items in self.items.values() for item in items}

    async def handle(self, request: web.Request) -> web.Response:
        if self.failing:
            return web.Response(status=500, text="down for maintenance")
        return web.json_response({"items": self.items[request.match_info["source"]]})


@pytest.fixture
async def feeds() -> AsyncIterator[tuple[Feeds, LocalHttpServer]]:
    state = Feeds()
    async with serve({("GET", "/feeds/{source}"): state.handle}) as server:
        yield state, server


def fetches(server: LocalHttpServer, *, start: int) -> Counter[tuple[str, str]]:
    """Requests since the ``start``-th, by (source, replica)."""
    return Counter(
        (request.path.rsplit("/", 1)[-1], request.headers.get(REPLICA_HEADER, ""))
        for request in server.requests[start:]
    )


def feed_sources(server: LocalHttpServer, replica: str) -> list[JsonApiSourceSettings]:
    return [
        JsonApiSourceSettings(
            kind="json",
            name=name,
            url=server.url(f"/feeds/{name}"),
            items_path="items",
            allow_hosts=["127.0.0.1"],
            interval_s=5,
            jitter=0,
            headers={REPLICA_HEADER: replica},
        )
        for name in SOURCES
    ]


async def two_replicas(js: JetStreamContext, server: LocalHttpServer, clock: ManualClock) -> tuple[Replica, Replica]:
    a = await start_replica(js, "a", feed_sources(server, "a"), clock)
    b = await start_replica(js, "b", feed_sources(server, "b"), clock)
    await settle(a, b, clock=clock)
    return a, b


def holder_by_source(*replicas: Replica) -> dict[str, str]:
    return {name: replica.name for replica in replicas for name in replica.held()}


async def leases_moved(server: LocalHttpServer, *replicas: Replica) -> int:
    """Once every running replica polls only what it holds: the count of requests so far, to count from."""
    for replica in replicas:
        if not replica.stopped:
            await replica.polls_only_what_it_holds()
    return len(server.requests)


async def publish_round(js: JetStreamContext, feeds: Feeds, posts: int, *replicas: Replica) -> None:
    """Add ``posts`` to every feed and wake the replicas' loops until every post is on the stream."""
    feeds.add(posts)

    async def all_stored() -> bool:
        for replica in replicas:
            replica.wake()
        return set(await stored_mention_ids(js)) >= feeds.ids()

    await eventually(all_stored, what="every post on the stream", every_s=0.2)


def assert_each_fetch_by_the_holder(server: LocalHttpServer, holders: dict[str, str], *, start: int) -> None:
    polled = fetches(server, start=start)
    assert polled, "no source was polled"
    assert {(source, replica) for source, replica in polled} <= set(holders.items()), polled


async def assert_each_post_once(js: JetStreamContext, feeds: Feeds, *replicas: Replica) -> None:
    ids = await stored_mention_ids(js)
    assert sorted(ids) == sorted(feeds.ids())
    assert sum(replica.count("published") for replica in replicas) == len(ids)
    assert sum(replica.count("duplicates") for replica in replicas) == 0


async def test_two_replicas_split_the_sources_and_each_is_polled_by_its_holder_only(
    js: JetStreamContext, feeds: tuple[Feeds, LocalHttpServer]
) -> None:
    posts, server = feeds
    clock = ManualClock()
    a, b = await two_replicas(js, server, clock)
    try:
        holders = holder_by_source(a, b)
        assert sorted(holders) == list(SOURCES)
        assert (len(a.held()), len(b.held())) == (2, 2)
        # The first replica to tick took every source and handed half over on its next tick.
        mark = await leases_moved(server, a, b)
        await publish_round(js, posts, 3, a, b)
        await publish_round(js, posts, 2, a, b)
        assert_each_fetch_by_the_holder(server, holders, start=mark)

        # Both replicas show who polls each source, the holder and the other alike.
        def shown() -> bool:
            return all({s.name: s.holder for s in r.registry.statuses()} == holders for r in (a, b))

        await eventually(shown, what="each replica shows every source's holder")
        await assert_each_post_once(js, posts, a, b)
        # PollNow on the replica that does not hold the lease is refused, naming the one that does.
        not_held = next(name for name in SOURCES if holders[name] == "a")
        runner = b.registry.get(not_held)
        assert isinstance(runner, SourceRunner)
        with pytest.raises(NotHolderError, match=r"\(a\)"):
            await runner.poll_now()
    finally:
        await a.stop()
        await b.stop()


async def test_a_stopped_replica_hands_its_sources_over_at_once_and_they_resume_from_its_cursor(
    js: JetStreamContext, feeds: tuple[Feeds, LocalHttpServer]
) -> None:
    posts, server = feeds
    clock = ManualClock()
    a, b = await two_replicas(js, server, clock)
    try:
        await publish_round(js, posts, 3, a, b)
        await a.stop()
        # No time passes: a released its leases, so b takes them on its next tick, not a TTL later.
        await sees_alive(b, {"b"}, clock)
        await b.keeper.tick()
        assert b.held() == set(SOURCES)
        mark = await leases_moved(server, b)
        await publish_round(js, posts, 2, b)
        assert_each_fetch_by_the_holder(server, dict.fromkeys(SOURCES, "b"), start=mark)
        # b polled a's former sources from the state a stored: the posts a published are not published again.
        await assert_each_post_once(js, posts, a, b)
    finally:
        await a.stop()
        await b.stop()


async def test_a_replica_that_stops_renewing_stops_polling_and_the_other_takes_over_after_one_ttl(
    js: JetStreamContext, feeds: tuple[Feeds, LocalHttpServer]
) -> None:
    posts, server = feeds
    clock = ManualClock()
    a, b = await two_replicas(js, server, clock)
    try:
        await publish_round(js, posts, 2, a, b)
        # a is cut off from KV (or hangs): its keeper ticks no more, its source loops go on.
        clock.advance(TTL_S - 1)
        await b.keeper.tick()
        assert len(b.held()) == 2, "a's leases are still live"
        clock.advance(1)
        # By its own clock a's leases have lapsed: it polls none of its sources from now on.
        assert a.held() == set()
        await b.keeper.tick()
        assert b.held() == set(SOURCES)
        mark = await leases_moved(server, a, b)
        await publish_round(js, posts, 2, a, b)
        assert_each_fetch_by_the_holder(server, dict.fromkeys(SOURCES, "b"), start=mark)
        # a comes back: its renewals find b's leases, so it has lost them; then the two share again.
        await a.keeper.tick()
        assert a.held() == set()
        await settle(b, a, clock=clock)
        assert (len(a.held()), len(b.held())) == (2, 2)
        mark = await leases_moved(server, a, b)
        await publish_round(js, posts, 1, a, b)
        assert_each_fetch_by_the_holder(server, holder_by_source(a, b), start=mark)
        await assert_each_post_once(js, posts, a, b)
    finally:
        await a.stop()
        await b.stop()


async def test_a_replay_moves_to_the_other_replica_at_the_line_its_holder_stored(
    js: JetStreamContext, tmp_path: Path
) -> None:
    path = tmp_path / "posts.jsonl"
    lines = 200
    path.write_text("".join(json.dumps({"id": f"p{n}", "text": f"post {n}"}) + "\n" for n in range(lines)))
    replay = ReplaySourceSettings(name="sample", path=path, rate_per_second=100)
    clock = ManualClock()
    a = await start_replica(js, "a", [replay], clock)
    b = await start_replica(js, "b", [replay], clock)
    try:
        await a.keeper.tick()
        await b.keeper.tick()
        assert (a.held(), b.held()) == ({"sample"}, set())
        await eventually(lambda: a.count("published") >= 10, what="a replays the first lines")
        await a.stop()
        await sees_alive(b, {"b"}, clock)
        await b.keeper.tick()
        assert b.held() == {"sample"}

        async def all_replayed() -> bool:
            return len(await stored_mention_ids(js)) == lines

        await eventually(all_replayed, what="every line replayed")
        ids = await stored_mention_ids(js)
        assert sorted(ids) == sorted(f"sample:p{n}" for n in range(lines))
        assert 0 < a.count("published") < lines
        assert a.count("published") + b.count("published") == lines
        assert a.count("duplicates") + b.count("duplicates") == 0
    finally:
        await a.stop()
        await b.stop()


async def test_a_source_taken_over_is_reported_silent_only_for_the_time_its_new_holder_polled_it(
    js: JetStreamContext, feeds: tuple[Feeds, LocalHttpServer]
) -> None:
    posts, server = feeds
    clock = ManualClock()
    a = await start_replica(js, "a", feed_sources(server, "a"), clock)
    # b runs beside a for hours without a source: it has not been polling them, so it cannot tell how
    # long they have been silent.
    b = await start_replica(js, "b", feed_sources(server, "b"), clock)
    try:
        await a.keeper.tick()
        assert a.held() == set(SOURCES)
        clock.advance(7 * 3600)
        await a.keeper.tick()
        await publish_round(js, posts, 1, a)
        await a.stop()
        await sees_alive(b, set(), clock)
        # Every feed fails from now on; b takes the sources over and its first polls fail.
        posts.failing = True
        await b.keeper.tick()
        assert b.held() == set(SOURCES)

        async def failed_twice() -> bool:
            b.wake()
            return all(s.consecutive_failures >= 2 for s in b.registry.statuses())

        # A second failure comes after the first poll's health check, whose alert would then be on the stream.
        await eventually(failed_twice, what="every source failed twice on b", every_s=0.2)
        alerts = await js.stream_info(subjects.ALERTS.name)
        assert alerts.state.messages == 0
        assert b.count("source_alerts") == 0
    finally:
        await a.stop()
        await b.stop()
