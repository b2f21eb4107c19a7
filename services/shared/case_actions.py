"""Publishing a CaseAction: an acknowledgement, a resolution or a "not a complaint" answer.

The notifier (acknowledgement links, PagerDuty, its Acknowledge RPC) and the router (its gRPC API and
the CRM callback endpoint) both take answers from people and CRMs; both put them on the
CASE_ACTIONS stream, which the router and the notifier each read through their own durable.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from clamor.v1 import case_pb2
from services.shared import subjects
from services.shared.case_names import action_name, via_value
from services.shared.clock import Clock, system_clock
from services.shared.jetstream import publish
from services.shared.metrics import Metrics

if TYPE_CHECKING:
    from nats.js import JetStreamContext
    from opentelemetry import trace


class CaseActions:
    """Publishes acknowledgements and resolutions for the router and the notifier to act on."""

    def __init__(
        self, js: JetStreamContext, tracer: trace.Tracer, *, clock: Clock = system_clock, metrics: Metrics | None = None
    ) -> None:
        self._js = js
        self._tracer = tracer
        # messaging.client.sent.messages per publish; a no-op meter when none is handed in.
        self._metrics = metrics or Metrics()
        self._clock = clock

    async def publish(
        self,
        case_id: str,
        kind: case_pb2.CaseActionKind.ValueType,
        *,
        actor: str,
        via: str,
        request_id: str,
        note: str = "",
        origin_destination: str = "",
    ) -> str:
        name = action_name(kind)
        action = case_pb2.CaseAction(
            id=f"{case_id}:{name}:{request_id}",
            case_id=case_id,
            kind=kind,
            actor=actor,
            arrived_via=via_value(via),
            note=note,
            origin_destination=origin_destination,
        )
        action.at.FromDatetime(self._clock())
        await publish(
            self._js, self._tracer, subjects.case_action_subject(name), action, msg_id=action.id, metrics=self._metrics
        )
        return action.id
