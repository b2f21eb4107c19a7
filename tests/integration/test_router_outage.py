"""A CRM outage end to end: nothing lost, retries on schedule and within budget, dead letters and their replay.

Real nats-server, the router's real durables and delivery worker (``running_router``), and local
CRMs from tests/integration/crm_servers.py: a Zendesk that notes when each request arrived
(tests/integration/crm_outage.py) and whose port can close and reopen, and a webhook receiver.
"""

from __future__ import annotations

import asyncio
import base64
import time
from typing import TYPE_CHECKING, Any

from clamor.v1 import case_pb2
from services.router.delivery.worker import TicketRecord
from services.router.domain import case_id_for
from services.shared import subjects
from services.shared.standard_webhooks import new_secret
from tests.integration.crm_outage import TimedZendesk, busiest_second, crm_server, early_retries
from tests.integration.crm_servers import HOOK_PATH, FakeWebhookReceiver, serve_crm
from tests.integration.router_harness import complaint, publish_triaged, router_settings, running_router
from tests.support.eventually import eventually

if TYPE_CHECKING:
    from pathlib import Path

    from nats.aio.client import Client as NatsClient

    from services.router.config import RouterSettings
    from tests.integration.router_harness import RunningRouter

RATE_PER_S = 5.0
BURST = 1
FIRST_RETRY_S = 0.2
MAX_RETRY_S = 2.0
RETRY_AFTER_S = 2
# The delivery consumer never naks sooner than this, whatever the backoff says.
NAK_FLOOR_S = subjects.ROUTER_DELIVERY_CONSUMER.nak_delays_s[0]


def settings_for(destination: dict[str, Any], tmp_path: Path, **delivery: float) -> RouterSettings:
    return router_settings(
        {
            "outbox": {"path": "outbox.jsonl"},
            "destinations": [destination],
            "default_destinations": [destination["name"]],
            "delivery": {"first_retry_s": FIRST_RETRY_S, "max_retry_s": MAX_RETRY_S} | delivery,
        },
        tmp_path,
    )


def zendesk(fake: TimedZendesk, **overrides: Any) -> dict[str, Any]:
    return {
        "kind": "zendesk",
        "name": "zendesk",
        "base_url": fake.base_url,
        "email": fake.email,
        "api_token": fake.api_token,
        "allow_hosts": ["127.0.0.1"],
        "rate_per_s": RATE_PER_S,
        "burst": BURST,
    } | overrides


def expiring(fake: TimedZendesk, tmp_path: Path) -> RouterSettings:
    """Zendesk with a 3s retry period; backoff steps of 1-2s then 2-4s put the second attempt past it."""
    return settings_for(zendesk(fake, retry_for_s=3), tmp_path, first_retry_s=2, max_retry_s=4)


async def dead_count(running: RunningRouter, count: int) -> bool:
    return len(await running.router.dead_letters.list()) == count


async def publish_complaints(nc: NatsClient, count: int, prefix: str) -> list[str]:
    """One complaint from each of ``count`` customers; returns their case ids, sorted."""
    for n in range(count):
        await publish_triaged(nc.jetstream(), complaint(f"mastodon:{prefix}{n}", handle=f"{prefix}{n}"))
    return sorted(case_id_for(f"mastodon:{prefix}{n}") for n in range(count))


async def test_an_outage_loses_nothing_and_retries_on_schedule_within_budget(nc: NatsClient, tmp_path: Path) -> None:
    fake = TimedZendesk(down=True)
    fake.fail_next(3, 503, headers={"Retry-After": str(RETRY_AFTER_S)})
    async with (
        crm_server(fake) as server,
        running_router(nc.jetstream(), settings_for(zendesk(fake), tmp_path)) as running,
    ):
        case_ids = await publish_complaints(nc, 20, "outage")
        await eventually(lambda: not fake.faults, within_s=10, what="three 503s with Retry-After")
        # The last Retry-After pause, then a second of 503s without Retry-After, then the port closed.
        await asyncio.sleep(RETRY_AFTER_S + 1)
        await server.stop()
        await asyncio.sleep(1)
        fake.down = False
        await server.start()
        # Two requests a ticket (lookup, create) at 5/s; every waiting delivery retries within max_retry_s.
        drain_s = 2 * 20 / RATE_PER_S + MAX_RETRY_S + 1
        await eventually(lambda: len(fake.tickets) == 20, within_s=drain_s, what="the backlog to drain")
        await running.settle()
        dead = await running.router.dead_letters.list()
    assert fake.external_ids() == case_ids  # one ticket per case: nothing lost, nothing twice
    assert sum(a.method == "POST" and a.status == 201 for a in fake.arrivals) == 20
    assert dead == []
    assert sum(a.retry_after_s > 0 for a in fake.arrivals) == 3
    assert any(a.status == 503 and not a.retry_after_s for a in fake.arrivals)
    assert early_retries(fake.arrivals, first_s=FIRST_RETRY_S, max_s=MAX_RETRY_S, floor_s=NAK_FLOOR_S) == []
    # Every attempt starts with the external-id lookup (GET); every request takes a token: see the budget test.
    assert busiest_second([a.at for a in fake.arrivals if a.method == "GET"]) <= RATE_PER_S + BURST


