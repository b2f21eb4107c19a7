"""SLA clocks that survive restarts and fire each step once across replicas.

One record per open case with a policy (KV ``router_sla``): the policy's name, when the clock
started, the owning team and the ids of the steps already fired. Every replica mirrors the bucket
and checks it each tick; for a due step it first publishes the escalation (its Nats-Msg-Id is
``<case>:sla:<step>:<team>``, so a second replica's or a restarted replica's publish of the same step
is dropped by JetStream), then records the step as fired by compare-and-set. A crash between the
two repeats the publish, which JetStream drops: no level is skipped and none is sent twice.
Acknowledgement stops the first-response clock, resolution stops both and forgets the record.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from clamor.v1 import router_state_pb2
from services.router.sla import SlaPolicy, SlaStep, due, pending
from services.shared import subjects
from services.shared.kv_state import KvState, MappedCodec

if TYPE_CHECKING:
    from collections.abc import Mapping

    from nats.js import JetStreamContext

log = logging.getLogger(__name__)

# Records of resolved cases are deleted; a record nobody touched for this long (a lost case) expires.
RECORD_TTL_S = 180 * 24 * 3600.0


@dataclass(frozen=True)
class SlaRecord:
    case_id: str
    policy: str
    opened_at: datetime
    team: str
    fired: tuple[str, ...] = field(default=())
    acknowledged: bool = False


def _to_proto(record: SlaRecord) -> router_state_pb2.SlaClockRecord:
    message = router_state_pb2.SlaClockRecord(
        case_id=record.case_id,
        policy=record.policy,
        team=record.team,
        fired=record.fired,
        acknowledged=record.acknowledged,
    )
    message.opened_at.FromDatetime(record.opened_at)
    return message


def _from_proto(message: router_state_pb2.SlaClockRecord) -> SlaRecord:
    return SlaRecord(
        case_id=message.case_id,
        policy=message.policy,
        opened_at=message.opened_at.ToDatetime(tzinfo=UTC),
        team=message.team,
        fired=tuple(message.fired),
        acknowledged=message.acknowledged,
    )


SLA_RECORD_CODEC = MappedCodec(router_state_pb2.SlaClockRecord, to_proto=_to_proto, from_proto=_from_proto)


# Called with the record and the due step; must be idempotent (it publishes with a stable msg id).
StepHandler = Callable[[SlaRecord, SlaStep], Awaitable[None]]


class SlaClocks:
    # The step handler is handed to each tick rather than kept: the router's handler, which
    # escalates steps, also starts and stops clocks, so the clocks are built first and need nothing
    # of it, and no part is patched in after construction.
    def __init__(self, state: KvState[SlaRecord], policies: Mapping[str, SlaPolicy]) -> None:
        self._state = state
        self._policies = policies

    @classmethod
    async def open(cls, js: JetStreamContext, policies: Mapping[str, SlaPolicy], *, replicas: int) -> SlaClocks:
        state = await KvState.open(
            js, subjects.ROUTER_SLA_BUCKET, codec=SLA_RECORD_CODEC, replicas=replicas, ttl_s=RECORD_TTL_S
        )
        return cls(state, policies)

    async def start(self, *, case_id: str, policy: str, opened_at: datetime, team: str) -> None:
        """Start the clock once; a repeated start (a redelivered complaint) keeps the first."""
        if policy not in self._policies:
            log.warning("case %s names SLA policy %r, which is not configured; no clock", case_id, policy)
            return
        record = SlaRecord(case_id=case_id, policy=policy, opened_at=opened_at, team=team)
        await self._state.change(case_id, lambda found: found or record)

    async def acknowledged(self, case_id: str) -> None:
        await self._state.change(case_id, lambda found: replace(found, acknowledged=True) if found else None)

    async def resolved(self, case_id: str) -> None:
        await self._state.delete(case_id)

    def record(self, case_id: str) -> SlaRecord | None:
        return self._state.peek(case_id)

    def steps_left(self, record: SlaRecord) -> list[SlaStep]:
        policy = self._policies.get(record.policy)
        if policy is None:
            return []
        return pending(
            policy,
            opened_at=record.opened_at,
            owner_team=record.team,
            acknowledged=record.acknowledged,
            resolved=False,
            fired=record.fired,
        )

    async def tick(self, now: datetime, on_step: StepHandler) -> int:
        """Fire every due step of every clock through ``on_step``; returns how many this replica fired."""
        fired = 0
        for record in self._state.records():
            for step in due(self.steps_left(record), now):
                fired += await self._fire(record.case_id, step, on_step)
        return fired

    async def _fire(self, case_id: str, step: SlaStep, on_step: StepHandler) -> int:
        # Re-read: the mirror may lag another replica's write, or an acknowledgement.
        found = await self._state.get(case_id)
        if found is None:
            return 0
        record = found[0]
        if step.id in record.fired or step not in self.steps_left(record):
            return 0
        await on_step(record, step)
        await self._state.change(
            case_id, lambda r: replace(r, fired=(*r.fired, step.id)) if r and step.id not in r.fired else r
        )
        return 1

    async def close(self) -> None:
        await self._state.close()
