"""The notifier's JetStream handlers: escalations and alerts are queued, case actions answer pages.

A handler only queues (into the channel groups in KV) and opens or answers pages; the
dispatcher sends later. Queueing is idempotent by item id, so a redelivered escalation queues
nothing twice, and the message is acknowledged only once everything it caused is in KV.

An acknowledgement that moves a page counts in ``clamor.notifier.pages.acknowledged`` by the way it
came back (``link``, ``grpc``, ``pagerduty``, ``crm``: the channel the responder answered through),
and its time from the page's opening, by the page record and the injected clock, in
``clamor.notifier.ack.duration``. Only the write that moved the page counts: a redelivered or
repeated acknowledgement finds it answered.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING

from clamor.v1 import case_pb2
from services.notifier import pages
from services.notifier.dispatcher import message_for
from services.notifier.message import Message, message_from_alert, message_from_escalation
from services.shared.case_names import via_name
from services.shared.clock import Clock, system_clock
from services.shared.metric_catalogue import CHANNEL

if TYPE_CHECKING:
    from collections.abc import Sequence

    from clamor.v1 import alert_pb2
    from services.notifier.ack_links import AckLinks
    from services.notifier.channels.base import Channel
    from services.notifier.config import NotifierSettings
    from services.notifier.dispatcher import Dispatcher
    from services.shared.kv_state import KvState
    from services.shared.pull_consumer import Delivery
    from services.shared.status import Counters

log = logging.getLogger(__name__)

ANSWERS = {
    case_pb2.CASE_ACTION_KIND_ACKNOWLEDGE: pages.PageState.ACKNOWLEDGED,
    case_pb2.CASE_ACTION_KIND_RESOLVE: pages.PageState.RESOLVED,
    # "Not a complaint" closes the case: nobody needs to be paged about it any more.
    case_pb2.CASE_ACTION_KIND_NOT_A_COMPLAINT: pages.PageState.RESOLVED,
}


class NotifyHandler:
    def __init__(
        self,
        settings: NotifierSettings,
        channels: Sequence[Channel],
        *,
        dispatcher: Dispatcher,
        pages: KvState[pages.Page],
        links: AckLinks | None,
        counters: Counters,
        clock: Clock = system_clock,
    ) -> None:
        self._settings = settings
        self._channels = {channel.name: channel for channel in channels}
        self._dispatcher = dispatcher
        self._pages = pages
        self._links = links
        self._counters = counters
        self._clock = clock

    def _ack_url(self, case_id: str) -> str:
        return self._links.url_for(case_id, now=self._clock()) if self._links is not None else ""

    async def on_escalation(self, delivery: Delivery[case_pb2.Escalation]) -> None:
        escalation = delivery.payload
        message = message_from_escalation(escalation)
        case_id = escalation.case.id
        policy = pages.policy_for(escalation.team, self._settings.policies)
        if policy is None:
            targets = list(self._channels)
        else:
            now = self._clock()
            before = await self._pages.get(case_id)
            page = await self._pages.change(
                case_id, lambda p: pages.open_page(p, case_id=case_id, policy=policy.name, message=message, now=now)
            )
            # A redelivered escalation goes where it went first (the groups drop it as a repeat); a new
            # one for the same case (the router's next SLA level) goes to whoever holds the case now.
            first_or_repeat = before is None or before[0].message.id == message.id
            step = 0 if first_or_repeat or page is None or page.state is not pages.PageState.OPEN else page.step
            targets = policy.steps[min(step, len(policy.steps) - 1)].notify
        ack_url = self._ack_url(case_id)
        for channel in targets:
            await self._dispatcher.enqueue(
                channel, message_for(message, channel, ack_url=ack_url), item_id=escalation.id, context=delivery.context
            )
        self._counters.inc("escalations")

    async def on_alert(self, delivery: Delivery[alert_pb2.Alert]) -> None:
        alert = delivery.payload
        message = message_from_alert(alert)
        for channel in self._settings.alert_channels or list(self._channels):
            await self._dispatcher.enqueue(
                channel, message_for(message, channel), item_id=alert.id, context=delivery.context
            )
        self._counters.inc("alerts")

    async def on_action(self, delivery: Delivery[case_pb2.CaseAction]) -> None:
        """An acknowledgement or resolution: stop the page, and tell the paging services that did not tell us."""
        action = delivery.payload
        state = ANSWERS.get(action.kind)
        if state is None:
            log.warning("case action %s has no kind; ignored", action.id)
            return
        found = await self._pages.get(action.case_id)
        page = found[0] if found is not None else None
        via = via_name(action.arrived_via)
        if page is not None and pages.answer(page, state, actor=action.actor, via=via, now=self._clock()) is page:
            return
        if action.arrived_via != case_pb2.CASE_ACTION_VIA_PAGERDUTY:
            await self._tell_paging_services(action.case_id, page, state)
        now = self._clock()
        acknowledged: pages.Page | None = None

        def answer(current: pages.Page | None) -> pages.Page | None:
            nonlocal acknowledged
            answered = pages.answer(current, state, actor=action.actor, via=via, now=now)
            acknowledged = answered if pages.acknowledged(current, answered) else None
            return answered

        await self._pages.change(action.case_id, answer)
        self._counters.inc("acknowledgements" if state is pages.PageState.ACKNOWLEDGED else "resolutions")
        if acknowledged is not None:
            self._count_acknowledgement(acknowledged)

    def _count_acknowledgement(self, page: pages.Page) -> None:
        metrics = self._counters.metrics
        metrics.add("clamor.notifier.pages.acknowledged", 1, {CHANNEL: page.via or "unknown"})
        seconds = pages.time_to_acknowledge(page)
        if seconds is not None:
            metrics.record("clamor.notifier.ack.duration", seconds)

    async def _tell_paging_services(self, case_id: str, page: pages.Page | None, state: pages.PageState) -> None:
        """PagerDuty keeps its own incident per case: acknowledge or resolve it too (idempotent there)."""
        policy = next((p for p in self._settings.policies if page is not None and p.name == page.policy), None)
        names = {name for step in policy.steps for name in step.notify} if policy is not None else set(self._channels)
        message = (
            page.message if page is not None else Message(id=case_id, kind="escalation", title="", case_id=case_id)
        )
        message = message if message.dedup_key else replace(message, dedup_key=f"clamor-case-{case_id}")
        for name in sorted(names):
            channel = self._channels[name]
            target = message_for(message, name)
            if state is pages.PageState.ACKNOWLEDGED:
                await channel.acknowledge(target)
            else:
                await channel.resolve(target)