async def test_a_third_attempt_follows_the_workers_backoff(nc: NatsClient, tmp_path: Path) -> None:
    fake = TimedZendesk()
    fake.fail_next(2, 503)
    async with crm_server(fake), running_router(nc.jetstream(), settings_for(zendesk(fake), tmp_path)):
        await publish_complaints(nc, 1, "third")
        await eventually(lambda: not fake.faults, within_s=5, what="two 503s")
        # The second backoff step is 0.2-0.4s: a second and a half is plenty.
        await eventually(lambda: len(fake.tickets) == 1, within_s=1.5, what="the third attempt")


async def test_deliveries_past_their_retry_period_go_to_dead_letters(nc: NatsClient, tmp_path: Path) -> None:
    fake = TimedZendesk(down=True)
    async with crm_server(fake), running_router(nc.jetstream(), expiring(fake, tmp_path)) as running:
        case_ids = await publish_complaints(nc, 4, "expire")
        await eventually(lambda: dead_count(running, 4), within_s=8, what="four dead letters")
        dead = await running.router.dead_letters.list()
    assert sorted(d.info.case_id for d in dead) == case_ids
    for item in dead:
        assert (item.info.destination, item.job.destination) == ("zendesk", "zendesk")
        assert item.info.attempts > 1
        assert item.info.attempts == sum(a.case_id == item.info.case_id for a in fake.arrivals)
        assert item.info.error.startswith(f"DeliveryExpiredError: zendesk: gave up on case {item.info.case_id}")
        assert item.info.error.endswith("HTTP 503: Service Unavailable")  # the last error
        assert item.info.first_attempt_at.ToSeconds() > 0


async def test_a_replay_after_recovery_delivers_every_dead_letter_once(nc: NatsClient, tmp_path: Path) -> None:
    fake = TimedZendesk(down=True)
    async with crm_server(fake), running_router(nc.jetstream(), expiring(fake, tmp_path)) as running:
        case_ids = await publish_complaints(nc, 4, "replay")
        await eventually(lambda: dead_count(running, 4), within_s=8, what="four dead letters")
        fake.down = False
        assert await running.router.dead_letters.replay(destination="zendesk") == 4
        await eventually(lambda: len(fake.tickets) == 4, within_s=2.5, what="the replayed deliveries")
        await running.settle()
        assert await running.router.dead_letters.list() == []
    assert fake.external_ids() == case_ids


async def test_a_dead_letter_of_an_unreachable_crm_can_be_listed(nc: NatsClient, tmp_path: Path) -> None:
    fake = TimedZendesk()
    async with crm_server(fake, running=False), running_router(nc.jetstream(), expiring(fake, tmp_path)) as running:
        [case_id] = await publish_complaints(nc, 1, "unreachable")
        await running.settle()
        [dead] = await running.router.dead_letters.list()
    assert dead.info.case_id == case_id
    assert "ConnectError" in dead.info.error


