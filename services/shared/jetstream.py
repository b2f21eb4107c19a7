"""JetStream helpers: connect, idempotent stream/consumer/bucket creation, traced publish.

Every producer publishes through :func:`publish`, which sets ``Nats-Msg-Id`` from a stable id
(so a repeat within the duplicate window is dropped by the server) and injects the trace
context into the headers inside a ``publish <subject>`` PRODUCER span.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, TypeVar

import nats
from nats.errors import ConnectionClosedError, ConnectionReconnectingError, NoRespondersError
from nats.errors import Error as NatsLibraryError
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    KeyValueConfig,
    PubAck,
    StorageType,
    StreamConfig,
)
from nats.js.errors import NoStreamResponseError, NotFoundError, ServiceUnavailableError
from opentelemetry import trace

from services.shared import metric_catalogue as m
from services.shared import subjects
from services.shared.config import redact
from services.shared.errors import ExceptionMapping, TransientError, map_exceptions
from services.shared.telemetry import inject_context

if TYPE_CHECKING:
    from google.protobuf.message import Message
    from nats.aio.client import Client as NatsClient
    from nats.js import JetStreamContext
    from nats.js.kv import KeyValue
    from opentelemetry.context import Context

    from services.shared.config import NatsSettings
    from services.shared.metrics import Metrics

log = logging.getLogger(__name__)

# What a NATS or JetStream call can raise when the server is slow, away or refusing for now: all
# worth retrying. Narrower answers (a missing key, a wrong last sequence) are caught before these.
NATS_FAILURES: ExceptionMapping = {
    TimeoutError: TransientError,
    OSError: TransientError,
    NatsLibraryError: TransientError,
}

# What creating or updating a stream, bucket or consumer may meet while a cluster elects a leader,
# places a new stream's replicas or loses a node: nothing is wrong, so it is asked again, soon.
# (A config the server refuses, a 400 or 500, is raised at once.)
NOT_YET: tuple[type[BaseException], ...] = (
    TimeoutError,
    OSError,
    NoRespondersError,
    NoStreamResponseError,
    ServiceUnavailableError,
    ConnectionClosedError,
    ConnectionReconnectingError,
)
# Waits between provisioning attempts: several services start at once against a cluster that is
# itself starting or electing, which on a busy machine may take a minute; the last wait repeats.
PROVISION_WAITS_S = (0.5, 1.0, 2.0, 4.0, 8.0)
PROVISION_ATTEMPTS = 16

ConnectionCallback = Callable[[bool], Awaitable[None]]
T = TypeVar("T")


async def provision(what: str, call: Callable[[], Awaitable[T]]) -> T:
    """``call()``, asked again while the answer is :data:`NOT_YET`; TransientError when it never comes."""
    for attempt in range(1, PROVISION_ATTEMPTS):
        try:
            return await call()
        except NOT_YET as exc:
            wait = PROVISION_WAITS_S[min(attempt, len(PROVISION_WAITS_S)) - 1]
            log.warning("%s: %s; asking again in %.1fs", what, str(exc) or type(exc).__name__, wait)
            await asyncio.sleep(wait)
    try:
        return await call()
    except NOT_YET as exc:
        raise TransientError(f"{what}: no answer from JetStream: {str(exc) or type(exc).__name__}") from exc


async def connect(
    settings: NatsSettings,
    *,
    name: str,
    on_connection_change: ConnectionCallback | None = None,
    stop: asyncio.Event | None = None,
) -> NatsClient:
    """Connect to one of ``settings.servers``, retrying until one answers or ``stop`` is set.

    The client knows every server listed (and those the cluster announces): when the one it uses
    goes away it reconnects to another, forever. Log lines name the server actually in use.
    """
    # The server in use, as a log line may show it; kept across a disconnect to say which was lost.
    current = settings.shown
    client: NatsClient | None = None

    def in_use() -> str:
        url = client.connected_url if client is not None else None
        return redact(url.geturl()) if url is not None else current

    async def disconnected() -> None:
        if client is not None and client.is_closed:
            log.info("closed connection to NATS at %s", current)  # our own drain or close, at shutdown
        else:
            log.warning("lost connection to NATS at %s; reconnecting to one of %s", current, settings.shown)
        if on_connection_change is not None:
            await on_connection_change(False)

    async def reconnected() -> None:
        nonlocal current
        current = in_use()
        log.info("reconnected to NATS at %s", current)
        if on_connection_change is not None:
            await on_connection_change(True)

    async def error(exc: Exception) -> None:
        log.debug("NATS client error: %s", exc)

    delay = 0.5
    while True:
        try:
            client = await nats.connect(
                servers=settings.servers,
                name=name,
                connect_timeout=settings.connect_timeout_s,
                max_reconnect_attempts=-1,
                reconnect_time_wait=1,
                allow_reconnect=True,
                user=settings.user or None,
                password=settings.password or None,
                token=settings.token or None,
                disconnected_cb=disconnected,
                reconnected_cb=reconnected,
                error_cb=error,
            )
        except (TimeoutError, OSError, NatsLibraryError) as exc:
            if stop is not None and stop.is_set():
                raise TransientError(f"cannot reach NATS at {settings.shown}: {exc}") from exc
            log.warning(
                "cannot reach NATS at %s (%s); retrying in %.1fs", settings.shown, str(exc) or type(exc).__name__, delay
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
            continue
        current = in_use()
        log.info("connected to NATS at %s", current)
        if on_connection_change is not None:
            await on_connection_change(True)
        return client


def stream_config(spec: subjects.StreamSpec, *, replicas: int) -> StreamConfig:
    return StreamConfig(
        name=spec.name,
        subjects=list(spec.subjects),
        storage=StorageType.FILE,
        max_age=spec.max_age_s,
        duplicate_window=spec.duplicate_window_s,
        num_replicas=replicas,
    )


async def ensure_streams(
    js: JetStreamContext,
    specs: Iterable[subjects.StreamSpec] = subjects.ALL_STREAMS,
    *,
    replicas: int = 1,
    history_days: float | None = None,
) -> None:
    """Create each stream, or bring an existing one to the declared config; safe to repeat.

    ``history_days`` sets how long the TRIAGED stream keeps mentions (``nats.history_days``); every
    service passes the same value from the shared config, so none resets another's choice.
    """
    for declared in specs:
        spec = declared
        if history_days is not None and spec.name == subjects.TRIAGED.name:
            spec = replace(spec, max_age_s=history_days * subjects.DAY_S)
        config = stream_config(spec, replicas=replicas)
        await provision(f"stream {spec.name}", partial(_ensure_stream, js, config))


async def _ensure_stream(js: JetStreamContext, config: StreamConfig) -> None:
    # Updating an existing stream in place moves it to the declared replicas too (R1 → R3 on a cluster).
    try:
        await js.stream_info(config.name or "")
    except NotFoundError:
        await js.add_stream(config)
    else:
        await js.update_stream(config)


def consumer_config(spec: subjects.ConsumerSpec) -> ConsumerConfig:
    return ConsumerConfig(
        durable_name=spec.durable,
        filter_subject=spec.filter_subject,
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        ack_wait=spec.ack_wait_s,
        max_deliver=spec.max_deliver,
        backoff=list(spec.backoff_s) or None,
        max_ack_pending=spec.max_ack_pending,
    )


async def ensure_consumer(js: JetStreamContext, spec: subjects.ConsumerSpec) -> None:
    """Create the durable consumer or update it in place (add_consumer is create-or-update)."""
    await provision(f"consumer {spec.durable}", lambda: js.add_consumer(spec.stream, consumer_config(spec)))


def bucket_stream(bucket: str) -> str:
    """The stream that holds KV bucket ``bucket``: JetStream keeps a bucket as stream ``KV_<bucket>``."""
    return f"KV_{bucket}"


async def ensure_bucket(
    js: JetStreamContext, bucket: str, *, replicas: int = 1, history: int = 1, ttl_s: float | None = None
) -> KeyValue:
    """Bind the KV bucket, creating it on first use; with ``ttl_s``, records untouched that long expire.

    A bucket created earlier with another replica count (before the move to a cluster) is brought to
    ``replicas`` in place, as :func:`ensure_streams` does for streams: its stream's ``num_replicas``
    is updated, and the cluster copies the records to the new peers while the bucket keeps serving.
    """
    return await provision(
        f"KV bucket {bucket}", lambda: _ensure_bucket(js, bucket, replicas=replicas, history=history, ttl_s=ttl_s)
    )


async def _ensure_bucket(
    js: JetStreamContext, bucket: str, *, replicas: int, history: int, ttl_s: float | None
) -> KeyValue:
    try:
        info = await js.stream_info(bucket_stream(bucket))
    except NotFoundError:
        return await js.create_key_value(KeyValueConfig(bucket=bucket, history=history, replicas=replicas, ttl=ttl_s))
    if info.config.num_replicas != replicas:
        log.info("KV bucket %s: %s replicas → %d", bucket, info.config.num_replicas, replicas)
        await js.update_stream(replace(info.config, num_replicas=replicas))
    return await js.key_value(bucket)


async def publish(
    js: JetStreamContext,
    tracer: trace.Tracer,
    subject: str,
    message: Message,
    *,
    msg_id: str,
    mention_id: str = "",
    context: Context | None = None,
    metrics: Metrics | None = None,
) -> PubAck:
    """Publish ``message`` with ``Nats-Msg-Id`` and the trace context, in a PRODUCER span.

    Raises :class:`TransientError` when NATS does not acknowledge, so the caller's message is
    retried rather than acknowledged.
    """
    attributes: dict[str, str] = {
        "messaging.system": "nats",
        "messaging.operation.type": "send",
        "messaging.destination.name": subject,
        "messaging.message.id": msg_id,
    }
    if mention_id:
        attributes["clamor.mention.id"] = mention_id
    with tracer.start_as_current_span(
        f"publish {subject}", context=context, kind=trace.SpanKind.PRODUCER, attributes=attributes
    ) as span:
        headers = {subjects.MSG_ID_HEADER: msg_id}
        if mention_id:
            headers[subjects.MENTION_ID_HEADER] = mention_id
        inject_context(headers)
        sent: dict[str, str] = {m.SYSTEM: "nats", m.OPERATION: "send", m.DESTINATION: subject}
        try:
            with map_exceptions(NATS_FAILURES, f"publish to {subject} failed"):
                ack = await js.publish(subject, message.SerializeToString(), headers=headers)
        except Exception as exc:
            sent[m.ERROR_TYPE] = type(exc).__name__
            raise
        finally:
            if metrics is not None:
                metrics.add("messaging.client.sent.messages", 1, sent)
        span.set_attribute("messaging.nats.duplicate", bool(ack.duplicate))
        return ack
