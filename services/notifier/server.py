"""The notifier's gRPC API: the notification log, acknowledgement, and a test message per channel."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import grpc

from clamor.v1 import case_pb2, notifier_service_pb2, notifier_service_pb2_grpc
from services.notifier.message import Message
from services.shared.errors import PermanentError, TransientError
from services.shared.paging import InvalidPageError, decode_sequence, encode_token, page_size

if TYPE_CHECKING:
    from collections.abc import Mapping

    from services.notifier.channels.base import Channel
    from services.notifier.clients import NotificationLog
    from services.shared.case_actions import CaseActions
    from services.shared.known_cases import KnownCases

SERVICE_NAME = notifier_service_pb2.DESCRIPTOR.services_by_name["NotifierService"].full_name
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
MAX_ACTOR_CHARS = 100


class NotifierServicer(notifier_service_pb2_grpc.NotifierServiceServicer):
    """Serves from the start (health must answer), and works once :meth:`attach` gave it NATS."""

    def __init__(self) -> None:
        self._parts: tuple[NotificationLog, CaseActions, Mapping[str, Channel]] | None = None
        self._cases: KnownCases | None = None

    def attach(
        self, log: NotificationLog, actions: CaseActions, channels: Mapping[str, Channel], cases: KnownCases
    ) -> None:
        self._cases = cases
        self._parts = (log, actions, channels)

    async def _ready(
        self, context: grpc.aio.ServicerContext[object, object]
    ) -> tuple[NotificationLog, CaseActions, Mapping[str, Channel]]:
        if self._parts is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the notifier is still connecting to NATS")
        assert self._parts is not None
        return self._parts

    async def ListNotifications(
        self, request: notifier_service_pb2.ListNotificationsRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> notifier_service_pb2.ListNotificationsResponse:
        log, _, _ = await self._ready(context)
        try:
            size = page_size(request.page_size, default=DEFAULT_PAGE_SIZE, maximum=MAX_PAGE_SIZE)
            before = decode_sequence(request.page_token)
        except InvalidPageError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        try:
            found, next_sequence = await log.page(
                size=size, before=before, case_id=request.case_id, channel=request.channel
            )
        except TransientError as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        token = encode_token(str(next_sequence)) if next_sequence else ""
        return notifier_service_pb2.ListNotificationsResponse(notifications=found, next_page_token=token)

    async def Acknowledge(
        self, request: notifier_service_pb2.AcknowledgeRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> notifier_service_pb2.AcknowledgeResponse:
        _, actions, _ = await self._ready(context)
        if not request.case_id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "case_id is required")
        actor = " ".join(request.actor.split())[:MAX_ACTOR_CHARS] or "grpc"
        assert self._cases is not None  # attached with the parts
        try:
            # Published for an unknown case, the acknowledgement would be answered here and dropped
            # by the router: the caller would believe somebody took a case that does not exist.
            if not await self._cases.exists(request.case_id):
                await context.abort(grpc.StatusCode.NOT_FOUND, f"no case {request.case_id!r}")
            action_id = await actions.publish(
                request.case_id,
                case_pb2.CASE_ACTION_KIND_ACKNOWLEDGE,
                actor=actor,
                via="grpc",
                request_id=request.request_id or uuid.uuid4().hex,
                note=request.note[:1000],
            )
        except TransientError as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        return notifier_service_pb2.AcknowledgeResponse(action_id=action_id)

    async def TestChannel(
        self, request: notifier_service_pb2.TestChannelRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> notifier_service_pb2.TestChannelResponse:
        _, _, channels = await self._ready(context)
        channel = channels.get(request.channel)
        if channel is None:
            known = ", ".join(sorted(channels))
            await context.abort(
                grpc.StatusCode.NOT_FOUND, f"no channel named {request.channel!r} (configured: {known})"
            )
        message = Message(
            id=f"test-{uuid.uuid4().hex}:{request.channel}",
            kind="alert",
            title="[test] Clamor can reach this channel",
            severity="LOW",
            reason="A test message sent with `clamor notifications test`; nothing needs doing.",
        )
        try:
            delivery = await channel.send(message)
        except (TransientError, PermanentError) as exc:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"{request.channel}: {exc}")
        return notifier_service_pb2.TestChannelResponse(remote_id=delivery.remote_id, detail=delivery.detail)
