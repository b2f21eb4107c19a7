"""The listener's gRPC API: list, add, remove, pause, resume and poll sources."""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc
import yaml
from google.protobuf.timestamp_pb2 import Timestamp

from clamor.v1 import listener_service_pb2, listener_service_pb2_grpc
from services.listener.errors import NotHolderError
from services.listener.registry import (
    InvalidSourceError,
    Runner,
    SourceConflictError,
    SourceRegistry,
    UnknownSourceError,
    parse_source_settings,
)
from services.listener.runner import SourceRunner
from services.shared.errors import ClamorError
from services.shared.paging import InvalidPageError, decode_token, encode_token, page_size

if TYPE_CHECKING:
    from datetime import datetime

    from services.listener.domain import SourceStatus

SERVICE_NAME = listener_service_pb2.DESCRIPTOR.services_by_name["ListenerService"].full_name
Context = grpc.aio.ServicerContext[object, object]
MAX_SOURCE_CONFIG_BYTES = 64 * 1024
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


class ListenerServicer(listener_service_pb2_grpc.ListenerServiceServicer):
    def __init__(self, registries: list[SourceRegistry]) -> None:
        # A one-element list filled once NATS is up: the server starts before the registry exists.
        self._registries = registries
        self._added: dict[str, listener_service_pb2.AddSourceResponse] = {}

    async def ListSources(
        self, request: listener_service_pb2.ListSourcesRequest, context: Context
    ) -> listener_service_pb2.ListSourcesResponse:
        registry = await self._registry(context)
        try:
            size = page_size(request.page_size, default=DEFAULT_PAGE_SIZE, maximum=MAX_PAGE_SIZE)
            after = decode_token(request.page_token)
        except InvalidPageError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        # By name, and the token is the last name given: a source added or removed between two pages
        # neither repeats nor hides another.
        ordered = sorted((s for s in registry.statuses() if s.name > after), key=lambda s: s.name)
        page, rest = ordered[:size], ordered[size:]
        token = encode_token(page[-1].name) if rest else ""
        return listener_service_pb2.ListSourcesResponse(sources=[to_proto(s) for s in page], next_page_token=token)

    async def AddSource(
        self, request: listener_service_pb2.AddSourceRequest, context: Context
    ) -> listener_service_pb2.AddSourceResponse:
        if request.request_id and request.request_id in self._added:
            return self._added[request.request_id]
        registry = await self._registry(context)
        if len(request.source_config.encode()) > MAX_SOURCE_CONFIG_BYTES:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "source_config is over 64 KiB")
        try:
            data = yaml.safe_load(request.source_config)
        except yaml.YAMLError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"source_config is not YAML or JSON: {exc}")
        try:
            runner = await registry.add(parse_source_settings(data))
        except InvalidSourceError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except SourceConflictError as exc:
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, str(exc))
        except ClamorError as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        response = listener_service_pb2.AddSourceResponse(source=await self._status(runner.status.name, context))
        if request.request_id:
            self._added[request.request_id] = response
        return response

    async def RemoveSource(
        self, request: listener_service_pb2.RemoveSourceRequest, context: Context
    ) -> listener_service_pb2.RemoveSourceResponse:
        registry = await self._registry(context)
        try:
            await registry.remove(request.name)
        except UnknownSourceError as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        except SourceConflictError as exc:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        except ClamorError as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        return listener_service_pb2.RemoveSourceResponse()

    async def PauseSource(
        self, request: listener_service_pb2.PauseSourceRequest, context: Context
    ) -> listener_service_pb2.PauseSourceResponse:
        runner = await self._runner(request.name, context)
        runner.pause()
        return listener_service_pb2.PauseSourceResponse(source=await self._status(request.name, context))

    async def ResumeSource(
        self, request: listener_service_pb2.ResumeSourceRequest, context: Context
    ) -> listener_service_pb2.ResumeSourceResponse:
        runner = await self._runner(request.name, context)
        runner.resume()
        return listener_service_pb2.ResumeSourceResponse(source=await self._status(request.name, context))

    async def PollNow(
        self, request: listener_service_pb2.PollNowRequest, context: Context
    ) -> listener_service_pb2.PollNowResponse:
        runner = await self._runner(request.name, context)
        if not isinstance(runner, SourceRunner):
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"source {request.name!r} is not polled")
            raise AssertionError("unreachable")
        try:
            outcome = await runner.poll_now()
        except NotHolderError as exc:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        return listener_service_pb2.PollNowResponse(
            source=await self._status(request.name, context),
            fetched=outcome.fetched,
            published=outcome.published,
            error=outcome.error,
        )

    async def _registry(self, context: Context) -> SourceRegistry:
        if not self._registries:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "listener is not connected to NATS yet")
        return self._registries[0]

    async def _status(self, name: str, context: Context) -> listener_service_pb2.SourceStatus:
        registry = await self._registry(context)
        try:
            return to_proto(registry.status(name))
        except UnknownSourceError as exc:
            # Removed while the request ran.
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
            raise AssertionError("unreachable") from exc

    async def _runner(self, name: str, context: Context) -> Runner:
        registry = await self._registry(context)
        try:
            return registry.get(name)
        except UnknownSourceError as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
            raise AssertionError("unreachable") from exc


def _stamp(at: datetime | None) -> Timestamp | None:
    if at is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(at)
    return stamp


def to_proto(status: SourceStatus) -> listener_service_pb2.SourceStatus:
    return listener_service_pb2.SourceStatus(
        name=status.name,
        kind=status.kind,
        watch=status.watch,
        published=status.published,
        exhausted=status.exhausted,
        remaining=status.remaining,
        last_error=status.last_error,
        consecutive_failures=status.consecutive_failures,
        posts_seen=status.posts_seen,
        paused=status.paused,
        dynamic=status.dynamic,
        holder=status.holder,
        last_success_at=_stamp(status.last_success_at),
        last_error_at=_stamp(status.last_error_at),
        newest_post_at=_stamp(status.newest_post_at),
        next_poll_at=_stamp(status.next_poll_at),
    )
