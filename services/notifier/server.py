"""The notifier's gRPC API: the notification log."""

from __future__ import annotations

from itertools import islice
from typing import TYPE_CHECKING

from clamor.v1 import notification_pb2, notifier_service_pb2, notifier_service_pb2_grpc

if TYPE_CHECKING:
    from collections import deque

    import grpc

SERVICE_NAME = notifier_service_pb2.DESCRIPTOR.services_by_name["NotifierService"].full_name
DEFAULT_LIMIT = 100


class NotifierServicer(notifier_service_pb2_grpc.NotifierServiceServicer):
    def __init__(self, log: deque[notification_pb2.Notification]) -> None:
        self._log = log

    async def ListNotifications(
        self, request: notifier_service_pb2.ListNotificationsRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> notifier_service_pb2.ListNotificationsResponse:
        limit = request.limit or DEFAULT_LIMIT
        return notifier_service_pb2.ListNotificationsResponse(notifications=list(islice(self._log, limit)))
