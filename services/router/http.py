"""The CRM callback endpoint: acknowledge, resolve or "not a complaint", from CRMs that can only call webhooks.

``POST /callbacks/case`` with a JSON body ``{"case_id": "...", "action": "acknowledge" | "resolve" |
"not_a_complaint", "actor": "...", "note": "...", "destination": "..."}``, signed per Standard Webhooks (``webhook-id``,
``webhook-timestamp``, ``webhook-signature``; several secrets while one rotates). The
``webhook-id`` is the request id, so a CRM that retries a delivery makes one action. Answers:
202 accepted, 400 a body we cannot read (saying which field), 401 a bad or stale signature,
404 an unknown case, 413 too large, 503 NATS not reachable (the CRM retries).

``destination`` is the calling CRM's name among the router's destinations: the action reaches the
other destinations' tickets, never that CRM's own (a CRM told of its own change may call back again).
A callback that names none is sent back to no destination, since any of them may have made it.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web

from clamor.v1 import case_pb2
from services.shared.clock import Clock, system_clock
from services.shared.errors import TransientError
from services.shared.http_site import HttpSite
from services.shared.standard_webhooks import WebhookVerificationError, verify

if TYPE_CHECKING:
    from collections.abc import Collection

    from services.router.clients import CaseStore
    from services.router.config import CallbackSettings
    from services.shared.case_actions import CaseActions

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 16 * 1024
MAX_TEXT_CHARS = 200
ACTIONS = {
    "acknowledge": case_pb2.CASE_ACTION_KIND_ACKNOWLEDGE,
    "resolve": case_pb2.CASE_ACTION_KIND_RESOLVE,
    "not_a_complaint": case_pb2.CASE_ACTION_KIND_NOT_A_COMPLAINT,
}


def _answer(code: int, **body: Any) -> web.Response:
    return web.json_response(body, status=code)


def _text(body: dict[str, Any], field: str, *, required: bool) -> str:
    value = body.get(field, "")
    if not isinstance(value, str) or (required and not value.strip()):
        raise ValueError(f"{field} must be a {'non-empty ' if required else ''}string")
    if len(value) > MAX_TEXT_CHARS:
        raise ValueError(f"{field} is longer than {MAX_TEXT_CHARS} characters")
    # One line, no control characters: the actor ends up in case histories and CRM comments.
    return " ".join("".join(ch for ch in value if ch.isprintable()).split())


class CallbackServer:
    def __init__(
        self,
        settings: CallbackSettings,
        *,
        cases: CaseStore,
        actions: CaseActions,
        destinations: Collection[str] = (),
        clock: Clock = system_clock,
    ) -> None:
        self._settings = settings
        self._destinations = frozenset(destinations)
        self._cases = cases
        self._actions = actions
        self._clock = clock
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_post("/callbacks/case", self._case_action)
        app.router.add_get("/healthz", self._healthz)
        self._site = HttpSite(app)

    async def start(self) -> int:
        return await self._site.start(self._settings.host, self._settings.port)

    async def stop(self) -> None:
        await self._site.stop()

    async def _healthz(self, request: web.Request) -> web.Response:
        return _answer(200, status="ok")

    async def _case_action(self, request: web.Request) -> web.Response:
        if (request.content_length or 0) > MAX_BODY_BYTES:
            return _answer(413, error=f"body over {MAX_BODY_BYTES} bytes")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _answer(413, error=f"body over {MAX_BODY_BYTES} bytes")
        try:
            verify(
                self._settings.secrets,
                request.headers,
                body,
                now=self._clock().timestamp(),
                tolerance_s=self._settings.tolerance_s,
            )
        except WebhookVerificationError as exc:
            log.warning("refused a CRM callback from %s: %s", request.remote, exc)
            return _answer(401, error=f"signature: {exc}")
        try:
            data = json.loads(body)
            if not isinstance(data, dict):
                raise ValueError("the body must be a JSON object")
            case_id = _text(data, "case_id", required=True)
            action = _text(data, "action", required=True)
            if action not in ACTIONS:
                raise ValueError(f"action must be one of {', '.join(ACTIONS)}, not {action!r}")
            actor = _text(data, "actor", required=False) or "crm"
            note = _text(data, "note", required=False)
            origin = _text(data, "destination", required=False)
            if origin and origin not in self._destinations:
                known = ", ".join(sorted(self._destinations)) or "none configured"
                raise ValueError(f"destination must name one of the router's destinations ({known}), not {origin!r}")
        except ValueError as exc:
            return _answer(400, error=str(exc))
        try:
            if await self._cases.get(case_id) is None:
                return _answer(404, error=f"no case {case_id!r}")
            action_id = await self._actions.publish(
                case_id,
                ACTIONS[action],
                actor=actor,
                via="crm",
                request_id=request.headers["webhook-id"],
                note=note,
                origin_destination=origin,
            )
        except TransientError as exc:
            return _answer(503, error=f"try again: {exc}")
        return _answer(202, action_id=action_id)
