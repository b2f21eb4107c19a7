"""Hourly counters from the TRIAGED stream: exact after restarts, replays and a second replica, and rebuildable.

Real nats-server. The expected figures are counted here, independently, from the posts the test
published; the reputation service's counters must match them however often the stream is read.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from clamor.v1 import triage_pb2
from services.reputation.consumer import counting_consumer
from services.reputation.counters import CounterStore, TrendsCounter, record_key, stream_last_seq
from services.reputation.domain import hour_start
from services.reputation.records import HOUR_COUNTS_CODEC
from services.shared.jetstream import ensure_streams
from services.shared.pull_consumer import ConsumerSet
from services.shared.status import Counters
from tests.integration.router_harness import complaint, publish_triaged
from tests.support.clock import tracer

if TYPE_CHECKING:
    from nats.aio.client import Client as NatsClient
    from nats.js import JetStreamContext

NOW = datetime(2026, 11, 23, 12, 30, tzinfo=UTC)
WATCHES = ("acme", "globex")
CATEGORIES = ("billing", "delivery", "product quality")
PLATFORMS = ("mastodon", "reddit", "bluesky")


def posts(count: int, *, offset: int = 0) -> list[triage_pb2.TriagedMention]:
    made = []
    for n in range(offset, offset + count):
        verdict = triage_pb2.VERDICT_NOISE if n % 4 == 3 else triage_pb2.VERDICT_COMPLAINT
        triaged = complaint(
            f"{PLATFORMS[n % 3]}:{n}",
            handle=f"user{n % 7}",
            watch=WATCHES[n % 2],
            platform=PLATFORMS[n % 3],
            category=CATEGORIES[n % 3] if verdict == triage_pb2.VERDICT_COMPLAINT else "",
            text=f"the fridge smells of mold again, order {n}" if n % 5 == 0 else f"order {n} is late again",
            verdict=verdict,
        )
        triaged.mention.created_at.FromDatetime(NOW - timedelta(minutes=7 * n % 170))
        made.append(triaged)
    return made


def expected(published: list[triage_pb2.TriagedMention]) -> dict[str, dict[str, Counter[str]]]:
    """Per record key: totals, categories and sources, counted the plain way."""
    out: dict[str, dict[str, Counter[str]]] = {}
    for triaged in published:
        verdict = "complaint" if triaged.result.verdict == triage_pb2.VERDICT_COMPLAINT else "noise"
        at = triaged.mention.created_at.ToDatetime(tzinfo=UTC)
        key = record_key(verdict, triaged.mention.watch, at)
        counts = out.setdefault(key, {"total": Counter(), "categories": Counter(), "sources": Counter()})
        counts["total"]["n"] += 1
        counts["categories"][triaged.result.category or "uncategorised"] += 1
        counts["sources"][triaged.mention.platform] += 1
    return out


async def stored(js: JetStreamContext, keys: list[str]) -> dict[str, dict[str, Counter[str]]]:
    kv = await js.key_value("router_counters")
    out: dict[str, dict[str, Counter[str]]] = {}
    for key in keys:
        record = HOUR_COUNTS_CODEC.decode((await kv.get(key)).value or b"")
        out[key] = {
            "total": Counter({"n": record.total}),
            "categories": Counter(record.categories),
            "sources": Counter(record.sources),
        }
    return out


async def counted_to_the_end(js: JetStreamContext, store: CounterStore, consumers: ConsumerSet) -> None:
    """Poll until the cursor reaches the stream's last post, then until nothing is left unacknowledged.

    ``settle`` alone may return while a batch handed back for order waits for its redelivery.
    """
    last = await stream_last_seq(js)
    for _ in range(6000):
        if await store.cursor() >= last:
            break
        await asyncio.sleep(0.01)
    assert await store.cursor() >= last, f"counted to {await store.cursor()} of {last}"
    await consumers.settle()


async def counter(js: JetStreamContext) -> TrendsCounter:
    store = await CounterStore.open(js, replicas=1, history_days=90)
    return TrendsCounter(js, store, keywords=["mold"], clock=lambda: NOW)


async def test_counters_match_a_recount_after_a_restart_a_replay_and_a_second_replica(nc: NatsClient) -> None:
    js = nc.jetstream()
    await ensure_streams(js)
    first, second = posts(40), posts(40, offset=40)
    for triaged in first:
        await publish_triaged(js, triaged)
    assert (await (await counter(js)).catch_up()).messages == 40
    # A crash after the records were written but before the cursor moved: the next reader starts over.
    kv = await js.key_value("router_counters")
    await kv.put("cursor", json.dumps({"seq": 0}).encode())
    for triaged in second:
        await publish_triaged(js, triaged)
    # A restarted router and a second replica read the stream at the same time.
    await asyncio.gather((await counter(js)).catch_up(), (await counter(js)).catch_up())
    want = expected(first + second)
    assert await stored(js, sorted(want)) == want
    store = await CounterStore.open(js, replicas=1, history_days=90)
    assert sorted(await store.watches()) == sorted(WATCHES)
    assert await store.cursor() == 80


async def test_a_rebuild_recounts_exactly_and_keywords_are_counted_per_slot(nc: NatsClient) -> None:
    js = nc.jetstream()
    await ensure_streams(js)
    published = posts(30)
    for triaged in published:
        await publish_triaged(js, triaged)
    reader = await counter(js)
    await reader.catch_up()
    rebuilt = await reader.rebuild()
    assert rebuilt.messages == 30
    want = expected(published)
    assert await stored(js, sorted(want)) == want
    hour = hour_start(NOW)
    record = await reader.store.hour("complaint", "acme", hour)
    mold = [
        t
        for t in published
        if "mold" in t.mention.text
        and t.mention.watch == "acme"
        and t.result.verdict == triage_pb2.VERDICT_COMPLAINT
        and hour_start(t.mention.created_at.ToDatetime(tzinfo=UTC)) == hour
    ]
    assert sum(record.keyword_slots.get("mold", [])) == len(mold)
    assert sum(record.slots) == record.total
    assert record.terms.get("order") == record.total


async def test_the_durable_consumer_counts_exactly_beside_a_rebuild_and_a_second_replica(nc: NatsClient) -> None:
    js = nc.jetstream()
    await ensure_streams(js)
    one, two = await counter(js), await counter(js)
    # Two replicas on the one durable, as two reputation processes run it.
    consumers = await ConsumerSet.start(
        js, [counting_consumer(one), counting_consumer(two)], tracer=tracer(), counters=Counters()
    )
    try:
        first, second = posts(40), posts(40, offset=40)
        for triaged in first:
            await publish_triaged(js, triaged)
        await counted_to_the_end(js, one.store, consumers)
        await one.rebuild()
        for triaged in second:
            await publish_triaged(js, triaged)
        await counted_to_the_end(js, one.store, consumers)
    finally:
        await consumers.stop()
    want = expected(first + second)
    assert await stored(js, sorted(want)) == want


async def test_counters_an_earlier_version_stored_as_json_are_read_and_counting_goes_on(nc: NatsClient) -> None:
    js = nc.jetstream()
    await ensure_streams(js)
    first, second = posts(30), posts(30, offset=30)
    for triaged in first:
        await publish_triaged(js, triaged)
    await (await counter(js)).catch_up()
    kv = await js.key_value("router_counters")
    store = await CounterStore.open(js, replicas=1, history_days=90)
    # Every record written back as an earlier version stored it: plain JSON under the same keys.
    for key in await kv.keys():
        if key == "cursor":
            old: dict[str, object] = {"seq": await store.cursor()}
        elif key == "watches":
            old = dict(await store.watches())
        else:
            record = HOUR_COUNTS_CODEC.decode((await kv.get(key)).value or b"")
            old = {name: getattr(record, name) for name in record.__dataclass_fields__}
        await kv.put(key, json.dumps(old).encode())
    assert await store.cursor() == 30
    assert sorted(await store.watches()) == sorted({t.mention.watch for t in first})
    for triaged in second:
        await publish_triaged(js, triaged)
    await (await counter(js)).catch_up()
    want = expected(first + second)
    assert await stored(js, sorted(want)) == want
    assert await store.cursor() == 60
    assert sorted(await store.watches()) == sorted(WATCHES)
