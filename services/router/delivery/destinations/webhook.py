"""Any HTTP endpoint: one CloudEvents 1.0 event per create or update, signed per Standard Webhooks.

The body is a structured-mode CloudEvent (``application/cloudevents+json``) of type
``io.clamor.case.created`` or ``io.clamor.case.updated`` whose ``subject`` is the case id and
whose ``data`` is the case in protobuf's JSON mapping (field names as in the .proto, enums by
name); an update's ``data`` also holds the new ``events``. It is data, not markup: nothing is
escaped or cut, and the receiver must treat every text field as untrusted.

Idempotency is the receiver's, by the Standard Webhooks ``webhook-id``, which is the same on
every retry of one delivery: ``<case id>.created`` for the create, ``<case id>.<history length>``
for an update, so a receiver drops repeats while every later update still arrives. A create
repeated after its answer was lost is such a repeat, whatever posts joined the case meanwhile, so
``create`` never claims to have made the receiver's record (``created=False``): the worker then
sends what the first create may have lacked as an update. The event's
``time`` comes from the case too (creation, or the last event), so a retried body is identical;
only ``webhook-timestamp`` and the signatures are fresh. Each configured secret adds a signature,
so keys rotate without downtime.

A 3xx is a failure (a signed body goes only to the configured URL), 410 Gone disables the
destination, and ``create`` returns the case id as the remote id: the receiver keeps its own.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from services.router.delivery.destinations.base import DestinationRejectedError, HttpDestination, Ticket
from services.router.delivery.destinations.render import rfc3339
from services.router.delivery.destinations.settings import WebhookDestinationSettings
from services.router.domain import case_record, event_record
from services.shared.clock import Clock, system_clock
from services.shared.standard_webhooks import sign

if TYPE_CHECKING:
    from collections.abc import Sequence

    from clamor.v1 import case_pb2
    from services.shared.outbound import OutboundClient

CONTENT_TYPE = "application/cloudevents+json"
SOURCE = "clamor/router"
CREATED = "io.clamor.case.created"
UPDATED = "io.clamor.case.updated"


def created_id(case: case_pb2.Case) -> str:
    return f"{case.id}.created"


def updated_id(case: case_pb2.Case) -> str:
    # The history only grows, so its length names this update and no other.
    return f"{case.id}.{len(case.history)}"


def cloud_event(
    case: case_pb2.Case, *, event_id: str, event_type: str, at: str, events: Sequence[case_pb2.CaseEvent] | None = None
) -> dict[str, Any]:
    data: dict[str, Any] = case_record(case)
    if events is not None:
        data["events"] = [event_record(event) for event in events]
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": SOURCE,
        "type": event_type,
        "subject": case.id,
        "time": at,
        "datacontenttype": "application/json",
        "data": data,
    }


class WebhookDestination(HttpDestination[WebhookDestinationSettings]):
    kind: ClassVar[str] = "webhook"

    def __init__(
        self,
        settings: WebhookDestinationSettings,
        *,
        http: OutboundClient | None = None,
        clock: Clock = system_clock,
    ) -> None:
        super().__init__(settings, http=http, clock=clock)

    def _secrets(self) -> tuple[str, ...]:
        # The URL too: webhook URLs often carry a token in their path or query.
        return (self.settings.url, *self.settings.secrets)

    async def create(self, case: case_pb2.Case) -> Ticket:
        await self._post(case, event_id=created_id(case), event_type=CREATED, events=None)
        return Ticket(remote_id=case.id)

    async def update(self, case: case_pb2.Case, ticket: Ticket, events: Sequence[case_pb2.CaseEvent]) -> Ticket:
        await self._post(case, event_id=updated_id(case), event_type=UPDATED, events=events)
        return ticket

    def _time(self, case: case_pb2.Case, events: Sequence[case_pb2.CaseEvent] | None, now: int) -> str:
        stamps = [events[-1].at] if events else []
        stamps += [case.updated_at] if events is not None else [case.created_at]
        for stamp in stamps:
            if text := rfc3339(stamp):
                return text
        return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    async def _post(
        self, case: case_pb2.Case, *, event_id: str, event_type: str, events: Sequence[case_pb2.CaseEvent] | None
    ) -> None:
        what = f"{event_type.rsplit('.', 1)[-1]} event for case {case.id}"
        # Whole seconds: the signature's timestamp and the event's time must agree.
        now = int(self._clock().timestamp())
        event = cloud_event(
            case, event_id=event_id, event_type=event_type, at=self._time(case, events, now), events=events
        )
        body = json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode()
        try:
            signed = sign(self.settings.secrets, event_id, now, body)
        except ValueError as exc:
            # A case id with whitespace cannot travel in webhook-id: retrying cannot help.
            raise DestinationRejectedError(f"{self._describe(what)}: {exc}") from None
        headers = {"Content-Type": CONTENT_TYPE} | signed
        await self.request("POST", self.settings.url, what=what, headers=headers, content=body)
