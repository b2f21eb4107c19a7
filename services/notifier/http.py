"""The acknowledgement endpoint: responders' links, and PagerDuty's V3 webhooks.

``GET /ack/<token>`` only shows a confirmation page: chat unfurlers, mail scanners and link
previews fetch every URL they see, so a GET that acknowledged would close cases nobody read.
The page's form posts back to the same URL, and that POST records the acknowledgement under a
request id derived from the token, so pressing twice (or two people pressing) is one action.

``POST /pagerduty`` takes PagerDuty V3 webhook deliveries, signed per subscription secret, and
turns ``incident.acknowledged`` and ``incident.resolved`` of incidents the notifier opened into
case actions. Everything else is answered 202 and dropped.

Pages carry no third-party content and forbid scripts, framing and referrers: the token in the
URL is a capability and must not leak.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import re
import unicodedata
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qs

from aiohttp import web

from clamor.v1 import case_pb2
from services.notifier.ack_links import AckLinkExpired, AckLinkInvalid, AckLinks
from services.notifier.errors import NotifierError
from services.notifier.render import render_html
from services.shared.clock import Clock, system_clock
from services.shared.errors import PermanentError, TransientError
from services.shared.http_site import HttpSite

if TYPE_CHECKING:
    from services.notifier.config import AckSettings

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

MAX_BODY_BYTES = 64 * 1024
RETRY_AFTER_S = 5
# A client that trickles its body this slowly is holding a connection, not acknowledging.
BODY_READ_TIMEOUT_S = 30.0
MAX_ACTOR_CHARS = 100
LINK_ACTOR = "link"
PAGERDUTY_ACTOR = "pagerduty"
PAGERDUTY_SIGNATURE_HEADER = "X-PagerDuty-Signature"
# The notifier opens one PagerDuty incident per case with this dedup_key prefix (see message.py).
CASE_DEDUP_PREFIX = "clamor-case-"
MAX_EVENT_ID_CHARS = 200

SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
}

PAGERDUTY_KINDS: dict[str, case_pb2.CaseActionKind.ValueType] = {
    "incident.acknowledged": case_pb2.CASE_ACTION_KIND_ACKNOWLEDGE,
    "incident.resolved": case_pb2.CASE_ACTION_KIND_RESOLVE,
}

_HEX_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
# Control, format (bidi overrides, zero-width) and line-separator characters: they could forge
# lines in logs or reorder what a reader sees, and a name never needs them.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


class ActionSink(Protocol):
    """Records a case action (in production: publishes it for the router); returns the action id."""

    async def __call__(
        self, case_id: str, kind: case_pb2.CaseActionKind.ValueType, *, actor: str, via: str, request_id: str
    ) -> str: ...


def clean_actor(raw: str, *, default: str) -> str:
    """A name fit to store and show: no control characters, one line, at most 100 characters."""
    safe = "".join(" " if unicodedata.category(c) in _UNSAFE_CATEGORIES else c for c in raw)
    name = " ".join(safe.split())[:MAX_ACTOR_CHARS].strip()
    return name or default


def link_request_id(token: str) -> str:
    """One id per link, so repeated presses are one action; the token itself is never stored."""
    return "link-" + hashlib.sha256(token.encode()).hexdigest()[:32]


def pagerduty_signature_ok(secrets: list[str], body: bytes, header: str | None) -> bool:
    """True when any ``v1=`` signature in the header is the HMAC-SHA256 of the body under any secret."""
    if not header or not secrets:
        return False
    given = []
    for item in header.split(","):
        version, _, digest = item.strip().partition("=")
        if version == "v1" and _HEX_SHA256.fullmatch(digest):
            given.append(bytes.fromhex(digest))
    expected = [hmac.new(s.encode(), body, hashlib.sha256).digest() for s in secrets]
    # Every pair is compared, so the time taken says nothing about which secret came close.
    matches = [hmac.compare_digest(e, g) for e in expected for g in given]
    return any(matches)


class PagerDutyPayloadError(NotifierError, ValueError):
    """The body is not a V3 webhook event."""


@dataclass(frozen=True)
class PagerDutyAction:
    case_id: str
    kind: case_pb2.CaseActionKind.ValueType
    actor: str
    request_id: str


@dataclass(frozen=True)
class Ignored:
    reason: str


def pagerduty_action(body: bytes) -> PagerDutyAction | Ignored:
    """The case action a V3 webhook body carries, or why it carries none of ours.

    Field names follow PagerDuty's "Webhooks Overview" (V3) in PagerDuty/developer-docs: the body
    is ``{"event": {...}}`` with ``event.id``, ``event.event_type``, ``event.agent`` (a reference
    with ``summary``, or null) and ``event.data``, which for incident events is the incident with
    its ``incident_key``. An incident opened through the Events API v2 has the event's
    ``dedup_key`` as its ``incident_key``.
    """
    try:
        payload = json.loads(body)
    except json.JSONDecodeError as exc:
        raise PagerDutyPayloadError(f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from exc
    except (UnicodeDecodeError, RecursionError) as exc:
        raise PagerDutyPayloadError("body is not UTF-8 JSON of reasonable depth") from exc
    event = payload.get("event") if isinstance(payload, dict) else None
    if not isinstance(event, dict):
        raise PagerDutyPayloadError('body must be an object with an "event" object')
    event_type = event.get("event_type")
    if not isinstance(event_type, str):
        raise PagerDutyPayloadError("event.event_type must be a string")
    kind = PAGERDUTY_KINDS.get(event_type)
    if kind is None:
        return Ignored(f"event type {event_type[:64]!r} is not handled")
    event_id = event.get("id")
    if not isinstance(event_id, str) or not event_id or len(event_id) > MAX_EVENT_ID_CHARS:
        raise PagerDutyPayloadError(f"event.id must be a string of 1 to {MAX_EVENT_ID_CHARS} characters")
    data = event.get("data")
    key = data.get("incident_key") if isinstance(data, dict) else None
    # Incidents opened by others, and our alert incidents ("clamor-alert-…"), are no case of ours.
    if not isinstance(key, str) or not key.startswith(CASE_DEDUP_PREFIX) or key == CASE_DEDUP_PREFIX:
        return Ignored("incident was not opened for a Clamor case")
    agent = event.get("agent")
    summary = agent.get("summary") if isinstance(agent, dict) else None
    actor = clean_actor(summary, default=PAGERDUTY_ACTOR) if isinstance(summary, str) else PAGERDUTY_ACTOR
    return PagerDutyAction(key.removeprefix(CASE_DEDUP_PREFIX), kind, actor, event_id)


def _page(
    status: int, title: str, message: str, *, headers: dict[str, str] | None = None, **context: object
) -> web.Response:
    context = {"case_id": "", "actor": "", "form": False, **context}
    html = render_html("ack_page.html.j2", title=title, message=message, **context)
    return web.Response(status=status, text=html, content_type="text/html", charset="utf-8", headers=headers)


def _json(status: int, body: dict[str, Any], *, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(body, status=status, headers=headers)


async def _secure_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(SECURITY_HEADERS)


@web.middleware
async def _no_tracebacks(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception:
        # The path holds a token, a capability: it stays out of the log.
        log.exception("acknowledgement endpoint: %s request failed", request.method)
        return web.Response(status=500, text="internal error\n")


class BodyTooLargeError(NotifierError):
    """The request body passed MAX_BODY_BYTES."""


async def _read_body(request: web.Request) -> bytes:
    """The body, read only up to the limit (Content-Length can be absent or lie)."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise BodyTooLargeError
    chunks: list[bytes] = []
    size = 0
    async with asyncio.timeout(BODY_READ_TIMEOUT_S):
        async for chunk in request.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise BodyTooLargeError
            chunks.append(chunk)
    return b"".join(chunks)


