"""What one source records: its polls and their errors, posts seen and new, rate-limit waits, silence.

Every runner holds one, so the series read the same for every kind of source. Polled sources record
all of them; replayed and pushed sources are not polled, so they record posts and silence only.
Attribute values are the source's configured name and kind and an error's class name, never a URL,
an id or a post's text, so the number of series stays that of the configured sources.

A replica records only what it does itself. A polled or replayed source is run by the replica that
holds its lease, so only that replica counts its polls and posts, and only that replica reports its
silence; a pushed source is served by every replica, and each reports the posts it was handed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from services.shared.metric_catalogue import ERROR_TYPE, SOURCE, SOURCE_KIND

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from services.shared.clock import Clock
    from services.shared.metrics import Attributes, Metrics

POLLS = "clamor.listener.polls"
POLL_ERRORS = "clamor.listener.poll.errors"
POSTS_SEEN = "clamor.listener.posts.seen"
POSTS_NEW = "clamor.listener.posts.new"
NEWEST_POST_AGE = "clamor.listener.newest_post.age"
RATE_LIMIT_WAITS = "clamor.listener.rate_limit.waits"


def _always() -> bool:
    return True


class SourceMetrics:
    """One source's series. ``reporting`` says whether its silence is this replica's to report now."""

    def __init__(
        self, metrics: Metrics, *, source: str, kind: str, clock: Clock, reporting: Callable[[], bool] = _always
    ) -> None:
        self._metrics = metrics
        self._clock = clock
        self._reporting = reporting
        self._by_source: Attributes = {SOURCE: source}
        self._by_kind: Attributes = {SOURCE: source, SOURCE_KIND: kind}
        self._running_since = clock()
        self._newest_at: datetime | None = None
        self._closed = False
        metrics.observe(NEWEST_POST_AGE, self._ages)

    def running(self) -> None:
        """This replica starts running the source (it took the lease): its silence is measured from now on."""
        self._running_since = self._clock()

    def polled(self, error: BaseException | None = None) -> None:
        """One poll, done or failed; ``error`` is why it failed."""
        self._metrics.add(POLLS, 1, self._by_kind)
        if error is not None:
            self._metrics.add(POLL_ERRORS, 1, {**self._by_kind, ERROR_TYPE: type(error).__name__})

    def seen(self, posts: int) -> None:
        """``posts`` came back from a poll, or were pushed or replayed."""
        if posts:
            self._metrics.add(POSTS_SEEN, posts, self._by_source)

    def published_new(self) -> None:
        """A post went to the stream for the first time."""
        self._metrics.add(POSTS_NEW, 1, self._by_source)
        self._newest_at = self._clock()

    def rate_limit_wait(self) -> None:
        """The next poll waits for what the platform asked: a ``Retry-After`` or its rate-limit reset."""
        self._metrics.add(RATE_LIMIT_WAITS, 1, self._by_source)

    def close(self) -> None:
        """The source was removed: it reports nothing more (a gauge reader cannot be taken back)."""
        self._closed = True

    def _ages(self) -> list[tuple[float, Attributes]]:
        """The seconds of silence, read on the collector's thread: in-memory state and the clock only.

        Measured from when the newest post was published, not from the date the platform gave it:
        those dates are edited, backdated or replayed, while the question is how long the source has
        been quiet. A source that has published nothing yet reports the time since this replica began
        running it, and so does one whose last post came before that (another replica may have
        published since): an absent series could never fire a silence alert, and a replica does not
        claim a silence it did not see.
        """
        if self._closed or not self._reporting():
            return []
        newest = self._newest_at
        since = self._running_since if newest is None else max(newest, self._running_since)
        return [(max((self._clock() - since).total_seconds(), 0.0), self._by_source)]
