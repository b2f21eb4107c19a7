"""The loop behind every polled source: schedule, poll, match the watch, publish, remember.

Politeness lives here, the same for every platform: an interval with jitter, the longest wait
the platform's headers ask for (``Retry-After``, rate-limit resets), exponential backoff on
errors, and nothing fetched while paused. State is saved only after every new post is
published, so a crash repeats a poll (dropped by JetStream's ``Nats-Msg-Id`` dedup), never
loses one.

With several listener replicas, a source is polled only by the replica that holds its lease
(``services.listener.lease``): the loop waits for the lease, checks it before every poll, and goes
back to waiting when it is lost. Each poll starts from the state in KV, so a new holder resumes
where the last one stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from opentelemetry import trace

from services.listener.domain import SourceStatus, mention_from_post
from services.listener.errors import NotHolderError
from services.listener.lease import SOLE_REPLICA
from services.listener.source_metrics import SourceMetrics
from services.shared.clock import Clock, system_clock
from services.shared.errors import ClamorError, TransientError

if TYPE_CHECKING:
    from services.listener.clients import AlertPublisher, MentionPublisher, StateStore
    from services.listener.config import HttpSourceSettings, WebhookSourceSettings
    from services.listener.lease import SourceLease
    from services.listener.sources.base import Post, Source
    from services.listener.watch import Watch
    from services.shared.outbound import OutboundClient
    from services.shared.status import Counters

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 3600.0


def next_poll_delay(
    interval_s: float, *, jitter: float, failures: int, asked_s: float | None, rng: random.Random | None = None
) -> float:
    """Seconds until the next poll: the interval with jitter, doubled per failure in a row (capped),
    and never less than the platform asked for."""
    if failures > 0:
        wait = min(interval_s * 2 ** min(failures - 1, 10), MAX_BACKOFF_S)
    else:
        wait = interval_s * (rng or random).uniform(1 - jitter, 1 + jitter)
    return float(max(wait, asked_s or 0.0))


class Emitter:
    """Turns accepted posts into published mentions: watch match, root span, counters, metrics, status."""

    def __init__(
        self,
        source: str,
        platform: str,
        watch_name: str,
        status: SourceStatus,
        *,
        publisher: MentionPublisher,
        watch: Watch | None,
        tracer: trace.Tracer,
        counters: Counters,
        meter: SourceMetrics,
    ) -> None:
        self._source = source
        self._platform = platform
        self._watch_name = watch_name
        self._status = status
        self._publisher = publisher
        self._watch = watch
        self._tracer = tracer
        self._counters = counters
        self._meter = meter

    async def emit(self, post: Post, now: datetime) -> int:
        """Publish ``post`` if it matches the watch; returns 1 when it was new to the stream.

        A post by one of the watch's own handles is published whatever the terms say: a brand's
        reply rarely names the brand, and the router files it in the customer's case.
        """
        self._status.saw(post.created_at)
        own = self._watch is not None and self._watch.is_own(post.author_handle)
        if self._watch is not None and not own and not self._watch.matches(post.text, post.language):
            self._counters.inc("unmatched")
            return 0
        mention = mention_from_post(
            post,
            source=self._source,
            platform=self._platform,
            watch=self._watch_name,
            discovered_at=now,
            own_account=own,
        )
        # The root span of the mention's trace: discovery starts it, every later hop continues it.
        with self._tracer.start_as_current_span(
            f"discover {self._source}",
            context=trace.set_span_in_context(trace.INVALID_SPAN),
            attributes={"clamor.mention.id": mention.id, "clamor.source": self._source},
        ):
            fresh = await self._publisher.publish(mention)
        self._counters.inc("polled")
        self._counters.inc("published" if fresh else "duplicates")
        if own:
            self._counters.inc("own_posts")
        if fresh:
            self._meter.published_new()
        self._status.published += int(fresh)
        return int(fresh)


@dataclass(frozen=True)
class PollOutcome:
    fetched: int
    published: int
    error: str = ""


class SourceRunner:
    """Runs one HTTP source until stopped; ``poll_now``, ``pause`` and ``resume`` steer it."""

    def __init__(
        self,
        settings: HttpSourceSettings,
        source: Source,
        *,
        http: OutboundClient,
        states: StateStore,
        publisher: MentionPublisher,
        alerts: AlertPublisher,
        watch: Watch | None,
        tracer: trace.Tracer,
        counters: Counters,
        dynamic: bool = False,
        first_poll_within_s: float = 5.0,
        lease: SourceLease = SOLE_REPLICA,
        clock: Clock = system_clock,
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._lease = lease
        self._first_poll_within_s = first_poll_within_s
        self.source = source
        self.platform = str(getattr(source, "platform", source.kind))
        self.status = SourceStatus(name=settings.name, kind=source.kind, watch=settings.watch, dynamic=dynamic)
        self._http = http
        self._states = states
        # Its silence is this replica's to report only while it polls the source; a paused one is not silent.
        self._meter = SourceMetrics(
            counters.metrics,
            source=settings.name,
            kind=source.kind,
            clock=clock,
            reporting=lambda: self._lease.held() and not self.status.paused,
        )
        self._emitter = Emitter(
            settings.name,
            self.platform,
            settings.watch,
            self.status,
            publisher=publisher,
            watch=watch,
            tracer=tracer,
            counters=counters,
            meter=self._meter,
        )
        self._alerts = alerts
        self._counters = counters
        self._wake = asyncio.Event()
        # Set by poll_now: the wait that poll asked for, so the schedule restarts from it instead of polling again.
        self._rescheduled_wait: float | None = None
        self._lock = asyncio.Lock()
        # Since when this replica polls the source: silence before that was another replica's to report.
        self._polling_since = clock()
        self._alerted_for: str = ""

    def pause(self) -> None:
        self.status.paused = True

    def resume(self) -> None:
        self.status.paused = False
        self._wake.set()

    async def run(self, stopping: asyncio.Event) -> None:
        while await self._lease.wait_held(stopping):
            await self._poll_while_held(stopping)

    async def _poll_while_held(self, stopping: asyncio.Event) -> None:
        self._polling_since = self._clock()
        self._meter.running()
        # Spread the first polls so a restart or a takeover does not hit every platform at the same instant.
        wait_s = random.uniform(0, min(self.settings.interval_s, self._first_poll_within_s))
        while not stopping.is_set():
            self.status.next_poll_at = self._clock() + timedelta(seconds=wait_s)
            await self._sleep(wait_s, stopping)
            if stopping.is_set():
                return
            if self._rescheduled_wait is not None:
                # A PollNow just polled: count the interval from it rather than polling a second time.
                wait_s, self._rescheduled_wait = self._rescheduled_wait, None
                continue
            if not self._lease.held():
                # Lost: the replica that holds the lease now polls the source, on its own schedule.
                self.status.next_poll_at = None
                return
            if self.status.paused:
                wait_s = self.settings.interval_s
                continue
            outcome, asked_wait = await self._poll_and_publish()
            if asked_wait:
                # The next poll waits at least what the platform asked (next_poll_delay).
                self._meter.rate_limit_wait()
            wait_s = self._next_wait(asked_wait, failed=bool(outcome.error))
            await self._check_health()

    async def poll_now(self) -> PollOutcome:
        """One poll outside the schedule (the gRPC PollNow); runs even while paused.

        Raises :class:`NotHolderError` on a replica that does not hold the source's lease.
        """
        if not self._lease.held():
            holder = self._lease.holder or "none right now"
            raise NotHolderError(f"source {self.settings.name} is polled by another listener replica ({holder})")
        outcome, asked_wait = await self._poll_and_publish()
        self._rescheduled_wait = self._next_wait(asked_wait, failed=bool(outcome.error))
        self._wake.set()
        return outcome

    async def _sleep(self, seconds: float, stopping: asyncio.Event) -> None:
        self._wake.clear()
        stop = asyncio.create_task(stopping.wait())
        wake = asyncio.create_task(self._wake.wait())
        try:
            await asyncio.wait({stop, wake}, timeout=max(seconds, 0.0), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (stop, wake):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def _next_wait(self, asked_wait: float | None, *, failed: bool) -> float:
        return next_poll_delay(
            self.settings.interval_s,
            jitter=self.settings.jitter,
            failures=self.status.consecutive_failures if failed else 0,
            asked_s=asked_wait,
        )

    async def _poll_and_publish(self) -> tuple[PollOutcome, float | None]:
        async with self._lock:
            now = self._clock()
            try:
                state = await self._states.load(self.settings.name)
                since = now - timedelta(hours=self.settings.backfill_hours)
                poll = await self.source.poll(self._http, state, since=since)
                self._meter.seen(len(poll.posts))
                published = 0
                for post in poll.posts:
                    published += await self._emitter.emit(post, now)
                await self._states.save(self.settings.name, poll.state)
            except ClamorError as exc:
                self._meter.polled(exc)
                self._counters.inc("poll_errors")
                self.status.failed(str(exc), now)
                log.warning("source %s: %s", self.settings.name, exc)
                asked = exc.retry_after_s if isinstance(exc, TransientError) else None
                return PollOutcome(fetched=0, published=0, error=str(exc)), asked
            except Exception as exc:
                # A bug stops the source's loop (SourceRegistry logs it); the failed poll still shows by its class.
                self._meter.polled(exc)
                raise
            self._meter.polled()
            self.status.succeeded(now)
            self._counters.inc("polls")
            return PollOutcome(fetched=len(poll.posts), published=published), poll.wait_s

    async def close(self) -> None:
        """The source was removed: give its lease up and close its connections."""
        self._meter.close()
        await self._lease.release()
        await self._http.aclose()

    async def _check_health(self) -> None:
        """Alert once per episode when the source has been silent or failing past its thresholds."""
        if self.status.paused:
            return
        now = self._clock()
        last_good = max(self.status.last_success_at or self._polling_since, self._polling_since)
        silent_s = (now - last_good).total_seconds()
        problem = ""
        if self.status.consecutive_failures >= self.settings.failing_after:
            problem = f"{self.status.consecutive_failures} polls in a row failed; last error: {self.status.last_error}"
        elif silent_s >= self.settings.silent_after_s:
            problem = f"no successful poll for {silent_s / 60:.0f} minutes"
        if not problem:
            self._alerted_for = ""
            return
        episode = f"{last_good.isoformat()}"
        if self._alerted_for == episode:
            return
        try:
            await self._alerts.source_unhealthy(self.settings.name, f"source {self.settings.name}: {problem}")
        except TransientError as exc:
            log.warning("could not raise the health alert of source %s: %s", self.settings.name, exc)
            return
        self._alerted_for = episode
        self._counters.inc("source_alerts")


class PushedSource:
    """A webhook source: posts arrive through the listener's HTTP endpoint instead of a poll."""

    def __init__(
        self,
        settings: WebhookSourceSettings,
        *,
        publisher: MentionPublisher,
        watch: Watch | None,
        tracer: trace.Tracer,
        counters: Counters,
        clock: Clock = system_clock,
    ) -> None:
        self.settings = settings
        self._clock = clock
        self.status = SourceStatus(name=settings.name, kind=settings.kind, watch=settings.watch)
        # Every replica serves pushed posts, so each reports the silence it sees (a paused source is not silent).
        self._meter = SourceMetrics(
            counters.metrics,
            source=settings.name,
            kind=settings.kind,
            clock=clock,
            reporting=lambda: not self.status.paused,
        )
        self._emitter = Emitter(
            settings.name,
            settings.platform,
            settings.watch,
            self.status,
            publisher=publisher,
            watch=watch,
            tracer=tracer,
            counters=counters,
            meter=self._meter,
        )

    def pause(self) -> None:
        self.status.paused = True

    def resume(self) -> None:
        self.status.paused = False

    async def run(self, stopping: asyncio.Event) -> None:
        await stopping.wait()

    async def accept(self, posts: list[Post]) -> int:
        """Publish pushed posts; a TransientError makes the endpoint answer 503 so the sender retries."""
        if self.status.paused:
            raise TransientError(f"source {self.settings.name} is paused")
        self._meter.seen(len(posts))
        now = self._clock()
        published = 0
        try:
            for post in posts:
                published += await self._emitter.emit(post, now)
        except TransientError as exc:
            self.status.failed(str(exc), now)
            raise
        self.status.succeeded(now)
        return published
