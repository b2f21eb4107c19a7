"""Hourly counters of triaged mentions in KV, kept exactly from the TRIAGED stream, and read back as series.

The service's durable consumer (``subjects.REPUTATION_CONSUMER``) hands :meth:`TrendsCounter.handle`
batches of the stream: each batch is added to its hours' records by compare-and-set (every record
skips posts at or below its own ``through_seq``), then the cursor moves and the batch is
acknowledged. That skip is exact only in stream order, and replicas share the durable, so the posts
of a batch past a gap (a post another replica holds, or one handed back) are handed back until the
cursor reaches them; posts at or below the cursor were counted and are only acknowledged. A crash or
a restart gets the unacknowledged posts again and counts nothing twice. ``catch_up`` reads from the
cursor to the stream's end through an ephemeral consumer, and ``rebuild`` forgets every record and
counts the whole stream again that way: after a change to the keywords, or to check the counters
against a recount.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
from collections import Counter
from copy import deepcopy
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from google.protobuf.message import DecodeError
from nats.errors import Error as NatsLibraryError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import KeyNotFoundError, NotFoundError

from clamor.v1 import triage_pb2
from services.reputation.domain import HourCounts, hour_label, hour_start, merged, posted_at, slot_of, verdict_label
from services.reputation.errors import CountingOrderError
from services.reputation.records import CURSOR_CODEC, HOUR_COUNTS_CODEC, WATCH_LIST_CODEC
from services.shared import subjects
from services.shared.errors import TransientError
from services.shared.jetstream import ensure_bucket
from services.shared.kv_state import KvState

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

    from nats.aio.msg import Msg
    from nats.js import JetStreamContext
    from nats.js.kv import KeyValue

    from services.shared.clock import Clock
    from services.shared.pull_consumer import Delivery

log = logging.getLogger(__name__)

CURSOR_KEY = "cursor"
WATCHES_KEY = "watches"
BATCH = subjects.REPUTATION_BATCH
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def watch_key(watch: str) -> str:
    """A KV-safe token for any watch name, readable and unique."""
    digest = hashlib.blake2b(watch.encode(), digest_size=4).hexdigest()
    return f"{_UNSAFE.sub('_', watch)[:40]}_{digest}"


def record_key(verdict: str, watch: str, hour: datetime) -> str:
    return f"{verdict}.{watch_key(watch)}.{hour_label(hour)}"


@dataclass(frozen=True)
class Counted:
    messages: int
    hours: int


class CounterStore:
    """The KV bucket of hourly records, the known watches and the reader's cursor."""

    def __init__(self, bucket: KeyValue) -> None:
        self._bucket = bucket
        # One state per record kind over the same bucket, under readable keys, changed by
        # compare-and-set; no mirror (a year of hours is large).
        name = subjects.REPUTATION_COUNTERS_BUCKET
        self._hours: KvState[HourCounts] = KvState(bucket, name=name, codec=HOUR_COUNTS_CODEC, key=_same_key)
        self._cursor: KvState[int] = KvState(bucket, name=name, codec=CURSOR_CODEC, key=_same_key)
        self._watches: KvState[dict[str, int]] = KvState(bucket, name=name, codec=WATCH_LIST_CODEC, key=_same_key)

    @classmethod
    async def open(cls, js: JetStreamContext, *, replicas: int, history_days: float) -> CounterStore:
        # Records outlive the stream by the longest baseline, so a baseline never reads a forgotten hour.
        ttl = (history_days + 35) * subjects.DAY_S
        return cls(await ensure_bucket(js, subjects.REPUTATION_COUNTERS_BUCKET, replicas=replicas, ttl_s=ttl))

    async def hour(self, verdict: str, watch: str, hour: datetime) -> HourCounts:
        found = await self._hours.get(record_key(verdict, watch, hour))
        return found[0] if found is not None else HourCounts()

    async def hours(self, verdict: str, watch: str, hours: Iterable[datetime]) -> dict[datetime, HourCounts]:
        wanted = sorted(set(hours))
        found = await asyncio.gather(*(self.hour(verdict, watch, h) for h in wanted))
        return dict(zip(wanted, found, strict=True))

    async def cursor(self) -> int:
        found = await self._cursor.get(CURSOR_KEY)
        return found[0] if found is not None else 0

    async def watches(self) -> dict[str, int]:
        """Every watch seen, with the 10-minute slot of its earliest counted post (where its history starts)."""
        found = await self._watches.get(WATCHES_KEY)
        return dict(sorted(found[0].items())) if found is not None else {}

    async def add(
        self, key: str, posts: Sequence[tuple[int, triage_pb2.TriagedMention, datetime]], keywords: Sequence[str]
    ) -> None:
        def change(current: HourCounts | None) -> HourCounts | None:
            # A copy: the change must stay pure, and the record it was given back means "nothing changed".
            record = deepcopy(current) if current is not None else HourCounts()
            added = [record.add(seq, triaged, at=at, keywords=keywords) for seq, triaged, at in posts]
            return record if any(added) else None

        await self._hours.change(key, change)

    async def note_watches(self, first_slots: dict[str, int]) -> None:
        def change(current: dict[str, int] | None) -> dict[str, int] | None:
            known = current or {}
            updated = {**known, **{n: min(s, known.get(n, s)) for n, s in first_slots.items()}}
            return updated if updated != known else None

        await self._watches.change(WATCHES_KEY, change)

    async def advance(self, seq: int) -> None:
        await self._cursor.change(CURSOR_KEY, lambda current: seq if current is None or current < seq else None)

    async def forget_all(self) -> int:
        """Delete every record and the cursor; returns how many keys there were."""
        try:
            keys = await self._bucket.keys()
        except NatsLibraryError:
            return 0  # nats-py raises NoKeysError for an empty bucket
        for key in keys:
            with contextlib.suppress(KeyNotFoundError):
                await self._bucket.purge(key)
        return len(keys)


