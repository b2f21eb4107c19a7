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
from typing import TYPE_CHECKING

import nats
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
from nats.js.errors import NotFoundError
from opentelemetry import trace

from services.shared import subjects
from services.shared.errors import ExceptionMapping, TransientError, map_exceptions
from services.shared.telemetry import inject_context

if TYPE_CHECKING:
    from google.protobuf.message import Message
    from nats.aio.client import Client as NatsClient
    from nats.js import JetStreamContext
    from nats.js.kv import KeyValue
    from opentelemetry.context import Context

    from services.shared.config import NatsSettings

log = logging.getLogger(__name__)

# What a NATS or JetStream call can raise when the server is slow, away or refusing for now: all
# worth retrying. Narrower answers (a missing key, a wrong last sequence) are caught before these.
NATS_FAILURES: ExceptionMapping = {
    TimeoutError: TransientError,
    OSError: TransientError,
    NatsLibraryError: TransientError,
}

ConnectionCallback = Callable[[bool], Awaitable[None]]


async def connect(
    settings: NatsSettings,
    *,
    name: str,
    on_connection_change: ConnectionCallback | None = None,
    stop: asyncio.Event | None = None,
) -> NatsClient:
    """Connect to NATS, retrying until it answers or ``stop`` is set; reconnect forever after."""

    async def disconnected() -> None:
        log.warning("lost connection to NATS at %s; reconnecting", settings.url)
        if on_connection_change is not None:
            await on_connection_change(False)

    async def reconnected() -> None:
        log.info("reconnected to NATS at %s", settings.url)
        if on_connection_change is not None:
            await on_connection_change(True)

    async def error(exc: Exception) -> None:
        log.debug("NATS client error: %s", exc)

    delay = 0.5
    while True:
        try:
            client = await nats.connect(
                settings.url,
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
                raise TransientError(f"cannot reach NATS at {settings.url}: {exc}") from exc
            log.warning(
                "cannot reach NATS at %s (%s); retrying in %.1fs", settings.url, str(exc) or type(exc).__name__, delay
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
            continue
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
        try:
            await js.stream_info(spec.name)
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
    await js.add_consumer(spec.stream, consumer_config(spec))


async def ensure_bucket(
    js: JetStreamContext, bucket: str, *, replicas: int = 1, history: int = 1, ttl_s: float | None = None
) -> KeyValue:
    """Bind the KV bucket, creating it on first use; with ``ttl_s``, records untouched that long expire."""
    try:
        return await js.key_value(bucket)
    except NotFoundError:
        return await js.create_key_value(KeyValueConfig(bucket=bucket, history=history, replicas=replicas, ttl=ttl_s))


async def publish(
    js: JetStreamContext,
    tracer: trace.Tracer,
    subject: str,
    message: Message,
    *,
    msg_id: str,
    mention_id: str = "",
    context: Context | None = None,
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
        with map_exceptions(NATS_FAILURES, f"publish to {subject} failed"):
            ack = await js.publish(subject, message.SerializeToString(), headers=headers)
        span.set_attribute("messaging.nats.duplicate", bool(ack.duplicate))
        return ack