class AckServer:
    """Serves acknowledgement links and PagerDuty webhooks; hands each action to ``sink``."""

    def __init__(
        self,
        settings: AckSettings,
        *,
        links: AckLinks,
        sink: ActionSink,
        clock: Clock = system_clock,
    ) -> None:
        self._settings = settings
        self._links = links
        self._sink = sink
        self._clock = clock
        self._app = web.Application(middlewares=[_no_tracebacks], client_max_size=MAX_BODY_BYTES)
        self._app.on_response_prepare.append(_secure_headers)
        self._app.router.add_get("/ack/{token}", self._show)
        self._app.router.add_post("/ack/{token}", self._acknowledge)
        self._app.router.add_post("/pagerduty", self._pagerduty)
        self._app.router.add_get("/healthz", self._healthz)
        self._site = HttpSite(self._app)

    async def start(self) -> int:
        """Listen on the configured host and port (0 picks a free one) and return the port bound."""
        bound = await self._site.start(self._settings.host, self._settings.port)
        log.info("acknowledgement endpoint listening on %s:%d", self._settings.host, bound)
        return bound

    async def stop(self) -> None:
        await self._site.stop()

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    def _verify(self, token: str) -> str | web.Response:
        """The token's case id, or the page that says why it cannot be used."""
        try:
            return self._links.verify(token, now=self._clock())
        except AckLinkExpired as exc:
            message = "This acknowledgement link has expired. Acknowledge the case from a newer message."
            return _page(410, "Link expired", message, case_id=exc.case_id)
        except AckLinkInvalid:
            return _page(
                403, "Link not valid", "This acknowledgement link is not valid. Check that it was copied whole."
            )

    async def _show(self, request: web.Request) -> web.Response:
        verified = self._verify(request.match_info["token"])
        if isinstance(verified, web.Response):
            return verified
        message = "Nothing is recorded until you press the button."
        return _page(200, "Acknowledge this case?", message, case_id=verified, form=True)

    async def _acknowledge(self, request: web.Request) -> web.Response:
        token = request.match_info["token"]
        try:
            body = await _read_body(request)
        except BodyTooLargeError:
            return _page(413, "Request too large", f"The form may carry at most {MAX_BODY_BYTES} bytes.")
        except TimeoutError:
            return _page(408, "Request too slow", "The form was not received in time. Please try again.")
        verified = self._verify(token)
        if isinstance(verified, web.Response):
            return verified
        case_id = verified
        actor = clean_actor(_form_field(request, body, "name"), default=LINK_ACTOR)
        kind = case_pb2.CASE_ACTION_KIND_ACKNOWLEDGE
        try:
            action_id = await self._sink(case_id, kind, actor=actor, via="link", request_id=link_request_id(token))
        except TransientError as exc:
            log.warning("case %s: link acknowledgement not recorded, asked to retry: %s", case_id, exc)
            return _retry_page(case_id)
        except PermanentError as exc:
            log.warning("case %s: link acknowledgement refused: %s", case_id, exc)
            return _page(422, "Not recorded", "This acknowledgement could not be recorded.", case_id=case_id)
        except Exception:
            # Not ours to judge: like any unknown error in the mesh it is treated as transient.
            log.exception("case %s: recording a link acknowledgement failed", case_id)
            return _retry_page(case_id)
        log.info("case %s acknowledged through a link (action %s)", case_id, action_id)
        return _page(200, "Acknowledged", "Thank you. The case is acknowledged.", case_id=case_id, actor=actor)

    async def _pagerduty(self, request: web.Request) -> web.Response:
        secrets = self._settings.pagerduty_webhook_secrets
        if not secrets:
            return _json(401, {"error": "no PagerDuty webhook secret is configured"})
        try:
            body = await _read_body(request)
        except BodyTooLargeError:
            return _json(413, {"error": f"body over the {MAX_BODY_BYTES}-byte limit"})
        except TimeoutError:
            return _json(408, {"error": f"body not received within {BODY_READ_TIMEOUT_S:.0f}s"})
        if not pagerduty_signature_ok(secrets, body, request.headers.get(PAGERDUTY_SIGNATURE_HEADER)):
            return _json(401, {"error": f"{PAGERDUTY_SIGNATURE_HEADER} does not match the body under any secret"})
        try:
            action = pagerduty_action(body)
        except PagerDutyPayloadError as exc:
            return _json(400, {"error": str(exc)})
        if isinstance(action, Ignored):
            return _json(202, {"ignored": action.reason})
        try:
            action_id = await self._sink(
                action.case_id, action.kind, actor=action.actor, via="pagerduty", request_id=action.request_id
            )
        except PermanentError as exc:
            log.warning("case %s: PagerDuty action refused: %s", action.case_id, exc)
            return _json(422, {"error": "the action was refused"})
        except TransientError as exc:
            log.warning("case %s: PagerDuty action not recorded, sender asked to retry: %s", action.case_id, exc)
            return _retry_json()
        except Exception:
            log.exception("case %s: recording a PagerDuty action failed", action.case_id)
            return _retry_json()
        kind_name = case_pb2.CaseActionKind.Name(action.kind)
        log.info("case %s: %s from PagerDuty (action %s)", action.case_id, kind_name, action_id)
        return _json(200, {"action_id": action_id})


def _form_field(request: web.Request, body: bytes, name: str) -> str:
    """A field of an urlencoded form, or empty: the name is optional and anything odd is dropped."""
    if request.content_type != "application/x-www-form-urlencoded":
        return ""
    try:
        fields = parse_qs(body.decode("utf-8", "replace"), max_num_fields=20)
    except ValueError:
        return ""
    values = fields.get(name)
    return values[0] if values else ""


def _retry_page(case_id: str) -> web.Response:
    message = "The acknowledgement could not be recorded just now. Please press the button again in a moment."
    headers = {"Retry-After": str(RETRY_AFTER_S)}
    return _page(503, "Try again shortly", message, headers=headers, case_id=case_id, form=True)


def _retry_json() -> web.Response:
    return _json(503, {"error": "not recorded; retry later"}, headers={"Retry-After": str(RETRY_AFTER_S)})
