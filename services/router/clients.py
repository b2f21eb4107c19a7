"""Every outbound call the router makes: case state in KV, the outbox, escalations."""

from __future__ import annotations

from typing import TYPE_CHECKING

from nats.errors import Error as NatsLibraryError
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

from clamor.v1 import case_pb2
from services.router.domain import outbox_record
from services.router.errors import CaseConflictError, DestinationError
from services.shared import subjects
from services.shared.errors import TransientError
from services.shared.jetstream import ensure_bucket, publish
from services.shared.jsonl import IdempotentJsonlFile

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from nats.js import JetStreamContext
    from nats.js.kv import KeyValue
    from opentelemetry import trace
    from opentelemetry.context import Context

CAS_ATTEMPTS = 5


class CaseStore:
    """Cases in JetStream KV; every write is compare-and-set so replicas never overwrite each other."""

    def __init__(self, bucket: KeyValue) -> None:
        self._bucket = bucket

    @classmethod
    async def open(cls, js: JetStreamContext, *, replicas: int) -> CaseStore:
        return cls(await ensure_bucket(js, subjects.CASES_BUCKET, replicas=replicas))

    async def get(self, case_id: str) -> tuple[case_pb2.Case, int] | None:
        try:
            entry = await self._bucket.get(case_id)
        except KeyNotFoundError:
            return None
        except (TimeoutError, NatsLibraryError) as exc:
            raise TransientError(f"cannot read case {case_id}: {exc}") from exc
        case = case_pb2.Case()
        case.ParseFromString(entry.value or b"")
        return case, int(entry.revision or 0)

    async def create_or_get(self, case: case_pb2.Case) -> case_pb2.Case:
        """Store ``case`` if its id is new; otherwise return the stored one (a redelivery)."""
        try:
            await self._bucket.create(case.id, case.SerializeToString())
        except KeyWrongLastSequenceError:
            found = await self.get(case.id)
            if found is None:
                raise CaseConflictError(f"case {case.id} vanished while being created") from None
            return found[0]
        except (TimeoutError, NatsLibraryError) as exc:
            raise TransientError(f"cannot create case {case.id}: {exc}") from exc
        return case

    async def update(self, case_id: str, change: Callable[[case_pb2.Case], bool]) -> case_pb2.Case:
        """Apply ``change`` (which returns False when there is nothing to do) with CAS retries."""
        for _ in range(CAS_ATTEMPTS):
            found = await self.get(case_id)
            if found is None:
                raise CaseConflictError(f"case {case_id} does not exist")
            case, revision = found
            if not change(case):
                return case
            try:
                await self._bucket.update(case_id, case.SerializeToString(), last=revision)
            except KeyWrongLastSequenceError:
                continue
            except (TimeoutError, NatsLibraryError) as exc:
                raise TransientError(f"cannot update case {case_id}: {exc}") from exc
            return case
        raise CaseConflictError(f"case {case_id} kept changing under {CAS_ATTEMPTS} attempts")

    async def list(self, limit: int) -> list[case_pb2.Case]:
        try:
            keys = await self._bucket.keys()
        except NatsLibraryError:
            # nats-py raises NoKeysError for an empty bucket.
            return []
        cases = []
        for key in keys:
            found = await self.get(key)
            if found is not None:
                cases.append(found[0])
        cases.sort(key=lambda c: (c.created_at.seconds, c.created_at.nanos), reverse=True)
        return cases[:limit]


class Outbox:
    """The ``outbox`` destination: one JSON line per case, idempotent on case id."""

    name = "outbox"

    def __init__(self, path: Path) -> None:
        self._file = IdempotentJsonlFile(path)

    def deliver(self, case: case_pb2.Case) -> bool:
        """Returns False when the case was delivered before (nothing written)."""
        try:
            return self._file.append(outbox_record(case))
        except OSError as exc:
            raise DestinationError(f"outbox {self._file.path}: {exc.strerror or exc}") from exc


class EscalationPublisher:
    def __init__(self, js: JetStreamContext, tracer: trace.Tracer) -> None:
        self._js = js
        self._tracer = tracer

    async def publish(self, escalation: case_pb2.Escalation, *, mention_id: str, context: Context) -> None:
        await publish(
            self._js,
            self._tracer,
            subjects.escalation_subject(escalation.team),
            escalation,
            msg_id=escalation.id,
            mention_id=mention_id,
            context=context,
        )
