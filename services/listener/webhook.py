"""Inbound push: platforms and in-house systems POST signed JSON posts to ``/hooks/<name>``.

A request is signed with HMAC-SHA256 of its raw body under any of the source's secrets
(several allow rotation): ``X-Clamor-Signature: sha256=<hex>``. With ``X-Clamor-Timestamp``
(unix seconds) the signed content is ``<timestamp>.<body>`` and the timestamp must be within
five minutes of ours, which bounds how long a captured request can be replayed.

Every answer is JSON. 202 means the posts were handed on; 503 with ``Retry-After`` means they
were not and the sender should try again (a repeat is harmless: mention ids are stable).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from services.listener.domain import MAX_TEXT_CHARS
from services.listener.errors import MalformedPostError
from services.listener.sources.base import Post
from services.listener.sources.common import MAX_NATIVE_ID_CHARS, decode_json, http_url, language, parse_time
from services.shared.clock import Clock, system_clock
from services.shared.errors import PermanentError, TransientError
from services.shared.http_site import HttpSite

if TYPE_CHECKING:
    from services.listener.config import WebhookSourceSettings

log = logging.getLogger(__name__)

OnPosts = Callable[["WebhookSourceSettings", list[Post]], Awaitable[None]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

SIGNATURE_HEADER = "X-Clamor-Signature"
TIMESTAMP_HEADER = "X-Clamor-Timestamp"
MAX_CLOCK_SKEW_S = 300
RETRY_AFTER_S = 5
# A sender that trickles its body this slowly is holding a connection, not delivering posts.
BODY_READ_TIMEOUT_S = 30.0
_HEX_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_TIMESTAMP = re.compile(r"[0-9]{1,12}")


class PayloadError(MalformedPostError):
    """A pushed body or one of its posts is not what the webhook format promises."""

    def __init__(self, message: str, *, index: int | None = None, field: str = "") -> None:
        super().__init__(message)
        self.index = index
        self.field = field

    def to_json(self) -> dict[str, Any]:
        detail: dict[str, Any] = {"error": str(self)}
        if self.index is not None:
            detail["index"] = self.index
        if self.field:
            detail["field"] = self.field
        return detail


@dataclass(frozen=True)
class SignatureProblem:
    reason: str
    message: str


def verify_signature(
    secrets: list[str], body: bytes, signature: str | None, timestamp: str | None, *, now: float
) -> SignatureProblem | None:
    """None when the body is signed with any of ``secrets`` (and fresh, if timestamped), else why not."""
    if not signature:
        return SignatureProblem("missing_signature", f"{SIGNATURE_HEADER} header is missing")
    scheme, _, digest = signature.strip().partition("=")
    if scheme.lower() != "sha256" or not _HEX_SHA256.fullmatch(digest):
        return SignatureProblem("malformed_signature", f"{SIGNATURE_HEADER} must be sha256=<64 hex digits>")
    if timestamp is not None and not _TIMESTAMP.fullmatch(timestamp.strip()):
        return SignatureProblem("malformed_timestamp", f"{TIMESTAMP_HEADER} must be unix seconds")
    signed = body if timestamp is None else timestamp.strip().encode() + b"." + body
    given = bytes.fromhex(digest)
    matches = [hmac.compare_digest(hmac.new(s.encode(), signed, hashlib.sha256).digest(), given) for s in secrets]
    if not any(matches):
        return SignatureProblem("signature_mismatch", "signature does not match the body under any secret")
    if timestamp is not None and abs(now - int(timestamp)) > MAX_CLOCK_SKEW_S:
        return SignatureProblem(
            "stale_timestamp", f"{TIMESTAMP_HEADER} is more than {MAX_CLOCK_SKEW_S}s away from the receiver's clock"
        )
    return None


def posts_from_body(body: bytes) -> tuple[list[Post], list[PayloadError]]:
    """The valid posts of a pushed body and the problems of the others; PayloadError if it is no payload."""
    try:
        payload = decode_json(body, what="body")
    except PermanentError as exc:
        raise PayloadError(str(exc)) from exc
    if isinstance(payload, dict) and "posts" in payload:
        items = payload["posts"]
        if not isinstance(items, list):
            raise PayloadError("posts must be a list", field="posts")
    elif isinstance(payload, dict):
        items = [payload]
    else:
        raise PayloadError('body must be a post object or {"posts": [...]}')
    if not items:
        raise PayloadError("posts is empty", field="posts")
    posts: list[Post] = []
    problems: list[PayloadError] = []
    for index, item in enumerate(items):
        try:
            posts.append(post_from_item(item, index))
        except PayloadError as exc:
            problems.append(exc)
    return posts, problems


def post_from_item(item: Any, index: int) -> Post:
    """One pushed post, strictly checked: the sender can fix what we name."""

    def bad(field: str, message: str) -> PayloadError:
        return PayloadError(f"posts[{index}].{field}: {message}", index=index, field=field)

    if not isinstance(item, dict):
        raise PayloadError(f"posts[{index}]: must be an object", index=index)
    native_id = _string(item, "id", bad)
    if not native_id:
        raise bad("id", "is required")
    if len(native_id) > MAX_NATIVE_ID_CHARS:
        raise bad("id", f"is longer than {MAX_NATIVE_ID_CHARS} characters")
    text = item.get("text")
    if not isinstance(text, str) or not text.strip():
        raise bad("text", "is required and must be a non-empty string")
    if len(text) > MAX_TEXT_CHARS:
        raise bad("text", f"is {len(text)} characters, over the {MAX_TEXT_CHARS} limit")
    url = _string(item, "url", bad)
    if url and not http_url(url):
        raise bad("url", "must be an http:// or https:// URL")
    author = item.get("author")
    if author is None:
        author = {}
    if not isinstance(author, dict):
        raise bad("author", "must be an object")
    followers = author.get("followers", 0)
    if followers is None:
        followers = 0
    if isinstance(followers, bool) or not isinstance(followers, int) or followers < 0:
        raise bad("author.followers", "must be a non-negative integer")
    created_raw = item.get("created_at")
    created_at = parse_time(created_raw)
    if created_raw not in (None, "") and created_at is None:
        raise bad("created_at", "must be ISO 8601 or epoch seconds")
    return Post(
        native_id=native_id,
        text=text.strip(),
        url=url,
        author_handle=_string(author, "handle", bad, prefix="author.").lstrip("@"),
        author_name=_string(author, "display_name", bad, prefix="author."),
        followers=followers,
        created_at=created_at,
        language=language(_string(item, "language", bad)),
        thread_id=_string(item, "thread_id", bad),
    )


def _string(item: dict[str, Any], field: str, bad: Callable[[str, str], PayloadError], *, prefix: str = "") -> str:
    value = item.get(field)
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise bad(prefix + field, "must be a string")
    return str(value).strip()


def _json(status: int, body: dict[str, Any], *, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(body, status=status, headers=headers)


@web.middleware
async def _json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """aiohttp's own refusals (no route, wrong method, too big) as JSON, and never a traceback."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        allow = exc.headers.get("Allow")
        return _json(exc.status, {"error": exc.reason}, headers={"Allow": allow} if allow else None)
    except Exception:
        log.exception("webhook %s %s failed", request.method, request.path)
        return _json(500, {"error": "internal error"})