async def test_a_410_disables_the_destination_until_a_replay_re_enables_it(nc: NatsClient, tmp_path: Path) -> None:
    secret = new_secret()
    receiver = FakeWebhookReceiver(secrets=[secret], now=time.time())
    async with serve_crm(receiver) as server:
        hook = {
            "kind": "webhook",
            "name": "hook",
            "url": server.url(HOOK_PATH),
            "secrets": [secret],
            "allow_hosts": ["127.0.0.1"],
        }
        async with running_router(nc.jetstream(), settings_for(hook, tmp_path)) as running:
            [first] = await publish_complaints(nc, 1, "gone-a")
            await running.settle()
            # The receiver is retired while the case is open: its resolution meets 410 Gone.
            receiver.fail_next(1, 410, body=b"this endpoint was retired")
            await running.router.actions.publish(
                first, case_pb2.CASE_ACTION_KIND_RESOLVE, actor="dana", via="grpc", request_id="r-410"
            )
            await running.settle()
            assert running.router.disabled.peek("hook") is not None
            later = await publish_complaints(nc, 2, "gone-b")
            await running.settle()
            dead = await running.router.dead_letters.list(destination="hook")
            assert len(server.requests) == 2  # the create, then the 410: nothing since
            assert dead[0].info.case_id == first
            assert sorted(d.info.case_id for d in dead[1:]) == later
            assert [d.info.attempts for d in dead] == [1, 1, 1]
            assert "HTTP 410" in dead[0].info.error
            assert all("destination 'hook' is disabled" in d.info.error for d in dead[1:])

            assert await running.router.dead_letters.replay(destination="hook") == 3
            await eventually(lambda: len(receiver.events) == 4, within_s=5, what="the replayed events")
            await running.settle()
            assert running.router.disabled.peek("hook") is None
            assert await running.router.dead_letters.list() == []
    resolved = [e for e in receiver.events.values() if e["type"] == "io.clamor.case.updated"]
    assert [(e["subject"], e["data"]["state"]) for e in resolved] == [(first, "CASE_STATE_RESOLVED")]
    created = sorted(e["subject"] for e in receiver.events.values() if e["type"] == "io.clamor.case.created")
    assert created == sorted([first, *later])


async def test_a_401_is_dead_lettered_at_once_naming_the_destination_not_the_token(
    nc: NatsClient, tmp_path: Path
) -> None:
    fake = TimedZendesk()
    wrong = "zd-revoked-token-91c3"
    credential = base64.b64encode(f"{fake.email}/token:{wrong}".encode()).decode()
    async with (
        crm_server(fake),
        running_router(nc.jetstream(), settings_for(zendesk(fake, api_token=wrong), tmp_path)) as running,
    ):
        # Some APIs echo what they refused; the error must still not show it.
        fake.fail_next(1, 401, body=f'{{"error": "bad credentials: {wrong} (Basic {credential})"}}'.encode())
        [case_id] = await publish_complaints(nc, 1, "unauthorized")
        # settle() alone may return before the delivery is counted as pending on a busy machine.
        await eventually(lambda: dead_count(running, 1), what="the delivery in dead letters")
        await running.settle()
        [dead] = await running.router.dead_letters.list(destination="zendesk")
    assert (dead.info.case_id, dead.info.attempts) == (case_id, 1)
    assert "zendesk destination 'zendesk'" in dead.info.error
    assert "HTTP 401" in dead.info.error
    assert wrong not in dead.info.error
    assert credential not in dead.info.error
    assert len(fake.arrivals) == 1


async def test_a_dead_letter_says_when_it_was_dead_lettered(nc: NatsClient, tmp_path: Path) -> None:
    fake = TimedZendesk()
    fake.fail_next(1, 400, body=b'{"error": "RecordInvalid"}')
    async with crm_server(fake), running_router(nc.jetstream(), settings_for(zendesk(fake), tmp_path)) as running:
        await publish_complaints(nc, 1, "dead-at")
        await running.settle()
        [dead] = await running.router.dead_letters.list()
    assert dead.info.HasField("dead_at")
    assert dead.info.dead_at.ToSeconds() >= dead.info.first_attempt_at.ToSeconds()


async def test_requests_to_a_crm_stay_within_its_budget(nc: NatsClient, tmp_path: Path) -> None:
    fake = TimedZendesk()
    async with crm_server(fake), running_router(nc.jetstream(), settings_for(zendesk(fake), tmp_path)):
        await publish_complaints(nc, 10, "budget")
        await eventually(lambda: len(fake.tickets) == 10, within_s=10, what="ten tickets")
    assert busiest_second([a.at for a in fake.arrivals]) <= RATE_PER_S + BURST


async def test_waiting_for_another_deliverys_claim_does_not_hold_up_other_cases(nc: NatsClient, tmp_path: Path) -> None:
    fake = TimedZendesk()
    async with crm_server(fake), running_router(nc.jetstream(), settings_for(zendesk(fake), tmp_path)) as running:
        held = case_id_for("mastodon:claimed0")
        # Another replica is creating this case's ticket right now.
        foreign = TicketRecord(claim="another-replica", claimed_at=time.time())
        await running.router.tickets.change(f"zendesk/{held}", lambda _: foreign)
        await publish_complaints(nc, 1, "claimed")
        [other] = await publish_complaints(nc, 1, "free")
        await eventually(lambda: fake.external_ids() == [other], within_s=2, what="the other case's ticket")
