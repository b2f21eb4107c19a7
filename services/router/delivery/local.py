"""The two destinations that need no CRM: the outbox file and a NATS subject.

Both follow the same contract as the CRM adapters (services/router/delivery/destinations/base.py), so
the delivery worker treats every destination alike: ``create`` is idempotent on the case id,
``update`` sends what changed.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, ClassVar

from services.router.delivery.destinations.base import Destination, Ticket
from services.router.domain import event_record, outbox_record
from services.router.errors import DestinationError
from services.shared import subjects
from services.shared.jetstream import publish
from services.shared.jsonl import IdempotentJsonlFile
from services.shared.metrics import Metrics

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from nats.js import JetStreamContext
    from opentelemetry import trace

    from clamor.v1 import case_pb2


class OutboxDestination(Destination):
    """One JSON line per case, then one per update (``update_of`` names the case), idempotent on ``id``."""

    kind: ClassVar[str] = "outbox"

    def __init__(self, path: Path, *, name: str = "outbox") -> None:
        self.name = name
        self._file = IdempotentJsonlFile(path)

    async def create(self, case: case_pb2.Case) -> Ticket:
        await self._append(outbox_record(case))
        return Ticket(remote_id=case.id)

    async def update(self, case: case_pb2.Case, ticket: Ticket, events: Sequence[case_pb2.CaseEvent]) -> Ticket:
        record = outbox_record(case)
        record.update(
            id=f"{case.id}.{len(case.history)}",
            update_of=case.id,
            events=[event_record(event) for event in events],
        )
        await self._append(record)
        return ticket

    async def _append(self, record: dict[str, object]) -> None:
        await self.spend()
        try:
            # fsync per line: off the event loop.
            await asyncio.to_thread(self._file.append, record)
        except OSError as exc:
            raise DestinationError(f"outbox {self._file.path}: {exc.strerror or exc}") from exc


class NatsDestination(Destination):
    """The case, whole, on ``clamor.routed.<name>`` after every change; Nats-Msg-Id drops repeats."""

    kind: ClassVar[str] = "nats"

    def __init__(
        self, name: str, js: JetStreamContext, tracer: trace.Tracer, *, metrics: Metrics | None = None
    ) -> None:
        self.name = name
        self._js = js
        self._tracer = tracer
        # messaging.client.sent.messages per publish; a no-op meter when none is handed in.
        self._metrics = metrics or Metrics()

    async def create(self, case: case_pb2.Case) -> Ticket:
        # A new case continues the trace of the post that founded it.
        await self._publish(case, mention_id=case.mentions[0].mention.id if case.mentions else "")
        return Ticket(remote_id=case.id)

    async def update(self, case: case_pb2.Case, ticket: Ticket, events: Sequence[case_pb2.CaseEvent]) -> Ticket:
        await self._publish(case, mention_id="")
        return ticket

    async def _publish(self, case: case_pb2.Case, *, mention_id: str) -> None:
        await self.spend()
        await publish(
            self._js,
            self._tracer,
            subjects.routed_subject(self.name),
            case,
            msg_id=f"{case.id}:{self.name}:{len(case.history)}",
            mention_id=mention_id,
            metrics=self._metrics,
        )
