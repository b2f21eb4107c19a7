"""Pure listener logic: stable mention ids and turning a replayed post into a Mention."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from clamor.v1 import mention_pb2
from services.listener.errors import MalformedPostError
from services.listener.sources.base import Post

MAX_TEXT_CHARS = 10_000


def mention_id(source: str, native_id: str) -> str:
    """Stable across replicas and restarts, so JetStream dedup and idempotent effects work."""
    return f"{source}:{native_id}"


def _timestamp(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value.astimezone(UTC))
    return stamp


def _parse_time(raw: object, field: str) -> datetime:
    if not isinstance(raw, str):
        raise MalformedPostError(f"{field} must be an ISO-8601 string")
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError as exc:
        raise MalformedPostError(f"{field} is not ISO-8601: {raw[:40]!r}") from exc
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _string(post: dict[str, Any], field: str, *, required: bool = False) -> str:
    value = post.get(field, "")
    if value is None:
        value = ""
    if not isinstance(value, str | int):
        raise MalformedPostError(f"{field} must be a string")
    if required and value == "":
        raise MalformedPostError(f"{field} is required")
    return str(value)


def mention_from_replay_line(line: str, *, source: str, watch: str, discovered_at: datetime) -> mention_pb2.Mention:
    """Parse one JSON-lines post (the bundled sample's format) into a Mention."""
    try:
        post = json.loads(line)
    except json.JSONDecodeError as exc:
        raise MalformedPostError(f"not JSON: {exc.msg}") from exc
    if not isinstance(post, dict):
        raise MalformedPostError("not a JSON object")
    native_id = _string(post, "id", required=True)
    text = _string(post, "text", required=True)
    if len(text) > MAX_TEXT_CHARS:
        raise MalformedPostError(f"text is {len(text)} characters, over the {MAX_TEXT_CHARS} limit")
    author = post.get("author") or {}
    if not isinstance(author, dict):
        raise MalformedPostError("author must be an object")
    followers = author.get("followers", 0)
    if not isinstance(followers, int) or followers < 0:
        raise MalformedPostError("author.followers must be a non-negative integer")
    created = _parse_time(post["created_at"], "created_at") if post.get("created_at") else discovered_at
    return mention_pb2.Mention(
        id=mention_id(source, native_id),
        source=source,
        platform=_string(post, "platform") or "replay",
        native_id=native_id,
        url=_string(post, "url"),
        author=mention_pb2.Author(
            handle=_string(author, "handle").lstrip("@"),
            display_name=_string(author, "display_name"),
            followers=followers,
        ),
        text=text,
        language=_string(post, "language"),
        created_at=_timestamp(created),
        discovered_at=_timestamp(discovered_at),
        watch=watch or _string(post, "watch"),
        thread_id=_string(post, "thread_id"),
    )


def mention_from_post(
    post: Post, *, source: str, platform: str, watch: str, discovered_at: datetime, own_account: bool = False
) -> mention_pb2.Mention:
    """A polled post as a Mention; its id is "<platform>:<native id>", the same from any source.

    ``own_account``: the author is one of the watch's own handles (the brand itself).
    """
    created = post.created_at or discovered_at
    return mention_pb2.Mention(
        id=mention_id(platform, post.native_id),
        source=source,
        platform=platform,
        native_id=post.native_id,
        url=post.url,
        author=mention_pb2.Author(
            handle=post.author_handle.lstrip("@"), display_name=post.author_name, followers=max(post.followers, 0)
        ),
        text=post.text[:MAX_TEXT_CHARS],
        language=post.language,
        created_at=_timestamp(created),
        discovered_at=_timestamp(discovered_at),
        watch=watch,
        thread_id=post.thread_id,
        own_account=own_account,
    )


@dataclass
class SourceStatus:
    """What the listener knows about one source right now (served by ListSources)."""

    name: str
    kind: str
    watch: str
    published: int = 0
    posts_seen: int = 0
    malformed: int = 0
    exhausted: bool = False
    # Replay sources only: non-blank lines after the cursor, the posts still to publish.
    remaining: int = 0
    paused: bool = False
    dynamic: bool = False
    consecutive_failures: int = 0
    last_success_at: datetime | None = None
    last_error: str = ""
    last_error_at: datetime | None = None
    newest_post_at: datetime | None = None
    next_poll_at: datetime | None = None
    # The listener replica that holds the source's lease and polls it; filled in when the status is read.
    holder: str = ""

    def succeeded(self, at: datetime) -> None:
        self.last_success_at = at
        self.last_error = ""
        self.consecutive_failures = 0

    def failed(self, message: str, at: datetime) -> None:
        self.last_error = message
        self.last_error_at = at
        self.consecutive_failures += 1

    def saw(self, created: datetime | None) -> None:
        self.posts_seen += 1
        if created is not None and (self.newest_post_at is None or created > self.newest_post_at):
            self.newest_post_at = created
