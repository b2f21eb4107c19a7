"""Salesforce Service Cloud: one Case record per case through the REST API.

Authentication is the OAuth 2.0 client credentials flow of a connected app: ``POST
/services/oauth2/token`` with the app's key and secret gives an access token, which is kept and
reused until Salesforce answers 401 (the session expired or was revoked); then one new token is
fetched and the request sent once more. Concurrent callers share one refresh.

``create`` is idempotent through a custom external-id field (``external_id_field``, marked
"External ID" and "Unique") that holds the case id. It first reads
``GET …/sobjects/Case/<field>/<case id>``; a Case found there is returned untouched, so a
re-delivered create cannot undo what an agent changed since. Only on 404 does it upsert with
``PATCH`` on the same path, which creates the record (201) or, had another replica just made
it, updates that one (200): two Cases for one case cannot arise even in that race.

``update`` first sets Priority (and Status to ``closed_status`` once the case is resolved),
then adds one private ``CaseComment``: the step that is not idempotent goes last, so a retry
after a failure repeats only what is harmless to repeat. Case descriptions and comments are plain
text fields.

Priority (the standard Case picklist has no "urgent")::

    Clamor      urgent  high  normal  low
    Salesforce  High    High  Medium  Low

Salesforce refuses calls past the org's daily allowance with 403 ``REQUEST_LIMIT_EXCEEDED``;
that one 403 is retried later rather than dead-lettered.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote

from services.router.delivery.destinations.base import DestinationUnavailableError, HttpDestination, Ticket
from services.router.delivery.destinations.render import description, is_resolved, priority_of, subject, update_comment
from services.router.delivery.destinations.settings import SalesforceDestinationSettings
from services.shared.clock import Clock, system_clock

if TYPE_CHECKING:
    from collections.abc import Collection, Mapping, Sequence

    from clamor.v1 import case_pb2
    from services.router.delivery.destinations.render import Priority
    from services.shared.outbound import HttpResponse, OutboundClient

PRIORITY: dict[Priority, str] = {"urgent": "High", "high": "High", "normal": "Medium", "low": "Low"}
# Case.Subject holds 255 characters, Description 32,000 and CaseComment.CommentBody 4,000.
SUBJECT_CHARS = 255
DESCRIPTION_CHARS = 32000
COMMENT_CHARS = 4000
# The daily allowance is a rolling 24-hour window: calls free up as old ones age out, over minutes.
REQUEST_LIMIT_WAIT_S = 900.0


class SalesforceDestination(HttpDestination[SalesforceDestinationSettings]):
    kind: ClassVar[str] = "salesforce"

    def __init__(
        self,
        settings: SalesforceDestinationSettings,
        *,
        http: OutboundClient | None = None,
        clock: Clock = system_clock,
    ) -> None:
        super().__init__(settings, http=http, clock=clock)
        self._token: str | None = None
        self._token_lock = asyncio.Lock()
        self._data = f"{settings.api_base}/services/data/v{settings.api_version}"

    def _secrets(self) -> tuple[str, ...]:
        return (self.settings.client_secret, self.settings.client_id, self._token or "")

    def _classify(self, response: HttpResponse, what: str) -> Exception | None:
        if response.status == 403 and b"REQUEST_LIMIT_EXCEEDED" in response.body:
            return DestinationUnavailableError(
                f"{self._describe(what)}: HTTP 403: the org's daily API allowance is spent",
                retry_after_s=self._retry_after(response) or REQUEST_LIMIT_WAIT_S,
            )
        return None

    async def _access_token(self, *, stale: str | None = None) -> str:
        """The cached token, or a new one when there is none or ``stale`` was refused."""
        async with self._token_lock:
            if self._token is not None and self._token != stale:
                return self._token
            what = "get an access token"
            response = await self.request(
                "POST",
                f"{self.settings.api_base}/services/oauth2/token",
                what=what,
                form={
                    "grant_type": "client_credentials",
                    "client_id": self.settings.client_id,
                    "client_secret": self.settings.client_secret,
                },
            )
            self._token = self.require(self.json_object(response, what).get("access_token"), what, "access_token")
            return self._token

    async def _api(
        self,
        method: str,
        path: str,
        *,
        what: str,
        json_body: Any = None,
        params: Mapping[str, str] | None = None,
        accept: Collection[int] = (),
    ) -> HttpResponse:
        """Call the REST API with the cached token; on 401 fetch a new token once and send again."""
        url = f"{self._data}{path}"
        token = await self._access_token()
        headers = {"Authorization": f"Bearer {token}"}
        response = await self.request(
            method, url, what=what, headers=headers, params=params, json_body=json_body, accept={401, *accept}
        )
        if response.status != 401:
            return response
        token = await self._access_token(stale=token)
        headers = {"Authorization": f"Bearer {token}"}
        return await self.request(
            method, url, what=what, headers=headers, params=params, json_body=json_body, accept=accept
        )

    def _ticket(self, value: object, what: str) -> Ticket:
        record_id = self.require(value, what, "record id")
        return Ticket(remote_id=record_id, url=f"{self.settings.api_base}/lightning/r/Case/{record_id}/view")

    async def create(self, case: case_pb2.Case) -> Ticket:
        path = f"/sobjects/Case/{self.settings.external_id_field}/{quote(case.id, safe='')}"
        what = f"find the Case of case {case.id}"
        found = await self._api("GET", path, what=what, params={"fields": "Id"}, accept={404})
        if found.status != 404:
            return self._ticket(self.json_object(found, what).get("Id"), what)
        what = f"create a Case for case {case.id}"
        fields = {
            "Subject": subject(case, limit=SUBJECT_CHARS),
            "Description": description(case, limit=DESCRIPTION_CHARS),
            "Priority": PRIORITY[priority_of(case)],
            "Origin": self.settings.origin,
            "Status": self.settings.new_status,
        }
        response = await self._api("PATCH", path, what=what, json_body=fields)
        # Made (201) or, had another attempt just made it, overwritten (200): either way the Case now
        # describes the case as given.
        return replace(self._ticket(self.json_object(response, what).get("id"), what), created=True)

    async def update(self, case: case_pb2.Case, ticket: Ticket, events: Sequence[case_pb2.CaseEvent]) -> Ticket:
        record_id = quote(ticket.remote_id, safe="")
        fields = {"Priority": PRIORITY[priority_of(case)]}
        if is_resolved(case):
            fields["Status"] = self.settings.closed_status
        what = f"update Case {ticket.remote_id} of case {case.id}"
        await self._api("PATCH", f"/sobjects/Case/{record_id}", what=what, json_body=fields)
        if events:
            comment = {
                "ParentId": ticket.remote_id,
                "CommentBody": update_comment(case, events, limit=COMMENT_CHARS),
                "IsPublished": False,
            }
            what = f"comment on Case {ticket.remote_id} of case {case.id}"
            await self._api("POST", "/sobjects/CaseComment", what=what, json_body=comment)
        return ticket
