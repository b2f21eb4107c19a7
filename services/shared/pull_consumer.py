"""The durable pull-consumer loop every service uses.

Exactly one outcome per message, chosen by error class:

- success → ``ack``;
- :class:`TransientError` (or any unexpected exception) → ``nak(delay)`` with a growing delay,
  until the last allowed delivery, when the message is dead-lettered like a poison message;
- :class:`PermanentError` or an undecodable payload → a copy goes to the stage's dead-letter
  subject first, then ``term``.

Slow work keeps its messages alive with ``in_progress`` heartbeats. Each message gets a
``process <subject>`` CONSUMER span whose parent is the producer's context from the headers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from google.protobuf.message import DecodeError, Message
from nats.errors import Error as NatsLibraryError
from nats.errors import TimeoutError as NatsTimeoutError
from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode

from services.shared import metric_catalogue as m
from services.shared import subjects
from services.shared.errors import PermanentError, TransientError
from services.shared.jetstream import ensure_consumer
from services.shared.telemetry import extract_context, inject_context

if TYPE_CHECKING:
    from nats.aio.msg import Msg
    from nats.js import JetStreamContext
    from opentelemetry.context import Context

    from services.shared.status import Counters

log = logging.getLogger(__name__)

PayloadT = TypeVar("PayloadT", bound=Message)


@dataclass
class Delivery(Generic[PayloadT]):
    """One decoded message, with the trace context its handler should continue."""

    msg: Msg
    payload: PayloadT
    span: Span
    context: Context
    mention_id: str
    attempt: int


# A batch handler returns one outcome per delivery, in order: None for success, else the error.
BatchHandler = Callable[[Sequence[Delivery[PayloadT]]], Awaitable[Sequence[BaseException | None]]]
MessageHandler = Callable[[Delivery[PayloadT]], Awaitable[None]]


def one_at_a_time(handler: MessageHandler[PayloadT]) -> BatchHandler[PayloadT]:
    """Adapt a per-message handler: messages run in order, each failure stays with its message."""

    async def handle(batch: Sequence[Delivery[PayloadT]]) -> list[BaseException | None]:
        outcomes: list[BaseException | None] = []
        for delivery in batch:
            try:
                await handler(delivery)
            except Exception as exc:
                outcomes.append(exc)
            else:
                outcomes.append(None)
        return outcomes

    return handle


def concurrently(handler: MessageHandler[PayloadT]) -> BatchHandler[PayloadT]:
    """Adapt a per-message handler whose messages are independent: the batch runs at once."""

    async def handle(batch: Sequence[Delivery[PayloadT]]) -> list[BaseException | None]:
        results = await asyncio.gather(*(handler(delivery) for delivery in batch), return_exceptions=True)
        outcomes: list[BaseException | None] = []
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, Exception):
                raise result  # cancellation and the like stop the consumer, as in one_at_a_time
            outcomes.append(result if isinstance(result, Exception) else None)
        return outcomes

    return handle


class PullConsumer(Generic[PayloadT]):
    """Fetches batches from one durable consumer and settles every message exactly once."""

    def __init__(
        self,
        js: JetStreamContext,
        spec: subjects.ConsumerSpec,
        *,
        payload_type: type[PayloadT],
        handler: BatchHandler[PayloadT],
        tracer: trace.Tracer,
        counters: Counters,
        batch_size: int = 16,
        fetch_wait_s: float = 1.0,
    ) -> None:
        self.spec = spec
        self._js = js
        self._payload_type = payload_type
        self._handler = handler
        self._tracer = tracer
        self._counters = counters
        self._batch_size = batch_size
        self._fetch_wait_s = fetch_wait_s
        self._stopping = asyncio.Event()
        self._in_flight: list[Msg] = []
        self._subscription: JetStreamContext.PullSubscription | None = None

    @property
    def readiness_condition(self) -> str:
        return f"consumer:{self.spec.durable}"

    async def bind(self) -> None:
        """Create or update the durable consumer and bind a pull subscription to it."""
        await ensure_consumer(self._js, self.spec)
        self._subscription = await self._js.pull_subscribe_bind(self.spec.durable, stream=self.spec.stream)

    async def run(self) -> None:
        """Fetch and handle batches until :meth:`stop`; NATS outages are waited out, not fatal."""
        if self._subscription is None:
            await self.bind()
        assert self._subscription is not None
        while not self._stopping.is_set():
            try:
                msgs = await self._subscription.fetch(self._batch_size, timeout=self._fetch_wait_s)
            except (NatsTimeoutError, TimeoutError):
                # An empty fetch: nats-py raises its own TimeoutError or asyncio's, depending on where it waited.
                continue
            except (NatsLibraryError, OSError) as exc:
                log.warning("fetch from %s failed: %s", self.spec.durable, str(exc) or type(exc).__name__)
                await asyncio.sleep(1.0)
                continue
            self._in_flight = list(msgs)
            try:
                await self._process(msgs)
            finally:
                self._in_flight = []

    def stop(self) -> None:
        """Stop fetching; the batch in hand is finished by :meth:`run` before it returns."""
        self._stopping.set()

    async def close(self) -> None:
        """Drop the pull subscription; its inbox would otherwise hold up ``nc.drain()``."""
        if self._subscription is not None:
            with contextlib.suppress(Exception):
                await self._subscription.unsubscribe()
            self._subscription = None

    async def nak_in_flight(self) -> None:
        """Hand unfinished messages back at once (used when the shutdown grace runs out)."""
        for msg in self._in_flight:
            with contextlib.suppress(Exception):
                await msg.nak()

    async def _process(self, msgs: Sequence[Msg]) -> None:
        deliveries: list[Delivery[PayloadT]] = []
        for msg in msgs:
            delivery = await self._open(msg)
            if delivery is not None:
                deliveries.append(delivery)
        if not deliveries:
            return
        heartbeat = asyncio.create_task(self._heartbeat([d.msg for d in deliveries]))
        # A duration, not a point in time: the monotonic counter, not the injected clock.
        started = time.perf_counter()
        try:
            outcomes = await self._run_handler(deliveries)
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
        elapsed = time.perf_counter() - started
        for delivery, outcome in zip(deliveries, outcomes, strict=True):
            # Logs written while settling carry the message's trace and span ids.
            with trace.use_span(delivery.span, end_on_exit=False):
                await self._settle(delivery, outcome)
            self._record(outcome, elapsed)

    def _record(self, outcome: BaseException | None, elapsed_s: float) -> None:
        """One consumed message (handled together with its batch in ``elapsed_s``)."""
        attributes: dict[str, str] = {
            m.SYSTEM: "nats",
            m.OPERATION: "process",
            m.DESTINATION: self.spec.stream,
            m.CONSUMER_GROUP: self.spec.durable,
        }
        if outcome is not None:
            attributes[m.ERROR_TYPE] = type(outcome).__name__
        metrics = self._counters.metrics
        metrics.add("messaging.client.consumed.messages", 1, attributes)
        metrics.record("messaging.process.duration", elapsed_s, attributes)

    async def _run_handler(self, deliveries: list[Delivery[PayloadT]]) -> Sequence[BaseException | None]:
        try:
            outcomes = await self._handler(deliveries)
        except Exception as exc:
            # A failure of the whole batch is every message's failure.
            return [exc] * len(deliveries)
        if len(outcomes) != len(deliveries):
            error = RuntimeError(f"handler returned {len(outcomes)} outcomes for {len(deliveries)} messages")
            return [error] * len(deliveries)
        return outcomes

    async def _open(self, msg: Msg) -> Delivery[PayloadT] | None:
        headers = msg.headers or {}
        mention_id = headers.get(subjects.MENTION_ID_HEADER, "")
        attempt = msg.metadata.num_delivered or 1
        span = self._tracer.start_span(
            f"process {msg.subject}",
            context=extract_context(headers),
            kind=trace.SpanKind.CONSUMER,
            attributes={
                "messaging.system": "nats",
                "messaging.operation.type": "process",
                "messaging.destination.name": msg.subject,
                "messaging.consumer.group.name": self.spec.durable,
                "messaging.message.id": headers.get(subjects.MSG_ID_HEADER, ""),
                "messaging.nats.delivery_count": attempt,
                "clamor.mention.id": mention_id,
            },
        )
        context = trace.set_span_in_context(span)
        payload = self._payload_type()
        try:
            payload.ParseFromString(msg.data)
        except DecodeError as exc:
            delivery = Delivery(msg, payload, span, context, mention_id, attempt)
            error = PermanentError(f"undecodable {self._payload_type.__name__}: {exc}")
            with trace.use_span(span, end_on_exit=False):
                await self._dead_letter(delivery, error)
            self._record(error, 0.0)
            return None
        return Delivery(msg, payload, span, context, mention_id, attempt)

    async def _settle(self, delivery: Delivery[PayloadT], outcome: BaseException | None) -> None:
        try:
            if outcome is None:
                await delivery.msg.ack()
                self._counters.inc("acked")
                delivery.span.end()
                return
            if isinstance(outcome, PermanentError) or delivery.attempt >= self.spec.max_deliver:
                await self._dead_letter(delivery, outcome)
                return
            delays = self.spec.nak_delays_s
            delay = delays[min(delivery.attempt - 1, len(delays) - 1)]
            # A downstream that said when to come back (429 Retry-After) is not asked sooner.
            if isinstance(outcome, TransientError) and outcome.retry_after_s is not None:
                delay = max(delay, outcome.retry_after_s)
            log.warning(
                "%s: delivery %d of %s failed, retrying in %.0fs: %s",
                self.spec.durable,
                delivery.attempt,
                delivery.msg.subject,
                delay,
                outcome,
            )
            await delivery.msg.nak(delay=delay)
            self._counters.inc("retried")
            delivery.span.set_status(Status(StatusCode.ERROR, str(outcome)))
            delivery.span.end()
        except (NatsLibraryError, OSError) as exc:
            # The ack or nak itself failed: the server redelivers after ack_wait, nothing is lost.
            log.warning("%s: could not settle message: %s", self.spec.durable, exc)
            delivery.span.end()

    async def _dead_letter(self, delivery: Delivery[PayloadT], error: BaseException) -> None:
        """Copy the message to the dead-letter subject, then terminate it; never drop silently."""
        msg = delivery.msg
        meta = msg.metadata
        headers = {k: v for k, v in (msg.headers or {}).items() if k != subjects.MSG_ID_HEADER}
        headers.update(
            {
                subjects.MSG_ID_HEADER: f"dlq:{meta.stream}:{meta.sequence.stream}",
                subjects.DLQ_SUBJECT_HEADER: msg.subject,
                subjects.DLQ_STREAM_SEQ_HEADER: str(meta.sequence.stream),
                subjects.DLQ_DELIVERIES_HEADER: str(delivery.attempt),
                # ASCII only: header values travel raw, and readers' parsers mangle anything else.
                subjects.DLQ_ERROR_HEADER: f"{type(error).__name__}: {error}"[:1000]
                .encode("ascii", "backslashreplace")
                .decode("ascii"),
            }
        )
        inject_context(headers, delivery.context)
        try:
            await self._js.publish(self.spec.dead_letter_subject, msg.data, headers=headers)
        except (TimeoutError, NatsLibraryError, OSError) as exc:
            # Without the copy the message must not be terminated: retry it later instead.
            log.warning("%s: could not dead-letter %s, retrying later: %s", self.spec.durable, msg.subject, exc)
            with contextlib.suppress(Exception):
                await msg.nak(delay=self.spec.nak_delays_s[-1])
            delivery.span.end()
            return
        try:
            await msg.term()
        except (NatsLibraryError, OSError) as exc:
            # The copy is kept: a redelivery is dead-lettered again, and its copy's Nats-Msg-Id drops the repeat.
            log.warning("%s: dead-lettered %s but could not terminate it: %s", self.spec.durable, msg.subject, exc)
        self._counters.inc("dead_lettered")
        self._counters.metrics.add(
            "clamor.messages.dead_lettered", 1, {m.STAGE: self.spec.durable, m.ERROR_TYPE: type(error).__name__}
        )
        log.error(
            "%s: dead-lettered %s (stream seq %d) after %d deliveries: %s",
            self.spec.durable,
            msg.subject,
            meta.sequence.stream,
            delivery.attempt,
            error,
        )
        delivery.span.set_status(Status(StatusCode.ERROR, f"dead-lettered: {error}"))
        delivery.span.end()

    async def _heartbeat(self, msgs: Sequence[Msg]) -> None:
        """Tell the server the batch is still being worked on, well within ack_wait."""
        interval = max(self.spec.ack_wait_s / 3, 0.5)
        while True:
            await asyncio.sleep(interval)
            for msg in msgs:
                with contextlib.suppress(Exception):
                    await msg.in_progress()


# (durable, payload type, batch handler, batch size): what a service runs, as ``Router.consumers()`` lists it.
ConsumerWiring = tuple[subjects.ConsumerSpec, type[Message], BatchHandler[Any], int]


class ConsumerSet:
    """Several durables run as tasks of the current event loop, for tests and benchmarks.

    A service runs its consumers through ``ServiceRuntime`` (readiness, shutdown grace); this is the
    same loop without the process around it, so harnesses do not each write it again.
    """

    def __init__(self, js: JetStreamContext, consumers: list[PullConsumer[Any]]) -> None:
        self._js = js
        self.consumers = consumers
        self._tasks = [asyncio.create_task(c.run()) for c in consumers]

    @classmethod
    async def start(
        cls,
        js: JetStreamContext,
        wiring: Sequence[ConsumerWiring],
        *,
        tracer: trace.Tracer,
        counters: Counters,
        fetch_wait_s: float = 0.2,
    ) -> ConsumerSet:
        consumers: list[PullConsumer[Any]] = []
        for spec, payload_type, handler, batch_size in wiring:
            consumer: PullConsumer[Any] = PullConsumer(
                js,
                spec,
                payload_type=payload_type,
                handler=handler,
                tracer=tracer,
                counters=counters,
                batch_size=batch_size,
                fetch_wait_s=fetch_wait_s,
            )
            await consumer.bind()
            consumers.append(consumer)
        return cls(js, consumers)

    async def pending(self) -> int:
        """Messages the consumers have not acknowledged yet."""
        infos = [await self._js.consumer_info(c.spec.stream, c.spec.durable) for c in self.consumers]
        return sum(int(i.num_pending or 0) + int(i.num_ack_pending or 0) for i in infos)

    async def settle(self, timeout_s: float = 15.0) -> None:
        """Wait until every consumer has acknowledged everything published so far."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while await self.pending():
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"consumers still hold {await self.pending()} messages after {timeout_s:g}s")
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        for consumer in self.consumers:
            consumer.stop()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for consumer in self.consumers:
            await consumer.close()
