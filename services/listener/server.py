"""The listener's gRPC API."""

from __future__ import annotations

from typing import TYPE_CHECKING

from google.protobuf.timestamp_pb2 import Timestamp

from clamor.v1 import listener_service_pb2, listener_service_pb2_grpc

if TYPE_CHECKING:
    from collections.abc import Sequence

    import grpc

    from services.listener.domain import SourceState

SERVICE_NAME = listener_service_pb2.DESCRIPTOR.services_by_name["ListenerService"].full_name


class ListenerServicer(listener_service_pb2_grpc.ListenerServiceServicer):
    def __init__(self, sources: Sequence[SourceState]) -> None:
        self._sources = sources

    async def ListSources(
        self, request: listener_service_pb2.ListSourcesRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> listener_service_pb2.ListSourcesResponse:
        return listener_service_pb2.ListSourcesResponse(sources=[_status(s) for s in self._sources])


def _status(state: SourceState) -> listener_service_pb2.SourceStatus:
    status = listener_service_pb2.SourceStatus(
        name=state.name,
        kind=state.kind,
        watch=state.watch,
        published=state.published,
        exhausted=state.exhausted,
        last_error=state.last_error,
    )
    if state.last_success_at is not None:
        stamp = Timestamp()
        stamp.FromDatetime(state.last_success_at)
        status.last_success_at.CopyFrom(stamp)
    return status
