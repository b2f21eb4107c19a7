"""Zendesk Support: one ticket per case through the Tickets API.

Authentication is an agent's API token, sent as HTTP Basic ``{email}/token:{api_token}``.

``create`` is idempotent through the ticket's ``external_id``, which holds the case id: it first
lists ``GET /api/v2/tickets.json?external_id=<case id>`` and returns the ticket found there;
only when there is none does it ``POST /api/v2/tickets.json``. A retry after a create whose
answer was lost therefore finds the ticket instead of opening a second one. (Zendesk's own
``Idempotency-Key`` is not used: it refuses a retry whose payload changed, and a case may gain a
post between two attempts.)

The first comment holds the case's description and every later update one comment, all
private (``public: false``): posts quote the public, and a ticket's requester must not be
mailed internal notes. ``body`` is Zendesk's plain-text comment field, never ``html_body``.

Priority, from Clamor's priority (routing rules, else severity)::

    Clamor   urgent  high  normal  low
    Zendesk  urgent  high  normal  low

A resolved case sets the ticket's status to ``solved``.
"""

from __future__ import annotations

import base64
import re
from dataclasses import replace
from typing import TYPE_CHECKING, ClassVar
from urllib.parse import quote

from services.router.delivery.destinations.base import HttpDestination, Ticket
from services.router.delivery.destinations.render import description, is_resolved, priority_of, subject, update_comment
from services.router.delivery.destinations.settings import ZendeskDestinationSettings

if TYPE_CHECKING:
    from collections.abc import Sequence

    from clamor.v1 import case_pb2
    from services.router.delivery.destinations.render import Priority

PRIORITY: dict[Priority, str] = {"urgent": "urgent", "high": "high", "normal": "normal", "low": "low"}
# Zendesk comments may be 64 KB; a case's first comment is kept well below.
DESCRIPTION_CHARS = 8000
_TAG_UNSAFE = re.compile(r"[^a-z0-9_/-]+")


def tag(value: str) -> str:
    """A Zendesk tag: lower case, no spaces (Zendesk would split the value into several tags)."""
    return _TAG_UNSAFE.sub("_", value.lower()).strip("_")[:80]


def tags(case: case_pb2.Case) -> list[str]:
    values = ["clamor", case.category, *(triaged.mention.platform for triaged in case.mentions)]
    return list(dict.fromkeys(t for t in map(tag, values) if t))


class ZendeskDestination(HttpDestination[ZendeskDestinationSettings]):
    kind: ClassVar[str] = "zendesk"

    def _credential(self) -> str:
        raw = f"{self.settings.email}/token:{self.settings.api_token}"
        return base64.b64encode(raw.encode()).decode("ascii")

    def _secrets(self) -> tuple[str, ...]:
        return (self.settings.api_token, self._credential())

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Basic {self._credential()}"}

    def _ticket(self, value: object, what: str) -> Ticket:
        ticket_id = self.require(value, what, "ticket id")
        return Ticket(remote_id=ticket_id, url=f"{self.settings.api_base}/agent/tickets/{ticket_id}")

    async def find(self, case_id: str) -> Ticket | None:
        """The ticket whose external id is ``case_id``, if Zendesk holds one."""
        what = f"find the ticket of case {case_id}"
        response = await self.request(
            "GET",
            f"{self.settings.api_base}/api/v2/tickets.json",
            what=what,
            headers=self._headers(),
            params={"external_id": case_id},
        )
        found = self.json_object(response, what).get("tickets")
        if not isinstance(found, list) or not found or not isinstance(found[0], dict):
            return None
        return self._ticket(found[0].get("id"), what)

    async def create(self, case: case_pb2.Case) -> Ticket:
        existing = await self.find(case.id)
        if existing is not None:
            return existing
        what = f"create a ticket for case {case.id}"
        ticket = {
            "subject": subject(case),
            "comment": {"body": description(case, limit=DESCRIPTION_CHARS), "public": False},
            "external_id": case.id,
            "priority": PRIORITY[priority_of(case)],
            "tags": tags(case),
            "type": self.settings.ticket_type,
        }
        response = await self.request(
            "POST",
            f"{self.settings.api_base}/api/v2/tickets.json",
            what=what,
            headers=self._headers(),
            json_body={"ticket": ticket},
        )
        created = self.json_object(response, what).get("ticket")
        return replace(self._ticket(created.get("id") if isinstance(created, dict) else None, what), created=True)

    async def update(self, case: case_pb2.Case, ticket: Ticket, events: Sequence[case_pb2.CaseEvent]) -> Ticket:
        what = f"update ticket {ticket.remote_id} of case {case.id}"
        changes: dict[str, object] = {"priority": PRIORITY[priority_of(case)]}
        if events:
            changes["comment"] = {"body": update_comment(case, events), "public": False}
        if is_resolved(case):
            changes["status"] = "solved"
        await self.request(
            "PUT",
            f"{self.settings.api_base}/api/v2/tickets/{quote(ticket.remote_id, safe='')}.json",
            what=what,
            headers=self._headers(),
            json_body={"ticket": changes},
        )
        return ticket
