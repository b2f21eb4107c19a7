"""ServiceNow: one incident per case through the Table API.

Authentication is HTTP Basic (an integration user) or an OAuth bearer token.

``create`` is idempotent through the incident's ``correlation_id``, which holds the case id
(``correlation_display`` says "Clamor", the field's documented use for integrations): it first
queries ``GET /api/now/table/incident?sysparm_query=correlation_id=<case id>`` and returns the
incident found; only when there is none does it ``POST`` a new one. The case id goes into an
encoded query, where ``^`` joins conditions, so an id holding ``^``, ``=`` or a comma (never one
Clamor makes) is refused rather than sent.

``update`` is one ``PATCH`` of the incident: the comment as ``work_notes`` (internal, never sent
to the caller), urgency and impact, and once the case is resolved ``state`` 6 (Resolved) with the
``close_code`` and ``close_notes`` the instance requires for it. Journal fields render
``[code]…[/code]`` as HTML, which the renderer breaks up in everything a post supplied.

Priority is derived by the instance from impact and urgency (1 high, 3 low)::

    Clamor   urgent  high  normal  low
    urgency  1       1     2       3
    impact   1       2     2       2
    → priority 1 Critical, 2 High, 3 Moderate, 4 Low
"""

from __future__ import annotations

import base64
import re
from dataclasses import replace
from typing import TYPE_CHECKING, ClassVar
from urllib.parse import quote

from services.router.delivery.destinations.base import DestinationRejectedError, HttpDestination, Ticket
from services.router.delivery.destinations.render import (
    description,
    is_resolved,
    priority_of,
    subject,
    update_comment,
)
from services.router.delivery.destinations.settings import ServiceNowDestinationSettings

if TYPE_CHECKING:
    from collections.abc import Sequence

    from clamor.v1 import case_pb2
    from services.router.delivery.destinations.render import Priority

# (urgency, impact) per priority.
URGENCY_IMPACT: dict[Priority, tuple[str, str]] = {
    "urgent": ("1", "1"),
    "high": ("1", "2"),
    "normal": ("2", "2"),
    "low": ("3", "2"),
}
RESOLVED_STATE = "6"
FIELDS = "sys_id,number"
# short_description holds 160 characters; description and journal entries are kept to 4,000.
SUBJECT_CHARS = 160
TEXT_CHARS = 4000
# What an id may hold inside an encoded query: no "^" (joins conditions), "=", "," or spaces.
_SAFE_QUERY_VALUE = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")


class ServiceNowDestination(HttpDestination[ServiceNowDestinationSettings]):
    kind: ClassVar[str] = "servicenow"

    def _credential(self) -> str:
        if self.settings.token:
            return f"Bearer {self.settings.token}"
        raw = f"{self.settings.username}:{self.settings.password}"
        return "Basic " + base64.b64encode(raw.encode()).decode("ascii")

    def _secrets(self) -> tuple[str, ...]:
        return (self.settings.password, self.settings.token, self._credential().split(" ", 1)[1])

    def _headers(self) -> dict[str, str]:
        return {"Authorization": self._credential()}

    def _table(self) -> str:
        return f"{self.settings.api_base}/api/now/table/incident"

    def _ticket(self, record: object, what: str) -> Ticket:
        fields = record if isinstance(record, dict) else {}
        sys_id = self.require(fields.get("sys_id"), what, "sys_id")
        return Ticket(
            remote_id=sys_id, url=f"{self.settings.api_base}/nav_to.do?uri=incident.do%3Fsys_id%3D{quote(sys_id)}"
        )

    async def find(self, case_id: str) -> Ticket | None:
        """The incident whose correlation id is ``case_id``, if the instance holds one."""
        what = f"find the incident of case {case_id}"
        if not _SAFE_QUERY_VALUE.match(case_id):
            raise DestinationRejectedError(f"{self._describe(what)}: the case id cannot be used in a query")
        response = await self.request(
            "GET",
            self._table(),
            what=what,
            headers=self._headers(),
            params={"sysparm_query": f"correlation_id={case_id}", "sysparm_limit": "1", "sysparm_fields": FIELDS},
        )
        found = self.json_object(response, what).get("result")
        if not isinstance(found, list) or not found:
            return None
        return self._ticket(found[0], what)

    async def create(self, case: case_pb2.Case) -> Ticket:
        existing = await self.find(case.id)
        if existing is not None:
            return existing
        what = f"create an incident for case {case.id}"
        urgency, impact = URGENCY_IMPACT[priority_of(case)]
        incident = {
            "short_description": subject(case, limit=SUBJECT_CHARS),
            "description": description(case, limit=TEXT_CHARS),
            "correlation_id": case.id,
            "correlation_display": "Clamor",
            "urgency": urgency,
            "impact": impact,
        }
        if self.settings.caller_id:
            incident["caller_id"] = self.settings.caller_id
        response = await self.request(
            "POST",
            self._table(),
            what=what,
            headers=self._headers(),
            params={"sysparm_fields": FIELDS},
            json_body=incident,
        )
        return replace(self._ticket(self.json_object(response, what).get("result"), what), created=True)

    async def update(self, case: case_pb2.Case, ticket: Ticket, events: Sequence[case_pb2.CaseEvent]) -> Ticket:
        urgency, impact = URGENCY_IMPACT[priority_of(case)]
        changes = {"urgency": urgency, "impact": impact}
        comment = update_comment(case, events, limit=TEXT_CHARS) if events else ""
        if comment:
            changes["work_notes"] = comment
        if is_resolved(case):
            changes |= {
                "state": RESOLVED_STATE,
                "close_code": self.settings.close_code,
                "close_notes": comment or f"Clamor case {case.id} was resolved.",
            }
        what = f"update incident {ticket.remote_id} of case {case.id}"
        await self.request(
            "PATCH",
            f"{self._table()}/{quote(ticket.remote_id, safe='')}",
            what=what,
            headers=self._headers(),
            params={"sysparm_fields": FIELDS},
            json_body=changes,
        )
        return ticket