class TrendsCounter:
    """Keeps the counters from the TRIAGED stream; one per reputation replica."""

    def __init__(
        self, js: JetStreamContext, store: CounterStore, *, keywords: Sequence[str] = (), clock: Clock
    ) -> None:
        self._js = js
        self.store = store
        self._keywords = tuple(keywords)
        self._clock = clock
        # Held while a batch is applied, and through a whole rebuild.
        self._lock = asyncio.Lock()

    async def handle(self, batch: Sequence[Delivery[triage_pb2.TriagedMention]]) -> list[BaseException | None]:
        """Count the part of a batch that follows the cursor without a gap; the rest is handed back.

        A gap is a post another replica holds (or one handed back); a post that expired or was
        erased from the stream is none.
        """
        posts = sorted((int(d.msg.metadata.sequence.stream), d.payload) for d in batch)
        try:
            async with self._lock:
                cursor = reached = await self.store.cursor()
                accepted: list[tuple[int, triage_pb2.TriagedMention | None]] = []
                for seq, triaged in posts:
                    if seq <= cursor:
                        continue  # counted before the cursor moved past it: only acknowledged
                    if seq != reached + 1 and not await self._next_after(reached, seq):
                        break
                    accepted.append((seq, triaged))
                    reached = seq
                await self._apply(accepted)
        except (NatsLibraryError, OSError) as exc:
            error = TransientError(f"trend counters: {str(exc) or type(exc).__name__}")
            return [error] * len(batch)
        waiting = CountingOrderError(f"trend counters: the post after {reached} is not counted yet; waiting")
        return [None if int(d.msg.metadata.sequence.stream) <= reached else waiting for d in batch]

    async def _next_after(self, cursor: int, seq: int) -> bool:
        """Whether ``seq`` is the first post in the stream after ``cursor`` (posts may have expired or been erased)."""
        if seq == cursor + 1:
            return True
        try:
            found = await self._js.get_msg(subjects.TRIAGED.name, seq=cursor + 1, next=True)
        except NotFoundError:
            return True
        return int(found.seq or 0) >= seq

    async def catch_up(self, *, locked: bool = False) -> Counted:
        """Count from the cursor to the end of the stream as it is now.

        ``locked``: the caller holds the lock for the whole read (a rebuild), not batch by batch.
        """
        start = await self.store.cursor() + 1
        target = await stream_last_seq(self._js)
        if target < start:
            return Counted(0, 0)
        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=start,
            ack_policy=AckPolicy.NONE,
            filter_subject="clamor.triaged.>",
            inactive_threshold=120.0,
        )
        subscription = await self._js.pull_subscribe("clamor.triaged.>", stream=subjects.TRIAGED.name, config=config)
        messages = hours = 0
        try:
            while True:
                try:
                    batch = await subscription.fetch(BATCH, timeout=1.0)
                except (NatsTimeoutError, TimeoutError):
                    break
                posts = _decoded(batch)
                if locked:
                    hours += await self._apply(posts)
                else:
                    async with self._lock:
                        hours += await self._apply(posts)
                messages += len(batch)
                if int(batch[-1].metadata.sequence.stream) >= target:
                    break
        finally:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()
        return Counted(messages, hours)

    async def _apply(self, posts: Sequence[tuple[int, triage_pb2.TriagedMention | None]]) -> int:
        """Add (stream sequence, post) pairs in stream order; None stands for a message that is no post."""
        now = self._clock()
        by_key: dict[str, list[tuple[int, triage_pb2.TriagedMention, datetime]]] = {}
        first_slots: dict[str, int] = {}
        last = 0
        for seq, triaged in posts:
            last = max(last, seq)
            if triaged is None:
                continue
            at = posted_at(triaged, now=now)
            watch = triaged.mention.watch or "unwatched"
            first_slots[watch] = min(slot_of(at), first_slots.get(watch, slot_of(at)))
            key = record_key(verdict_label(triaged.result.verdict), watch, at)
            by_key.setdefault(key, []).append((seq, triaged, at))
        for key, counted in by_key.items():
            await self.store.add(key, counted, self._keywords)
        if first_slots:
            await self.store.note_watches(first_slots)
        if last:
            await self.store.advance(last)
        return len(by_key)

    async def rebuild(self) -> Counted:
        """Forget every counter and count the whole stream again, exactly."""
        # The lock is held to the end: a batch of the live reader landing in a freshly forgotten hour
        # would set its through_seq past the older posts the recount has yet to add.
        async with self._lock:
            forgotten = await self.store.forget_all()
            log.info("trend counters: %d records forgotten; recounting the TRIAGED stream", forgotten)
            return await self.catch_up(locked=True)


