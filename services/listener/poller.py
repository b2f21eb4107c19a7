"""The replay source's loop: read a JSON-lines file, start a trace per post, publish, keep the place.

The listener has no JetStream consumer; its input is the outside world, so this module and
``runner.py`` take the place the other services give to ``consumer.py``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from opentelemetry import trace

from services.listener.domain import SourceStatus, mention_from_replay_line
from services.listener.errors import MalformedPostError
from services.listener.lease import SOLE_REPLICA
from services.listener.source_metrics import SourceMetrics
from services.listener.sources.base import SourceState
from services.shared.clock import Clock, system_clock
from services.shared.errors import TransientError

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from services.listener.clients import MentionPublisher, StateStore
    from services.listener.config import ReplaySourceSettings
    from services.listener.lease import SourceLease
    from services.listener.watch import Watch
    from services.shared.status import Counters

log = logging.getLogger(__name__)


class ReplaySource:
    """Publishes the posts of a JSON-lines file, in order, at ``rate_per_second``.

    The cursor is the number of lines done. It is saved after each publish; a crash between
    the two re-publishes one post under the same id, which JetStream drops as a duplicate.

    With several listener replicas, only the holder of the source's lease replays; when the lease
    moves, the new holder reads the cursor from KV and goes on from the line the last one finished.

    Posts are not matched against watches here; ``watches`` (by name) only mark a post
    ``own_account`` when its author is one of its watch's own handles.
    """

    def __init__(
        self,
        settings: ReplaySourceSettings,
        *,
        publisher: MentionPublisher,
        states: StateStore,
        tracer: trace.Tracer,
        counters: Counters,
        watches: Mapping[str, Watch] | None = None,
        lease: SourceLease = SOLE_REPLICA,
        clock: Clock = system_clock,
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._lease = lease
        self.status = SourceStatus(name=settings.name, kind=settings.kind, watch=settings.watch)
        self._watches = watches or {}
        self._publisher = publisher
        self._states = states
        self._tracer = tracer
        self._counters = counters
        # Silence is the lease holder's to report; a paused source, or one done with its file, is not silent.
        self._meter = SourceMetrics(
            counters.metrics,
            source=settings.name,
            kind=settings.kind,
            clock=clock,
            reporting=lambda: self._lease.held() and not self.status.paused and not self.status.exhausted,
        )
        self._resume = asyncio.Event()
        self._resume.set()

    def pause(self) -> None:
        self.status.paused = True
        self._resume.clear()

    def resume(self) -> None:
        self.status.paused = False
        self._resume.set()

    async def run(self, stopping: asyncio.Event) -> None:
        path: Path = self.settings.path
        try:
            lines = (await asyncio.to_thread(path.read_text, encoding="utf-8")).splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            self._fail(f"cannot read {path}: {exc}")
            return
        # Before the cursor is read, the whole file: an unknown backlog must not look like none.
        self.status.remaining = _posts_in(lines)
        while await self._lease.wait_held(stopping):
            if await self._replay_while_held(lines, path, stopping):
                self.status.exhausted = True
                log.info("source %s replayed all %d lines of %s", self.settings.name, len(lines), path)
                return

    async def _replay_while_held(self, lines: list[str], path: Path, stopping: asyncio.Event) -> bool:
        """Publish from the stored cursor on; True at the end of the file, False when stopped or the lease is lost."""
        self._meter.running()
        done = await self._resume_line()
        self.status.remaining = _posts_in(lines[done:])
        if done:
            log.info("source %s resumes at line %d of %s", self.settings.name, done + 1, path)
        interval = 1.0 / self.settings.rate_per_second
        for number in range(done, len(lines)):
            await self._resume.wait()
            if stopping.is_set() or not self._lease.held():
                return False
            line = lines[number]
            if line.strip() and not await self._publish_line(line, path, number + 1, stopping):
                return False
            await self._save_cursor(number + 1, stopping)
            self.status.remaining -= int(bool(line.strip()))
            await asyncio.sleep(interval)
        return True

    async def close(self) -> None:
        """The source was removed: give its lease up."""
        self._meter.close()
        await self._lease.release()

    async def _publish_line(self, line: str, path: Path, number: int, stopping: asyncio.Event) -> bool:
        """True once the line is done with (published, or skipped as malformed); False when stopped first."""
        now = self._clock()
        try:
            mention = mention_from_replay_line(
                line, source=self.settings.name, watch=self.settings.watch, discovered_at=now
            )
        except MalformedPostError as exc:
            self.status.malformed += 1
            self._counters.inc("malformed")
            self._fail(f"{path}:{number}: skipped malformed post: {exc}")
            return True
        self._meter.seen(1)
        watch = self._watches.get(mention.watch)
        if watch is not None and watch.is_own(mention.author.handle):
            mention.own_account = True
        delay = 0.5
        while not stopping.is_set():
            # The root span of the mention's trace: discovery starts it, every later hop continues it.
            with self._tracer.start_as_current_span(
                f"discover {self.settings.name}",
                context=trace.set_span_in_context(trace.INVALID_SPAN),
                attributes={"clamor.mention.id": mention.id, "clamor.source": self.settings.name},
            ):
                try:
                    fresh = await self._publisher.publish(mention)
                except TransientError as exc:
                    self._fail(str(exc))
                else:
                    self._counters.inc("polled")
                    self._counters.inc("published" if fresh else "duplicates")
                    if fresh:
                        self._meter.published_new()
                    self.status.published += int(fresh)
                    self.status.saw(None)
                    self.status.succeeded(now)
                    return True
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
        return False

    async def _resume_line(self) -> int:
        saved = (await self._states.load(self.settings.name)).cursor
        if saved and not saved.isdigit():
            self._fail(f"ignoring unreadable cursor {saved[:40]!r}; starting from the first line")
            return 0
        return int(saved or 0)

    async def _save_cursor(self, lines_done: int, stopping: asyncio.Event) -> None:
        """Retry until saved: skipping a save would only repeat a post, but a crash loop helps nobody.

        Tried once more when stopping, so a clean shutdown hands the next holder the exact line.
        """
        delay = 0.5
        state = SourceState(cursor=str(lines_done))
        while True:
            try:
                await self._states.save(self.settings.name, state)
                return
            except TransientError as exc:
                self._fail(str(exc))
            if stopping.is_set():
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    def _fail(self, message: str) -> None:
        self.status.failed(message, self._clock())
        log.warning("source %s: %s", self.settings.name, message)


def _posts_in(lines: list[str]) -> int:
    return sum(1 for line in lines if line.strip())
