"""ListNotifications a page at a time: the notifier's servicer on a free port, its log on a real nats-server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import yaml
from nats.aio.client import Client as NatsClient

from clamor.v1 import notification_pb2, notifier_service_pb2, notifier_service_pb2_grpc
from services.cli import clients, live
from services.cli.mesh import load_mesh_config
from services.notifier.clients import NotificationLog
from services.notifier.server import NotifierServicer
from services.shared.case_actions import CaseActions
from services.shared.jetstream import ensure_streams
from services.shared.known_cases import KnownCases
from tests.support.clock import tracer

# Seven notifications, oldest first; every third is about case c-a.
SENT = [
    notification_pb2.Notification(
        id=f"g:{n}",
        channel="care",
        case_id="c-a" if n % 3 == 0 else f"c-{n}",
        title=f"note {n}",
        status=notification_pb2.DELIVERY_STATUS_SENT,
    )
    for n in range(7)
]


@pytest.fixture
async def address(nc: NatsClient) -> AsyncIterator[str]:
    """The notifier's gRPC API over a log that holds SENT."""
    js = nc.jetstream()
    await ensure_streams(js)
    log = NotificationLog(js, tracer())
    for notification in SENT:
        await log.record(notification)
    servicer = NotifierServicer()
    servicer.attach(log, CaseActions(js, tracer()), {}, KnownCases(js))
    server = grpc.aio.server()
    notifier_service_pb2_grpc.add_NotifierServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(grace=None)


async def ask(address: str, request: notifier_service_pb2.ListNotificationsRequest) -> tuple[list[str], str]:
    async with clients.connect(address) as channel:
        answer = await clients.notifier(channel).ListNotifications(request, timeout=10)
    return [n.id for n in answer.notifications], answer.next_page_token


async def test_pages_go_from_newest_to_oldest_without_repeats_or_gaps(address: str) -> None:
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        ids, token = await ask(address, notifier_service_pb2.ListNotificationsRequest(page_size=3, page_token=token))
        seen += ids
        pages += 1
        if not token:
            break
    assert seen == [f"g:{n}" for n in reversed(range(7))]
    assert pages == 3


async def test_a_filtered_page_holds_only_matches_and_continues_below_them(address: str) -> None:
    first, token = await ask(address, notifier_service_pb2.ListNotificationsRequest(page_size=2, case_id="c-a"))
    rest, last = await ask(
        address, notifier_service_pb2.ListNotificationsRequest(page_size=2, case_id="c-a", page_token=token)
    )
    assert (first, rest, last) == (["g:6", "g:3"], ["g:0"], "")


@pytest.mark.parametrize(
    "request_",
    [
        notifier_service_pb2.ListNotificationsRequest(page_size=-1),
        notifier_service_pb2.ListNotificationsRequest(page_token="bm90IGEgc2VxdWVuY2U"),
    ],
    ids=["negative size", "foreign token"],
)
async def test_a_bad_page_request_is_an_invalid_argument(
    address: str, request_: notifier_service_pb2.ListNotificationsRequest
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await ask(address, request_)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_clamor_notifications_reads_the_newest_up_to_its_limit(address: str, tmp_path: Path) -> None:
    port = int(address.rsplit(":", 1)[1])
    config = tmp_path / "clamor.yaml"
    config.write_text(yaml.safe_dump({"notifier": {"grpc": {"port": port}}}))
    found = await live.notification_log(load_mesh_config(config), limit=5)
    assert [n.id for n in found] == ["g:6", "g:5", "g:4", "g:3", "g:2"]
