"""The reputation service's alert metric, read back from a real meter provider.

Real nats-server, the reputation service's real parts beside a real router
(tests/integration/reputation_harness.py), and a second replica's watch over the same KV: three
quiet days give the baseline, then a wave of "tastes odd" posts raises one alert on the watch and
one on the keyword, which grow and then resolve. Each is counted once, across both replicas.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import TYPE_CHECKING

from services.reputation.app import assemble
from services.shared.metric_catalogue import TOPIC_KIND
from tests.integration.reputation_harness import reputation_settings, running_reputation
from tests.integration.test_reputation_alerts import post, published_alerts
from tests.support.clock import T0, ManualClock, tracer
from tests.support.metrics import RecordedMetrics

if TYPE_CHECKING:
    from pathlib import Path

    from nats.aio.client import Client as NatsClient

ALERTS = "clamor.reputation.alerts"


def raised(*replicas: RecordedMetrics) -> dict[str, float]:
    """Alerts raised by topic kind, summed over the replicas (as a query over every instance would)."""
    found: dict[str, float] = {}
    for recorded in replicas:
        for attrs in recorded.series(ALERTS):
            found[attrs[TOPIC_KIND]] = found.get(attrs[TOPIC_KIND], 0) + recorded.value(ALERTS, attrs)
    return found


async def test_a_surge_counts_one_alert_per_topic_across_replicas_as_it_grows_and_resolves(
    nc: NatsClient, tmp_path: Path
) -> None:
    js = nc.jetstream()
    clock = ManualClock(T0 + timedelta(days=3))
    settings = reputation_settings({"keywords": {"keywords": ["odd"]}})
    first, second = RecordedMetrics(), RecordedMetrics()
    n = 0
    async with running_reputation(js, settings, tmp_path, clock=clock, counters=first.counters) as running:
        other = await assemble(js, settings, tracer=tracer(), counters=second.counters, clock=clock)
        try:

            async def both_replicas_watch() -> None:
                await running.settle()
                await asyncio.gather(running.reputation.watch.tick(clock()), other.watch.tick(clock()))

            for day in (1, 2, 3):
                for minute in (5, 35, 65, 95):
                    n += 1
                    await post(js, n, minutes_ago=day * 1440 + minute, clock=clock, text=f"charged twice, order {n}")
            await both_replicas_watch()
            assert raised(first, second) == {}
            for k in range(14):
                n += 1
                text = f"the new recipe tastes odd, batch {k}"
                await post(js, n, minutes_ago=48 - 3.5 * k, clock=clock, category="product quality", text=text)
            await both_replicas_watch()
            assert raised(first, second) == {"watch": 1, "keyword": 1}
            # It grows (a new revision of each alert), then quiets down until both resolve.
            clock.advance(600)
            for k in range(10):
                n += 1
                await post(js, n, minutes_ago=9 - k * 0.5, clock=clock, category="product quality", text="tastes odd")
            await both_replicas_watch()
            for _ in range(12):
                clock.advance(600)
                await both_replicas_watch()
        finally:
            await other.close()
        on_stream = await published_alerts(js)

    assert {(a.topic, a.revision) for a in on_stream} >= {("acme", 1), ("acme", 2), ("acme", 3), ("odd", 1)}
    assert len({a.id for a in on_stream}) == 2
    assert raised(first, second) == {"watch": 1, "keyword": 1}