class WebhookReceiver:
    """The HTTP endpoint for webhook sources; hands each request's posts to ``on_posts``."""

    def __init__(self, sources: list[WebhookSourceSettings], on_posts: OnPosts, *, clock: Clock = system_clock) -> None:
        self._sources = {s.name: s for s in sources if s.enabled}
        self._on_posts = on_posts
        self._clock = clock
        largest = max((s.max_body_bytes for s in self._sources.values()), default=1024)
        self._app = web.Application(middlewares=[_json_errors], client_max_size=largest)
        self._app.router.add_post("/hooks/{name}", self._receive)
        self._site = HttpSite(self._app)

    async def start(self, host: str, port: int) -> int:
        """Listen on ``host:port`` (0 picks a free port) and return the port bound."""
        bound = await self._site.start(host, port)
        log.info("webhook receiver listening on %s:%d for %d source(s)", host, bound, len(self._sources))
        return bound

    async def stop(self) -> None:
        await self._site.stop()

    async def _receive(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        settings = self._sources.get(name)
        if settings is None:
            return _json(404, {"error": f"no webhook source named {name[:64]!r}"})
        if request.content_type != "application/json" and not request.content_type.endswith("+json"):
            return _json(415, {"error": "Content-Type must be application/json"})
        limit = settings.max_body_bytes
        too_large = _json(413, {"error": f"body over the {limit}-byte limit"})
        if request.content_length is not None and request.content_length > limit:
            return too_large
        try:
            async with asyncio.timeout(BODY_READ_TIMEOUT_S):
                body = await _read_at_most(request, limit)
        except TimeoutError:
            return _json(408, {"error": f"body not received within {BODY_READ_TIMEOUT_S:.0f}s"})
        if body is None:
            return too_large
        problem = verify_signature(
            settings.secrets,
            body,
            request.headers.get(SIGNATURE_HEADER),
            request.headers.get(TIMESTAMP_HEADER),
            now=self._clock().timestamp(),
        )
        if problem is not None:
            return _json(401, {"error": problem.message, "reason": problem.reason})
        try:
            posts, problems = posts_from_body(body)
        except PayloadError as exc:
            return _json(400, exc.to_json())
        if not posts:
            first = problems[0].to_json()
            return _json(400, {**first, "rejected": [p.to_json() for p in problems]})
        try:
            await self._on_posts(settings, posts)
        except TransientError as exc:
            log.warning("webhook %s: %d post(s) not taken, sender asked to retry: %s", name, len(posts), exc)
            return _retry_later("posts could not be handed on; retry later")
        except PermanentError as exc:
            return _json(422, {"error": str(exc)})
        except Exception:
            # Not ours to judge: like any unknown error in the mesh it is treated as transient.
            log.exception("webhook %s: handing on %d post(s) failed", name, len(posts))
            return _retry_later("posts could not be handed on; retry later")
        accepted: dict[str, Any] = {"accepted": len(posts)}
        if problems:
            accepted["rejected"] = [p.to_json() for p in problems]
        return _json(202, accepted)


def _retry_later(message: str) -> web.Response:
    return _json(503, {"error": message}, headers={"Retry-After": str(RETRY_AFTER_S)})


async def _read_at_most(request: web.Request, limit: int) -> bytes | None:
    """The body, or None as soon as it passes ``limit`` bytes (Content-Length can be absent or lie)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
