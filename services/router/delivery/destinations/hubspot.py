"""HubSpot Service Hub: one ticket per case through the CRM v3 objects API.

Authentication is a private app's access token (Bearer), with the ``tickets`` scope.

``create`` is idempotent through a custom ticket property (``case_id_property``) that holds the
case id and must be created with "unique value" on: HubSpot then refuses a second ticket with
the same value (409 Conflict), and the adapter answers a 409 by reading the ticket that holds it,
``GET /crm/v3/objects/tickets/<case id>?idProperty=<property>``. Uniqueness is enforced by HubSpot
itself, so no race between replicas can make two tickets.

``update`` first patches the ticket's priority (and moves it to ``closed_stage`` once the case
is resolved), then adds one note associated with the ticket (association type 228, note to
ticket): the step that is not idempotent goes last, so a retry repeats only what is harmless.
A note's body is rich text, so the plain-text comment is HTML-escaped there (``<script>`` shows
as those characters) and only line breaks become ``<br>``. The ticket's ``content`` is plain text.

Priority (HubSpot's ``hs_ticket_priority`` options)::

    Clamor   urgent  high  normal  low
    HubSpot  HIGH    HIGH  MEDIUM  LOW

HubSpot answers 429 without ``Retry-After``; the length of its rate window
(``X-HubSpot-RateLimit-Interval-Milliseconds``) is the wait then.
"""

from __future__ import annotations

import html
from dataclasses import replace
from typing import TYPE_CHECKING, ClassVar
from urllib.parse import quote

from services.router.delivery.destinations.base import DestinationRejectedError, HttpDestination, Ticket
from services.router.delivery.destinations.render import (
    description,
    is_resolved,
    priority_of,
    rfc3339,
    subject,
    update_comment,
)
from services.router.delivery.destinations.settings import HubSpotDestinationSettings

if TYPE_CHECKING:
    from collections.abc import Sequence

    from clamor.v1 import case_pb2
    from services.router.delivery.destinations.render import Priority
    from services.shared.outbound import HttpResponse

PRIORITY: dict[Priority, str] = {"urgent": "HIGH", "high": "HIGH", "normal": "MEDIUM", "low": "LOW"}
# HubSpot's own association type for "note to ticket".
NOTE_TO_TICKET = 228
DESCRIPTION_CHARS = 8000
INTERVAL_HEADER = "x-hubspot-ratelimit-interval-milliseconds"


def note_body(text: str) -> str:
    """Plain text made inert in HubSpot's rich-text note body."""
    return html.escape(text, quote=False).replace("\n", "<br>")


class HubSpotDestination(HttpDestination[HubSpotDestinationSettings]):
    kind: ClassVar[str] = "hubspot"

    def _secrets(self) -> tuple[str, ...]:
        return (self.settings.access_token,)

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.settings.access_token}"}

    def _retry_after(self, response: HttpResponse) -> float | None:
        wait = super()._retry_after(response)
        if wait is None and response.status == 429:
            try:
                return float(response.headers.get(INTERVAL_HEADER, "")) / 1000
            except ValueError:
                return None
        return wait

    def _ticket(self, value: object, what: str) -> Ticket:
        ticket_id = self.require(value, what, "ticket id")
        portal = self.settings.portal_id
        url = f"https://app.hubspot.com/contacts/{portal}/record/0-5/{ticket_id}" if portal else ""
        return Ticket(remote_id=ticket_id, url=url)

    def _url(self, path: str) -> str:
        return f"{self.settings.api_base}/crm/v3/objects/{path}"

    async def find(self, case_id: str) -> Ticket | None:
        """The ticket whose unique case-id property is ``case_id``, if HubSpot holds one."""
        what = f"find the ticket of case {case_id}"
        response = await self.request(
            "GET",
            self._url(f"tickets/{quote(case_id, safe='')}"),
            what=what,
            headers=self._headers(),
            params={"idProperty": self.settings.case_id_property},
            accept={404},
        )
        if response.status == 404:
            return None
        return self._ticket(self.json_object(response, what).get("id"), what)

    async def create(self, case: case_pb2.Case) -> Ticket:
        what = f"create a ticket for case {case.id}"
        properties = {
            "subject": subject(case),
            "content": description(case, limit=DESCRIPTION_CHARS),
            "hs_pipeline": self.settings.pipeline,
            "hs_pipeline_stage": self.settings.open_stage,
            "hs_ticket_priority": PRIORITY[priority_of(case)],
            self.settings.case_id_property: case.id,
        }
        response = await self.request(
            "POST",
            self._url("tickets"),
            what=what,
            headers=self._headers(),
            json_body={"properties": properties},
            accept={409},
        )
        if response.status != 409:
            return replace(self._ticket(self.json_object(response, what).get("id"), what), created=True)
        # The unique property already holds this case id: a ticket made by an earlier attempt.
        existing = await self.find(case.id)
        if existing is None:
            raise DestinationRejectedError(f"{self._describe(what)}: HTTP 409: {self.snippet(response)}")
        return existing

    async def update(self, case: case_pb2.Case, ticket: Ticket, events: Sequence[case_pb2.CaseEvent]) -> Ticket:
        ticket_id = quote(ticket.remote_id, safe="")
        properties = {"hs_ticket_priority": PRIORITY[priority_of(case)]}
        if is_resolved(case):
            properties["hs_pipeline_stage"] = self.settings.closed_stage
        what = f"update ticket {ticket.remote_id} of case {case.id}"
        await self.request(
            "PATCH",
            self._url(f"tickets/{ticket_id}"),
            what=what,
            headers=self._headers(),
            json_body={"properties": properties},
        )
        if events:
            at = rfc3339(events[-1].at) or self._clock().strftime("%Y-%m-%dT%H:%M:%SZ")
            note = {
                "properties": {"hs_timestamp": at, "hs_note_body": note_body(update_comment(case, events))},
                "associations": [
                    {
                        "to": {"id": ticket.remote_id},
                        "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": NOTE_TO_TICKET}],
                    }
                ],
            }
            what = f"add a note to ticket {ticket.remote_id} of case {case.id}"
            await self.request("POST", self._url("notes"), what=what, headers=self._headers(), json_body=note)
        return ticket
