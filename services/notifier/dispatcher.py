"""The notifier's clock work: sends due groups through their channels, and walks unanswered pages up.

Everything it acts on is in KV (groups, pages, delivery records), so any replica can pick up
where another stopped. The order of every step is chosen so a crash repeats, never loses:

- a group's message is claimed (a lease in the group record), sent, recorded in the delivery
  store, then marked sent in the group. A crash after the send and before the record sends the
  same notification id again: PagerDuty and webhooks fold it by their idempotency keys. A crash
  after the record finds it there and only marks the group.
- a page's next step is queued (stable item id, so a repeat is dropped by the group), then the
  page is moved on with compare-and-set, so two replicas never notify a step twice.

Metrics: every send attempt counts in ``clamor.notifier.notifications`` as ``sent`` or ``failed``
(a failed one is tried again later); a channel that asks us to slow down (``Retry-After``) pauses
its budget and counts a ``clamor.notifier.rate_limit.pauses``; a page moved a step up counts a
``clamor.notifier.pages.reescalated`` in the replica whose compare-and-set moved it. The queue depth
is counted on each tick, on the event loop, and only read by the metrics collector's thread: the
KV mirror is not safe to walk from another thread.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import uuid
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, TypeAlias

from opentelemetry import trace

from clamor.v1 import notification_pb2
from services.notifier import grouping, pages
from services.notifier.config import rate_per_s
from services.notifier.domain import notification_for
from services.notifier.errors import ChannelError
from services.shared.budget import RateBudget
from services.shared.clock import Clock, system_clock
from services.shared.errors import PermanentError, TransientError
from services.shared.metric_catalogue import CHANNEL, CHANNEL_KIND, OUTCOME
from services.shared.telemetry import extract_context, inject_context

if TYPE_CHECKING:
    from collections.abc import Sequence

    from opentelemetry.context import Context

    from services.notifier.channels.base import Channel
    from services.notifier.clients import DeliveryStore, NotificationLog
    from services.notifier.config import ChannelSettings, EscalationPolicy, NotifierSettings
    from services.notifier.message import Message
    from services.shared.kv_state import KvState
    from services.shared.metrics import Attributes
    from services.shared.status import Counters

log = logging.getLogger(__name__)

# A claim outlives the longest send (channel timeouts are at most 120 s).
CLAIM_LEASE_S = 180.0
# Waits after failed sends, by failure count; the last repeats.
RETRY_DELAYS_S = (5.0, 15.0, 60.0, 300.0, 900.0)
# Every queued item rewrites its group's record, so records stay small (and far under NATS's 1 MB
# message limit): a bigger burst spills into more groups, which are due together.
MAX_PENDING_PER_GROUP = 100

Status: TypeAlias = notification_pb2.DeliveryStatus.ValueType


class Dispatcher:
    def __init__(
        self,
        settings: NotifierSettings,
        channels: Sequence[Channel],
        *,
        groups: KvState[grouping.Group],
        pages: KvState[pages.Page],
        deliveries: DeliveryStore,
        log: NotificationLog,
        tracer: trace.Tracer,
        counters: Counters,
        clock: Clock = system_clock,
    ) -> None:
        self._settings = settings
        self._channels = {channel.name: channel for channel in channels}
        self._channel_settings: dict[str, ChannelSettings] = {c.name: c for c in settings.channels}
        self._budgets = {
            c.name: RateBudget(rate_per_s(c), burst=c.burst) for c in settings.channels if c.name in self._channels
        }
        self._groups = groups
        self._pages = pages
        self._deliveries = deliveries
        self._log = log
        self._tracer = tracer
        self._counters = counters
        self._clock = clock
        self._owner = uuid.uuid4().hex
        self._busy: dict[str, asyncio.Task[None]] = {}
        self._ticking = asyncio.Lock()
        self._finished = False
        # Items waiting in groups at the last tick: what the queue-depth gauge reports.
        self._queued = 0

    # ---- queueing -------------------------------------------------------------------------

    async def enqueue(
        self,
        channel: str,
        message: Message,
        *,
        item_id: str,
        cancel_on_ack: bool = False,
        context: Context | None = None,
    ) -> None:
        """Queue ``message`` for ``channel`` in its group; a repeat is logged as a duplicate, not queued."""
        settings = self._channel_settings[channel]
        rules = self._settings.grouping_for(settings)
        key = grouping.group_key(message, rules.group_by)
        now = self._clock()
        carrier: dict[str, str] = {}
        inject_context(carrier, context)
        item = grouping.Item(
            item_id,
            grouping.fingerprint(message),
            message,
            now,
            cancel_on_ack=cancel_on_ack,
            traceparent=carrier.get("traceparent", ""),
        )
        outcome = grouping.Enqueued.QUEUED
        for spill in itertools.count(1):
            spill_key = key if spill == 1 else f"{key}#{spill}"
            seen = self._groups.peek(grouping.group_id(channel, spill_key))
            if (
                seen is not None
                and len(seen.pending) >= MAX_PENDING_PER_GROUP
                and not any(waiting.id == item.id for waiting in seen.pending)
            ):
                continue
            full = False

            def add(group: grouping.Group | None, key: str = spill_key) -> grouping.Group | None:
                nonlocal outcome, full
                waiting = group is not None and any(i.id == item.id for i in group.pending)
                full = group is not None and len(group.pending) >= MAX_PENDING_PER_GROUP and not waiting
                if full:
                    return group
                changed, outcome = grouping.enqueue(
                    group, item, channel=channel, key=key, now=now, repeat_interval_s=rules.repeat_interval_s
                )
                return changed

            await self._groups.change(grouping.group_id(channel, spill_key), add)
            if not full:
                break
        if outcome is grouping.Enqueued.DUPLICATE:
            repeat = replace(message, id=f"{item_id}:{channel}")
            detail = "queued already, or sent unchanged within repeat_interval"
            await self._record(
                repeat, channel, notification_pb2.DELIVERY_STATUS_DUPLICATE, detail=detail, item_ids=[item_id]
            )

    # ---- the clock ------------------------------------------------------------------------
    # The service runs ``tick`` every ``tick_s`` (ServiceRuntime.add_periodic) and ``finish`` as a
    # worker, so a stopping notifier completes the sends it started before NATS is drained.

    async def tick(self) -> None:
        """Advance due pages, then start a sender for every channel with a due group."""
        async with self._ticking:
            if not self._finished:
                await self._tick()

    async def finish(self, stopping: asyncio.Event) -> None:
        """Once ``stopping`` is set: let the tick in progress end, start no other, wait for the senders."""
        await stopping.wait()
        async with self._ticking:
            self._finished = True
        await self.idle()

    async def _tick(self) -> None:
        now = self._clock()
        for page in self._pages.records():
            policy = self._policy(page.policy)
            if policy is not None and (due := pages.due_at(page, policy)) is not None and due <= now:
                await self._advance(page, policy, now)
        groups = self._groups.records()
        self._queued = grouping.queued(groups)
        for group in groups:
            settings = self._channel_settings.get(group.channel)
            if settings is None or group.channel in self._busy:
                continue
            due = grouping.due_at(
                group, self._settings.grouping_for(settings), settings.quiet_hours, now, owner=self._owner
            )
            if due is None:
                continue
            if due > now:
                if not group.held_logged and grouping.held_by_quiet_hours(group, settings.quiet_hours, now):
                    await self._log_held(group, due)
                continue
            self._start_sender(group.channel)

    def _start_sender(self, channel: str) -> None:
        task = asyncio.create_task(self._send_due(channel), name=f"notify-{channel}")
        self._busy[channel] = task

        def done(_: asyncio.Task[None]) -> None:
            self._busy.pop(channel, None)

        task.add_done_callback(done)

    async def idle(self) -> None:
        """Wait for every sender started so far (tests, and shutdown)."""
        while self._busy:
            await asyncio.gather(*self._busy.values(), return_exceptions=True)

    def queue_depth(self) -> list[tuple[float, Attributes]]:
        """The ``clamor.notifier.queue.depth`` gauge's reader: it runs on the collector's thread, so it
        returns the number the last tick counted and touches nothing else."""
        return [(float(self._queued), {})]

    def _policy(self, name: str) -> EscalationPolicy | None:
        return next((policy for policy in self._settings.policies if policy.name == name), None)

    # ---- pages ----------------------------------------------------------------------------

    async def _advance(self, page: pages.Page, policy: EscalationPolicy, now: datetime) -> None:
        moved = pages.advance(page, policy, now)
        if moved is None:
            return
        if moved.state is pages.PageState.OPEN:
            message = pages.step_message(moved, policy)
            for channel in policy.steps[moved.step].notify:
                await self.enqueue(
                    channel, message_for(message, channel), item_id=pages.step_item_id(moved), cancel_on_ack=True
                )
            self._counters.inc("reescalations")
        else:
            log.warning(
                "case %s: every step of policy %s was notified and nobody acknowledged", page.case_id, policy.name
            )

        committed = False

        def commit(current: pages.Page | None) -> pages.Page | None:
            nonlocal committed
            unchanged = current is None or (current.step, current.loop, current.state) != (
                page.step,
                page.loop,
                page.state,
            )
            committed = not unchanged
            return current if unchanged else moved

        await self._pages.change(page.case_id, commit)
        if committed and moved.state is pages.PageState.OPEN:
            self._counters.metrics.add("clamor.notifier.pages.reescalated")

    # ---- sending --------------------------------------------------------------------------

    async def _send_due(self, channel: str) -> None:
        """Send this channel's due groups, one message at a time within its budget, until none is due."""
        try:
            while True:
                now = self._clock()
                settings = self._channel_settings[channel]
                due = [
                    g
                    for g in self._groups.records()
                    if g.channel == channel
                    and (
                        at := grouping.due_at(
                            g, self._settings.grouping_for(settings), settings.quiet_hours, now, owner=self._owner
                        )
                    )
                    and at <= now
                ]
                if not due:
                    return
                progress = [await self._send_next(group.id, channel) for group in due]
                if not any(progress):
                    # Due by the clock but nothing could go (claimed elsewhere, or held): the next tick looks again.
                    return
        except TransientError as exc:
            log.warning("channel %s: %s", channel, exc)
        except Exception:
            # A bug must not end this channel's sending for good: the claim lapses and the group is retried.
            log.exception("channel %s: sending failed", channel)

    async def _send_next(self, group_id: str, channel: str) -> bool:
        """Send the group's next message; False when nothing was sent, cancelled or settled."""
        settings = self._channel_settings[channel]
        rules = self._settings.grouping_for(settings)
        budget = self._budgets[channel]
        await budget.acquire()
        now = self._clock()
        group = await self._groups.change(
            group_id, lambda g: grouping.claim(g, owner=self._owner, now=now, lease_s=CLAIM_LEASE_S)
        )
        if group is None or group.claim is None or group.claim.owner != self._owner:
            return False
        batch = grouping.next_batch(group, settings.quiet_hours, now, max_items=rules.max_items_per_message)
        cancelled = [item for item in batch if item.cancel_on_ack and self._answered(item.message.case_id)]
        if cancelled:
            for item in cancelled:
                await self._record(
                    item.message,
                    channel,
                    notification_pb2.DELIVERY_STATUS_CANCELLED,
                    detail="the case was acknowledged first",
                    item_ids=[item.id],
                )
            await self._groups.change(group_id, lambda g: grouping.drop(g, {i.id for i in cancelled}) if g else None)
            return True
        if not batch:
            await self._groups.change(group_id, lambda g: grouping.drop(g, set()) if g else None)
            return False
        message = grouping.digest(group, batch)
        item_ids = [item.id for item in batch]
        already = await self._deliveries.delivered_items(message.id)
        if already is None:
            status = await self._deliver(message, channel, group, item_ids)
            if status is None:
                return False
        else:
            item_ids = already
        sent_ids = set(item_ids)
        await self._groups.change(
            group_id,
            lambda g: (
                grouping.mark_sent(g, sent_ids, now=self._clock(), repeat_interval_s=rules.repeat_interval_s)
                if g is not None
                else None
            ),
        )
        return True

    async def _deliver(
        self, message: Message, channel: str, group: grouping.Group, item_ids: list[str]
    ) -> Status | None:
        """Send and record; on failure, schedule the retry (or dead-letter) and return None."""
        target = self._channels[channel]
        # The first item's trace is continued; the others are linked, as a batch span links its inputs.
        contexts = [
            extract_context({"traceparent": item.traceparent})
            for item in group.pending
            if item.id in item_ids and item.traceparent
        ]
        links = [trace.Link(span.get_span_context()) for span in map(trace.get_current_span, contexts[1:])]
        with self._tracer.start_as_current_span(
            f"notify {channel}",
            context=contexts[0] if contexts else None,
            links=links,
            attributes={
                "clamor.notification.id": message.id,
                "clamor.mention.id": message.mention_id,
                "clamor.channel.kind": target.kind,
                "clamor.notification.items": len(item_ids),
            },
        ):
            try:
                try:
                    sent = await target.send(message)
                finally:
                    # A channel counts a message when it arrives: the next one waits 1/rate from the reply.
                    self._budgets[channel].answered()
            except ChannelError as exc:
                if exc.retry_after_s is not None:
                    self._budgets[channel].pause(exc.retry_after_s)
                    self._counters.metrics.add("clamor.notifier.rate_limit.pauses", 1, {CHANNEL: channel})
                delay = exc.retry_after_s or RETRY_DELAYS_S[min(group.failures, len(RETRY_DELAYS_S) - 1)]
                await self._failed(message, channel, group, item_ids, detail=str(exc), delay_s=delay)
                return None
            except PermanentError as exc:
                # Retrying cannot help (a revoked token, a deleted channel): say so on every attempt, slowly,
                # and keep the items until the configuration is fixed.
                await self._failed(
                    message, channel, group, item_ids, detail=f"configuration: {exc}", delay_s=RETRY_DELAYS_S[-1]
                )
                return None
            await self._deliveries.record(message.id, sent, item_ids=item_ids)
            await self._record(
                message, channel, notification_pb2.DELIVERY_STATUS_SENT, detail=sent.detail, item_ids=item_ids
            )
        self._counters.inc("notifications")
        self._count(channel, "sent")
        return notification_pb2.DELIVERY_STATUS_SENT

    def _count(self, channel: str, outcome: str) -> None:
        attributes = {CHANNEL: channel, CHANNEL_KIND: self._channels[channel].kind, OUTCOME: outcome}
        self._counters.metrics.add("clamor.notifier.notifications", 1, attributes)

    async def _failed(
        self, message: Message, channel: str, group: grouping.Group, item_ids: list[str], *, detail: str, delay_s: float
    ) -> None:
        log.warning("channel %s could not send %s: %s (next try in %.0f s)", channel, message.id, detail, delay_s)
        retry_at = self._clock() + timedelta(seconds=delay_s)
        # The failure is logged first: a group that keeps changing under a busy consumer may fail the
        # mark below, and the attempt happened all the same (the claim then retries it, within the budget).
        await self._record(message, channel, notification_pb2.DELIVERY_STATUS_FAILED, detail=detail, item_ids=item_ids)
        self._counters.inc("notification_failures")
        self._count(channel, "failed")
        await self._groups.change(group.id, lambda g: grouping.mark_failed(g, retry_at=retry_at) if g else None)

    def _answered(self, case_id: str) -> bool:
        page = self._pages.peek(case_id)
        return page is not None and page.state in (pages.PageState.ACKNOWLEDGED, pages.PageState.RESOLVED)

    async def _log_held(self, group: grouping.Group, until: datetime) -> None:
        def mark(g: grouping.Group | None) -> grouping.Group | None:
            return replace(g, held_logged=True) if g is not None and not g.held_logged else g

        await self._groups.change(group.id, mark)
        for item in group.pending:
            await self._record(
                item.message,
                group.channel,
                notification_pb2.DELIVERY_STATUS_HELD,
                detail=f"quiet hours until {until.isoformat()}",
                item_ids=[item.id],
            )

    async def _record(
        self, message: Message, channel: str, status: Status, *, detail: str, item_ids: list[str]
    ) -> None:
        notification = notification_for(
            message, channel=channel, quote_chars=self._settings.quote_chars, now=self._clock(), status=status
        )
        notification.detail = detail[:500]
        notification.item_ids.extend(item_ids)
        await self._log.record(notification)


def message_for(message: Message, channel: str, *, ack_url: str = "") -> Message:
    """``message`` as one channel receives it: its own idempotency key, and the ack link when there is one."""
    return replace(message, id=f"{message.id}:{channel}", ack_url=ack_url or message.ack_url)
