"""Dead letters a page at a time: the router's reader over a real DEAD_LETTERS stream.

Dead letters are put on the stream as the delivery consumer writes them (the CaseDelivery as the
body, error and attempts in headers), beside another stage's, which a page must skip.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from clamor.v1 import case_pb2
from services.shared import subjects
from tests.integration.router_harness import router_settings, running_router

if TYPE_CHECKING:
    from pathlib import Path

    from nats.aio.client import Client as NatsClient
    from nats.js import JetStreamContext

DELIVERY_DLQ = subjects.ROUTER_DELIVERY_CONSUMER.dead_letter_subject


async def dead_letter(js: JetStreamContext, n: int, destination: str) -> None:
    job = case_pb2.CaseDelivery(id=f"c{n}:{destination}:1", case_id=f"c{n}", destination=destination)
    headers = {subjects.DLQ_ERROR_HEADER: "HTTP 503", subjects.DLQ_DELIVERIES_HEADER: "5"}
    await js.publish(DELIVERY_DLQ, job.SerializeToString(), headers=headers)


async def test_pages_go_from_oldest_to_newest_of_one_destination_without_repeats(
    nc: NatsClient, tmp_path: Path
) -> None:
    js = nc.jetstream()
    async with running_router(js, router_settings({"outbox": {"path": "outbox.jsonl"}}, tmp_path)) as running:
        for n in range(5):
            await dead_letter(js, n, "zendesk" if n != 2 else "webhook")
            # Another stage's dead letter between them: not the router's to list.
            await js.publish(subjects.ROUTER_CONSUMER.dead_letter_subject, b"not a delivery")
        reader = running.router.dead_letters
        first, after = await reader.page(destination="zendesk", size=2)
        second, after_second = await reader.page(destination="zendesk", size=2, after=after)
        last, end = await reader.page(destination="zendesk", size=2, after=after_second)
    assert [d.info.case_id for d in first + second + last] == ["c0", "c1", "c3", "c4"]
    assert (len(last), end) == (0, 0)
    assert all(d.info.attempts == 5 and d.info.error == "HTTP 503" for d in first + second)
