"""Deliveries that gave up, read back from the DEAD_LETTERS stream and replayed on request.

The delivery consumer dead-letters to ``clamor.dlq.delivery`` with the original CaseDelivery as
the body and the error, subject and attempt count in headers. A replay queues a fresh
CaseDelivery (a new retry period from now), re-enables a destination a 410 had disabled, and
only then deletes the dead letter: a crash in between leaves a dead letter that was also
replayed, and the replayed sync finds nothing new to send the second time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from google.protobuf.message import DecodeError
from nats.errors import Error as NatsLibraryError
from nats.js.errors import NotFoundError

from clamor.v1 import case_pb2, router_service_pb2
from services.shared import subjects
from services.shared.clock import Clock, system_clock
from services.shared.errors import map_exceptions
from services.shared.jetstream import NATS_FAILURES, publish
from services.shared.metrics import Metrics

if TYPE_CHECKING:
    from collections.abc import Collection

    from nats.js import JetStreamContext
    from opentelemetry import trace

    from services.router.delivery.worker import Disabled
    from services.shared.kv_state import KvState

log = logging.getLogger(__name__)

DEAD_LETTER_SUBJECT = subjects.ROUTER_DELIVERY_CONSUMER.dead_letter_subject
# Dead letters read per call at most: a list beyond this is a backlog to replay, not to read.
SCAN_LIMIT = 10_000


@dataclass(frozen=True)
class DeadDelivery:
    info: router_service_pb2.DeadLetter
    job: case_pb2.CaseDelivery


class DeadLetters:
    def __init__(
        self,
        js: JetStreamContext,
        tracer: trace.Tracer,
        disabled: KvState[Disabled],
        *,
        clock: Clock = system_clock,
        metrics: Metrics | None = None,
    ) -> None:
        self._js = js
        self._tracer = tracer
        # messaging.client.sent.messages per publish; a no-op meter when none is handed in.
        self._metrics = metrics or Metrics()
        self._disabled = disabled
        self._clock = clock

    async def page(self, *, destination: str = "", size: int, after: int = 0) -> tuple[list[DeadDelivery], int]:
        """Up to ``size`` dead letters from stream sequence ``after`` on (0: the oldest), oldest first.

        Also returns the sequence the next page starts at, 0 when there are no more.
        """
        found: list[DeadDelivery] = []
        seq = max(after, 1)
        for _ in range(SCAN_LIMIT):
            with map_exceptions(NATS_FAILURES, "cannot read dead letters"):
                try:
                    raw = await self._js.get_msg(
                        subjects.DEAD_LETTERS.name, seq=seq, subject=DEAD_LETTER_SUBJECT, next=True
                    )
                except NotFoundError:
                    return found, 0
            seq = int(raw.seq or seq) + 1
            dead = _decode(raw.seq or 0, raw.data or b"", raw.headers or {}, raw.time)
            if dead is not None and (not destination or dead.job.destination == destination):
                found.append(dead)
                if len(found) >= size:
                    break
        # A full page, or a scan cut short: the next page reads on from here.
        return found, seq

    async def list(self, *, destination: str = "", limit: int = 100) -> list[DeadDelivery]:
        """The oldest ``limit`` dead letters (of ``destination``, when given)."""
        found, _ = await self.page(destination=destination, size=limit)
        return found

    async def replay(self, *, destination: str = "", sequences: Collection[int] = ()) -> int:
        wanted = set(sequences)
        dead = await self.list(destination=destination, limit=SCAN_LIMIT)
        replayed = 0
        now = self._clock()
        for item in dead:
            if wanted and item.info.sequence not in wanted:
                continue
            job = case_pb2.CaseDelivery(
                id=f"replay:{item.info.sequence}:{item.job.id}",
                case_id=item.job.case_id,
                destination=item.job.destination,
                reason="replay",
            )
            job.requested_at.FromDatetime(now)
            if self._disabled.peek(job.destination) is not None:
                await self._disabled.delete(job.destination)
                log.warning("destination %s re-enabled by a replay of its dead letters", job.destination)
            await publish(
                self._js,
                self._tracer,
                subjects.delivery_subject(job.destination),
                job,
                msg_id=job.id,
                metrics=self._metrics,
            )
            try:
                await self._js.delete_msg(subjects.DEAD_LETTERS.name, item.info.sequence)
            except (TimeoutError, NatsLibraryError) as exc:
                log.warning("replayed dead letter %d but could not delete it: %s", item.info.sequence, exc)
            replayed += 1
        return replayed


def _decode(seq: int, data: bytes, headers: dict[str, str], at: object) -> DeadDelivery | None:
    job = case_pb2.CaseDelivery()
    try:
        job.ParseFromString(data)
    except DecodeError:
        log.warning("dead letter %d is not a CaseDelivery; skipped", seq)
        return None
    info = router_service_pb2.DeadLetter(
        sequence=seq,
        destination=job.destination,
        case_id=job.case_id,
        # nats-py parses headers with email's parser: a non-ASCII value comes back as a Header object.
        error=str(headers.get(subjects.DLQ_ERROR_HEADER, "")),
        attempts=int(str(headers.get(subjects.DLQ_DELIVERIES_HEADER, "0")) or 0),
    )
    info.first_attempt_at.CopyFrom(job.requested_at)
    stored = _stream_time(at)
    if stored is not None:
        info.dead_at.FromDatetime(stored)
    return DeadDelivery(info, job)


def _stream_time(value: object) -> datetime | None:
    """When the stream stored the dead letter: nats-py gives a datetime, or an RFC 3339 string with nanoseconds."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str) or not value:
        return None
    whole, _, fraction = value.rstrip("Z").partition(".")
    try:
        return datetime.fromisoformat(f"{whole}.{(fraction or '0')[:6]:0<6}+00:00")
    except ValueError:
        return None