def _decoded(batch: Sequence[Msg]) -> list[tuple[int, triage_pb2.TriagedMention | None]]:
    out: list[tuple[int, triage_pb2.TriagedMention | None]] = []
    for msg in batch:
        seq = int(msg.metadata.sequence.stream)
        triaged = triage_pb2.TriagedMention()
        try:
            triaged.ParseFromString(msg.data)
        except DecodeError:
            log.warning("trend counters: TRIAGED message %d is not a TriagedMention; not counted", seq)
            out.append((seq, None))
        else:
            out.append((seq, triaged))
    return out


async def stream_last_seq(js: JetStreamContext) -> int:
    try:
        info = await js.stream_info(subjects.TRIAGED.name)
    except NotFoundError:
        return 0
    return int(info.state.last_seq)


def hours_back(now: datetime, count: int) -> list[datetime]:
    """The ``count`` hour starts up to and including the current hour, oldest first."""
    current = hour_start(now)
    return [current - timedelta(hours=count - 1 - i) for i in range(count)]


@dataclass(frozen=True)
class Series:
    watch: str
    category: str
    start: datetime
    counts: list[int]
    baseline: list[float]


async def series_for(
    store: CounterStore, watch: str, *, verdict: str, hours: int, now: datetime, baseline_days: int, top: int = 8
) -> tuple[list[Series], HourCounts]:
    """The watch's hourly total and its top categories, each hour beside the mean of the same hour on
    the ``baseline_days`` before; and the whole span's records merged (terms, languages, sources)."""
    span = hours_back(now, hours)
    past = [h - timedelta(days=d) for h in span for d in range(1, baseline_days + 1)]
    records = await store.hours(verdict, watch, [*span, *past])

    def baseline(hour: datetime, count: Callable[[HourCounts], int]) -> float:
        if baseline_days == 0:
            return 0.0
        return sum(count(records[hour - timedelta(days=d)]) for d in range(1, baseline_days + 1)) / baseline_days

    merged_span = merged(records[h] for h in span)

    def line(category: str, count: Callable[[HourCounts], int]) -> Series:
        return Series(
            watch, category, span[0], [count(records[h]) for h in span], [round(baseline(h, count), 2) for h in span]
        )

    out = [line("", lambda r: r.total)]
    for category, _ in Counter(merged_span.categories).most_common(top):
        out.append(line(category, _category_count(category)))
    return out, merged_span


def _category_count(category: str) -> Callable[[HourCounts], int]:
    return lambda record: record.categories.get(category, 0)


def _same_key(name: str) -> str:
    return name
