"""Every gRPC channel the ``clamor`` command opens, and the stub of each service on it.

The CLI is a client of the mesh: it reaches a running service only through the stubs made here.
``open_channel`` is the one place a channel is built, so transport security and credentials are
added once, for every command. A service's stub gets a function of its own (``listener``,
``triage``, ``router``, ``notifier``), beside the two every process serves (``health``, ``status``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, TypeAlias, TypeVar

import grpc
from grpc_health.v1 import health_pb2_grpc

from clamor.v1 import (
    listener_service_pb2_grpc,
    notifier_service_pb2_grpc,
    reputation_service_pb2_grpc,
    router_service_pb2_grpc,
    status_pb2_grpc,
    triage_service_pb2_grpc,
)

if TYPE_CHECKING:
    from clamor.v1.listener_service_pb2_grpc import ListenerServiceAsyncStub
    from clamor.v1.notifier_service_pb2_grpc import NotifierServiceAsyncStub
    from clamor.v1.reputation_service_pb2_grpc import ReputationServiceAsyncStub
    from clamor.v1.router_service_pb2_grpc import RouterServiceAsyncStub
    from clamor.v1.status_pb2_grpc import StatusServiceAsyncStub
    from clamor.v1.triage_service_pb2_grpc import TriageServiceAsyncStub
    from services.shared.config import GrpcSettings

    # The stub types a CLI module may annotate with; only this module imports the generated stubs.
    ListenerStub: TypeAlias = ListenerServiceAsyncStub
    TriageStub: TypeAlias = TriageServiceAsyncStub
    RouterStub: TypeAlias = RouterServiceAsyncStub
    NotifierStub: TypeAlias = NotifierServiceAsyncStub
    ReputationStub: TypeAlias = ReputationServiceAsyncStub

ChannelOptions = Sequence[tuple[str, int]]
T = TypeVar("T")
# One page of a List RPC: its items and its next_page_token.
Page = tuple[Sequence[T], str]

# A long-lived channel (the dashboard's) reconnects within seconds of a service coming back, not
# after gRPC's default backoff of up to two minutes.
RECONNECT_FAST: ChannelOptions = (("grpc.initial_reconnect_backoff_ms", 500), ("grpc.max_reconnect_backoff_ms", 5000))


def address_of(settings: GrpcSettings) -> str:
    """Where to reach a service that binds ``settings``: a wildcard bind is reached on loopback."""
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "", "::") else settings.host
    return f"{host}:{settings.port}"


def open_channel(address: str, *, options: ChannelOptions = ()) -> grpc.aio.Channel:
    """A channel to one service; the caller closes it (or uses :func:`connect`)."""
    # Services listen in plaintext today; TLS and bearer tokens replace this one call.
    return grpc.aio.insecure_channel(address, options=list(options))


@asynccontextmanager
async def connect(address: str, *, options: ChannelOptions = ()) -> AsyncIterator[grpc.aio.Channel]:
    """A channel for the length of one command or one probe, closed on the way out."""
    channel = open_channel(address, options=options)
    try:
        yield channel
    finally:
        await channel.close()


async def follow_pages(ask: Callable[[str, int], Awaitable[Page[T]]], *, limit: int, page_size: int = 1000) -> list[T]:
    """Up to ``limit`` items of a List RPC, asking page after page: ``ask(page_token, page_size)``."""
    found: list[T] = []
    token = ""
    while len(found) < limit:
        items, token = await ask(token, min(page_size, limit - len(found)))
        found.extend(items)
        if not token:
            break
    return found[:limit]


# --- what every process serves ----------------------------------------------------------------


def health(channel: grpc.aio.Channel) -> health_pb2_grpc.HealthStub:
    """grpc.health.v1: SERVING once NATS is connected and the consumers are bound."""
    return health_pb2_grpc.HealthStub(channel)


def status(channel: grpc.aio.Channel) -> StatusServiceAsyncStub:
    """Readiness, counters and gauges of one process (``clamor status``, ``clamor up``)."""
    return status_pb2_grpc.StatusServiceStub(channel)


# --- one function per service ------------------------------------------------------------------


def listener(channel: grpc.aio.Channel) -> ListenerServiceAsyncStub:
    return listener_service_pb2_grpc.ListenerServiceStub(channel)


def triage(channel: grpc.aio.Channel) -> TriageServiceAsyncStub:
    return triage_service_pb2_grpc.TriageServiceStub(channel)


def router(channel: grpc.aio.Channel) -> RouterServiceAsyncStub:
    return router_service_pb2_grpc.RouterServiceStub(channel)


def notifier(channel: grpc.aio.Channel) -> NotifierServiceAsyncStub:
    return notifier_service_pb2_grpc.NotifierServiceStub(channel)


def reputation(channel: grpc.aio.Channel) -> ReputationServiceAsyncStub:
    return reputation_service_pb2_grpc.ReputationServiceStub(channel)
