"""Reputation alerts from the reputation service's real counters: one surge is one alert, updated as it grows,
then resolved.

Real nats-server, the reputation service's real parts and a real router beside it (sample posts link
to the cases the router placed them in). Three days of ordinary complaints give the baseline
(the same hour each day), then a wave of "tastes odd" posts arrives; the test turns a manual clock.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import TYPE_CHECKING

from google.protobuf.json_format import MessageToDict

from clamor.v1 import alert_pb2
from services.reputation.spikes import SpikeState
from services.reputation.watch import open_states
from services.router.domain import case_id_for
from services.shared import subjects
from services.shared.jetstream import ensure_bucket
from services.shared.kv_state import kv_key
from tests.integration.reputation_harness import reputation_settings, running_reputation
from tests.integration.router_harness import complaint, publish_triaged, stream_messages
from tests.support.clock import T0, ManualClock

if TYPE_CHECKING:
    from pathlib import Path

    from nats.aio.client import Client as NatsClient
    from nats.js import JetStreamContext

FIRING = alert_pb2.ALERT_STATUS_FIRING
RESOLVED = alert_pb2.ALERT_STATUS_RESOLVED


async def post(
    js: JetStreamContext,
    n: int,
    *,
    minutes_ago: float,
    clock: ManualClock,
    text: str,
    category: str = "billing",
    followers: int = 200,
    thread_id: str = "",
) -> None:
    triaged = complaint(
        f"mastodon:{n}", handle=f"user{n}", text=text, category=category, followers=followers, thread_id=thread_id
    )
    triaged.mention.created_at.FromDatetime(clock() - timedelta(minutes=minutes_ago))
    await publish_triaged(js, triaged)


async def published_alerts(js: JetStreamContext) -> list[alert_pb2.Alert]:
    return await stream_messages(js, subjects.ALERTS.name, "clamor.alert.reputation", alert_pb2.Alert)


async def test_a_surge_is_one_alert_with_its_context_updated_as_it_grows_then_resolved(
    nc: NatsClient, tmp_path: Path
) -> None:
    js = nc.jetstream()
    clock = ManualClock(T0 + timedelta(days=3))
    settings = reputation_settings({"keywords": {"keywords": ["odd"]}})
    n = 0
    async with running_reputation(js, settings, tmp_path, clock=clock) as running:
        # Three quiet days: two billing complaints an hour around this time of day.
        for day in (1, 2, 3):
            for minute in (5, 35, 65, 95):
                n += 1
                await post(js, n, minutes_ago=day * 1440 + minute, clock=clock, text=f"charged twice again, order {n}")
        await running.settle()
        assert await running.count_and_watch() == []
        # The wave: 14 posts about an odd taste within the window, one from a big account.
        for k in range(14):
            n += 1
            await post(
                js,
                n,
                minutes_ago=48 - 3.5 * k,
                clock=clock,
                category="product quality",
                text=f"the new recipe tastes odd, batch {k}",
                followers=250_000 if k == 3 else 150,
            )
        await running.settle()
        raised = await running.count_and_watch()
        assert raised, "the surge was not alerted"
        watch_alert = next(a for a in raised if a.topic == "acme")
        assert watch_alert.status == FIRING
        assert (watch_alert.revision, watch_alert.count) == (1, 14)
        assert watch_alert.baseline == 2.0
        assert watch_alert.ratio > 4
        assert "recipe" in watch_alert.top_terms
        assert watch_alert.categories[0].name == "product quality"
        assert watch_alert.authors[0].followers == 250_000
        assert watch_alert.samples
        assert set(watch_alert.case_ids) <= {s.case_id for s in watch_alert.samples}
        assert watch_alert.case_ids, "sample posts link to their cases"
        # The keyword has an alert of its own; the category is part of the watch's alert, not a second one.
        assert {a.topic for a in raised} == {"acme", "odd"}
        # Ten minutes later it has grown: the same alert, a new revision.
        clock.advance(600)
        for k in range(10):
            n += 1
            await post(
                js,
                n,
                minutes_ago=9 - k * 0.5,
                clock=clock,
                category="product quality",
                text="tastes odd and smells strange",
            )
        await running.settle()
        grown = [a for a in await running.count_and_watch() if a.topic == "acme"]
        assert [(a.id, a.revision, a.status) for a in grown] == [(watch_alert.id, 2, FIRING)]
        # The window slid on ten minutes: the wave's three oldest posts left it, ten new ones came.
        assert grown[0].count == 14 - 3 + 10
        # Quiet again for long enough: resolved once, and nothing more after that.
        for _ in range(12):
            clock.advance(600)
            await running.count_and_watch()
    on_stream = [a for a in await published_alerts(js) if a.topic == "acme"]
    assert [(a.id, a.revision, a.status) for a in on_stream] == [
        (watch_alert.id, 1, FIRING),
        (watch_alert.id, 2, FIRING),
        (watch_alert.id, 3, RESOLVED),
    ]
    assert len({a.id for a in await published_alerts(js) if a.topic == "acme"}) == 1


async def test_a_sample_post_grouped_into_another_customers_case_links_to_that_case(
    nc: NatsClient, tmp_path: Path
) -> None:
    js = nc.jetstream()
    clock = ManualClock(T0 + timedelta(days=3))
    n = 0
    async with running_reputation(js, reputation_settings({}), tmp_path, clock=clock) as running:
        for day in (1, 2, 3):
            for minute in (5, 35, 65, 95):
                n += 1
                await post(js, n, minutes_ago=day * 1440 + minute, clock=clock, text=f"charged twice again, order {n}")
        # A surge in one thread: each post is another customer's, and the router groups them into the
        # case the thread's first post opened. A grouped post has no case of its own.
        for k in range(14):
            n += 1
            await post(
                js,
                n,
                minutes_ago=48 - 3.5 * k,
                clock=clock,
                text=f"same here, the app lost my booking {k}",
                thread_id="outage-thread",
            )
        raised = await running.count_and_watch()
        watch_alert = next(a for a in raised if a.topic == "acme")
        holders = {c: await running.router.case(c) for c in watch_alert.case_ids}
    grouped = [s for s in watch_alert.samples if s.case_id != case_id_for(s.mention_id)]
    assert grouped, "the alert samples posts grouped into another post's case"
    for sample in watch_alert.samples:
        assert sample.mention_id in [m.mention.id for m in holders[sample.case_id].mentions]


async def test_steady_complaints_raise_no_alert(nc: NatsClient, tmp_path: Path) -> None:
    js = nc.jetstream()
    clock = ManualClock(T0 + timedelta(days=3))
    settings = reputation_settings({})
    async with running_reputation(js, settings, tmp_path, clock=clock) as running:
        n = 0
        for day in (0, 1, 2, 3):
            for minute in range(0, 120, 10):
                n += 1
                await post(js, n, minutes_ago=day * 1440 + minute, clock=clock, text=f"late again {n}")
        await running.settle()
        assert await running.count_and_watch() == []
    assert await published_alerts(js) == []


async def test_alerts_and_spike_states_an_earlier_version_stored_as_json_are_read(nc: NatsClient) -> None:
    js = nc.jetstream()
    alert = alert_pb2.Alert(id="acme:4100000", topic="acme", status=FIRING, revision=2, count=40, watch="acme")
    alert.raised_at.FromDatetime(T0)
    alerts_kv = await ensure_bucket(js, subjects.REPUTATION_ALERTS_BUCKET, ttl_s=90 * subjects.DAY_S)
    spikes_kv = await ensure_bucket(js, subjects.REPUTATION_SPIKES_BUCKET)
    # As earlier versions stored them: the alert's JSON mapping, the state's dataclass fields.
    await alerts_kv.put(kv_key(alert.id), json.dumps(MessageToDict(alert, preserving_proto_field_name=True)).encode())
    old_state = {"status": "firing", "alert_id": alert.id, "revision": 2, "started_slot": 4_100_000, "peak": 40}
    await spikes_kv.put(kv_key("acme"), json.dumps({**old_state, "below_since_slot": None}).encode())
    spikes, alerts = await open_states(js, replicas=1)
    try:
        assert alerts.records() == [alert]
        assert spikes.peek("acme") == SpikeState(
            status="firing", alert_id=alert.id, revision=2, started_slot=4_100_000, peak=40
        )
        # The next change writes the record in binary.
        await alerts.change(alert.id, lambda found: None if found is None else alert_pb2.Alert(id=alert.id, revision=3))
        assert not ((await alerts_kv.get(kv_key(alert.id))).value or b"").startswith(b"{")
    finally:
        await spikes.close()
        await alerts.close()
