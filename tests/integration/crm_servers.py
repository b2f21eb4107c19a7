"""Local stand-ins for the CRMs the router writes to, written from each vendor's API documentation.

Each fake keeps its records in memory, checks credentials the way the vendor does, validates
what the vendor validates where an adapter could get it wrong (required fields, picklist values,
unique external ids), and answers with the documented status codes and JSON shapes, errors
included. Served by :func:`tests.http_server.serve`, every request is also recorded, so a test
asserts exactly what was sent.

``fail_next`` scripts trouble: the next N requests get a given status and headers (``503`` with
``Retry-After: 2``, a ``429``, a ``302`` to elsewhere) before any other check.
"""

from __future__ import annotations

import abc
import base64
import json
import re
from collections import deque
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from services.shared.standard_webhooks import WebhookVerificationError, verify
from tests.http_server import Handler, LocalHttpServer, serve

Routes = dict[tuple[str, str], Handler]


@dataclass(frozen=True)
class Fault:
    status: int
    headers: Mapping[str, str]
    body: bytes


def respond(value: Any, *, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response(value, status=status, headers=headers)


@dataclass
class FakeCrm(abc.ABC):
    """What every fake does: scripted faults first, then the credential check, then the API."""

    faults: deque[Fault] = field(default_factory=deque)
    base_url: str = ""

    def fail_next(
        self, count: int, status: int, *, headers: Mapping[str, str] | None = None, body: bytes = b""
    ) -> None:
        self.faults.extend(Fault(status, dict(headers or {}), body) for _ in range(count))

    @abc.abstractmethod
    def routes(self) -> Routes:
        """``{(method, path): handler}``, each handler wrapped by :meth:`guard`."""

    @abc.abstractmethod
    def authorized(self, request: web.Request) -> bool: ...

    @abc.abstractmethod
    def unauthorized(self) -> web.Response:
        """The vendor's documented answer to missing or wrong credentials."""

    def guard(self, handler: Handler, *, auth: bool = True) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            if self.faults:
                fault = self.faults.popleft()
                return web.Response(status=fault.status, headers=fault.headers, body=fault.body)
            if auth and not self.authorized(request):
                return self.unauthorized()
            return await handler(request)

        return guarded


@asynccontextmanager
async def serve_crm(fake: FakeCrm) -> AsyncIterator[LocalHttpServer]:
    async with serve(fake.routes()) as server:
        fake.base_url = server.base_url
        yield server


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# --- Zendesk Support: Tickets API -------------------------------------------------------------


@dataclass
class FakeZendesk(FakeCrm):
    email: str = "agent@acme.example"
    api_token: str = "zd-token-6d1f3a"
    tickets: dict[int, dict[str, Any]] = field(default_factory=dict)
    comments: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    next_id: int = 35436

    def routes(self) -> Routes:
        return {
            ("GET", "/api/v2/tickets.json"): self.guard(self.list_tickets),
            ("POST", "/api/v2/tickets.json"): self.guard(self.create_ticket),
            ("PUT", r"/api/v2/tickets/{id:\d+}.json"): self.guard(self.update_ticket),
        }

    def authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == basic(f"{self.email}/token", self.api_token)

    def unauthorized(self) -> web.Response:
        return respond({"error": "Couldn't authenticate you"}, status=401)

    def add_ticket(self, external_id: str, *, subject: str = "Opened by hand") -> int:
        ticket_id, self.next_id = self.next_id, self.next_id + 1
        self.tickets[ticket_id] = {"id": ticket_id, "external_id": external_id, "subject": subject, "status": "open"}
        self.comments[ticket_id] = []
        return ticket_id

    def _shown(self, ticket_id: int) -> dict[str, Any]:
        return {"url": f"{self.base_url}/api/v2/tickets/{ticket_id}.json"} | self.tickets[ticket_id]

    async def list_tickets(self, request: web.Request) -> web.Response:
        external_id = request.query.get("external_id")
        found = [self._shown(i) for i, t in self.tickets.items() if external_id in (None, t["external_id"])]
        return respond({"tickets": found, "next_page": None, "previous_page": None, "count": len(found)})

    async def create_ticket(self, request: web.Request) -> web.Response:
        ticket = (await request.json()).get("ticket", {})
        comment = ticket.get("comment", {})
        if not comment.get("body") or ticket.get("priority") not in ("urgent", "high", "normal", "low"):
            details = {"description": [{"description": "Description: cannot be blank", "error": "BlankValue"}]}
            return respond(
                {"error": "RecordInvalid", "description": "Record validation errors", "details": details}, status=422
            )
        ticket_id = self.add_ticket(ticket.get("external_id"), subject=ticket["subject"])
        fields = {k: ticket[k] for k in ("priority", "tags", "type") if k in ticket}
        self.tickets[ticket_id] |= fields | {"status": "new", "description": comment["body"]}
        self.comments[ticket_id].append(comment)
        location = {"Location": f"{self.base_url}/api/v2/tickets/{ticket_id}.json"}
        return respond({"ticket": self._shown(ticket_id)}, status=201, headers=location)

    async def update_ticket(self, request: web.Request) -> web.Response:
        ticket_id = int(request.match_info["id"])
        if ticket_id not in self.tickets:
            return respond({"error": "RecordNotFound", "description": "Not found"}, status=404)
        changes = (await request.json()).get("ticket", {})
        if "comment" in changes:
            self.comments[ticket_id].append(changes.pop("comment"))
        self.tickets[ticket_id] |= {k: v for k, v in changes.items() if k in ("priority", "status", "tags")}
        return respond({"ticket": self._shown(ticket_id), "audit": {"ticket_id": ticket_id, "events": []}})


# --- Salesforce: OAuth 2.0 client credentials and the REST API (sObjects) ----------------------

SF_DATA = "/services/data/v61.0/sobjects"


@dataclass
class FakeSalesforce(FakeCrm):
    client_id: str = "3MVG9-consumer-key"
    client_secret: str = "sf-secret-8c2b1e"
    external_id_field: str = "Clamor_Case_Id__c"
    issued: list[str] = field(default_factory=list)
    valid: set[str] = field(default_factory=set)
    cases: dict[str, dict[str, Any]] = field(default_factory=dict)
    comments: list[dict[str, Any]] = field(default_factory=list)
    # Revoked app or user: every token is issued and then refused.
    refuse_sessions: bool = False

    def routes(self) -> Routes:
        return {
            ("POST", "/services/oauth2/token"): self.guard(self.token, auth=False),
            ("GET", SF_DATA + "/Case/{field}/{value}"): self.guard(self.read_by_external_id),
            ("PATCH", SF_DATA + "/Case/{field}/{value}"): self.guard(self.upsert),
            ("PATCH", SF_DATA + "/Case/{id}"): self.guard(self.update_case),
            ("POST", SF_DATA + "/CaseComment"): self.guard(self.add_comment),
        }

    def authorized(self, request: web.Request) -> bool:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        return scheme == "Bearer" and token in self.valid and not self.refuse_sessions

    def unauthorized(self) -> web.Response:
        return respond([{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}], status=401)

    def expire_sessions(self) -> None:
        self.valid.clear()

    def add_case(self, external_id: str, **fields: Any) -> str:
        record_id = f"500{len(self.cases) + 1:012d}AAA"
        self.cases[record_id] = {"Id": record_id, self.external_id_field: external_id, "Status": "New"} | fields
        return record_id

    def _find(self, value: str) -> str | None:
        return next((i for i, c in self.cases.items() if c.get(self.external_id_field) == value), None)

    async def token(self, request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("grant_type") != "client_credentials":
            return respond(
                {"error": "unsupported_grant_type", "error_description": "grant type not supported"}, status=400
            )
        if (form.get("client_id"), form.get("client_secret")) != (self.client_id, self.client_secret):
            return respond({"error": "invalid_client", "error_description": "invalid client credentials"}, status=400)
        token = f"00D5g000004Sfake!AQ{len(self.issued) + 1}"
        self.issued.append(token)
        self.valid.add(token)
        return respond(
            {
                "access_token": token,
                "signature": "c2lnbmF0dXJl",
                "scope": "api",
                "instance_url": self.base_url,
                "id": f"{self.base_url}/id/00D5g000004Sfake/0055g00000Afake",
                "token_type": "Bearer",
                "issued_at": "1772366400000",
            }
        )

    def _external(self, request: web.Request) -> web.Response | None:
        if request.match_info["field"] != self.external_id_field:
            message = f"Provided external ID field does not exist or is not accessible: {request.match_info['field']}"
            return respond([{"errorCode": "NOT_FOUND", "message": message}], status=404)
        return None

    async def read_by_external_id(self, request: web.Request) -> web.Response:
        if (refused := self._external(request)) is not None:
            return refused
        record_id = self._find(request.match_info["value"])
        if record_id is None:
            return respond([{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}], status=404)
        fields = request.query.get("fields", "Id").split(",")
        record = {k: v for k, v in self.cases[record_id].items() if k in fields}
        return respond({"attributes": {"type": "Case", "url": f"{SF_DATA}/Case/{record_id}"}} | record)

    def _invalid(self, fields: Mapping[str, Any]) -> web.Response | None:
        if self.external_id_field in fields:
            message = f"{self.external_id_field} is the external id in the URL and may not be set in the body"
            return respond([{"message": message, "errorCode": "INVALID_FIELD", "fields": []}], status=400)
        if fields.get("Priority", "Medium") not in ("High", "Medium", "Low"):
            message = f"bad value for restricted picklist field: {fields['Priority']}"
            return respond(
                [{"message": message, "errorCode": "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", "fields": ["Priority"]}],
                status=400,
            )
        return None

    async def upsert(self, request: web.Request) -> web.Response:
        if (refused := self._external(request)) is not None:
            return refused
        fields = await request.json()
        if (refused := self._invalid(fields)) is not None:
            return refused
        record_id = self._find(request.match_info["value"])
        created = record_id is None
        if record_id is None:
            record_id = self.add_case(request.match_info["value"])
        self.cases[record_id] |= fields
        answer = {"id": record_id, "success": True, "errors": [], "created": created}
        return respond(answer, status=201 if created else 200)

    async def update_case(self, request: web.Request) -> web.StreamResponse:
        record_id = request.match_info["id"]
        if record_id not in self.cases:
            return respond([{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}], status=404)
        fields = await request.json()
        if (refused := self._invalid(fields)) is not None:
            return refused
        self.cases[record_id] |= fields
        return web.Response(status=204)

    async def add_comment(self, request: web.Request) -> web.Response:
        comment = await request.json()
        if comment.get("ParentId") not in self.cases or len(comment.get("CommentBody", "")) > 4000:
            message = "field integrity exception: ParentId (parent record does not exist) or CommentBody too long"
            return respond([{"message": message, "errorCode": "FIELD_INTEGRITY_EXCEPTION", "fields": []}], status=400)
        self.comments.append(comment)
        return respond({"id": f"00a{len(self.comments):012d}AAA", "success": True, "errors": []}, status=201)


# --- HubSpot: CRM v3 objects (tickets, notes) --------------------------------------------------


@dataclass
class FakeHubSpot(FakeCrm):
    access_token: str = "pat-na1-11111111-2222-3333-4444-555555555555"
    unique_property: str = "clamor_case_id"
    tickets: dict[str, dict[str, str]] = field(default_factory=dict)
    notes: list[dict[str, Any]] = field(default_factory=list)
    next_id: int = 1786110000

    def routes(self) -> Routes:
        return {
            ("POST", "/crm/v3/objects/tickets"): self.guard(self.create_ticket),
            ("GET", "/crm/v3/objects/tickets/{id}"): self.guard(self.read_ticket),
            ("PATCH", "/crm/v3/objects/tickets/{id}"): self.guard(self.update_ticket),
            ("POST", "/crm/v3/objects/notes"): self.guard(self.create_note),
        }

    def authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.access_token}"

    def unauthorized(self) -> web.Response:
        message = "Authentication credentials not found. This API supports OAuth 2.0 authentication."
        return self.error(401, message, "INVALID_AUTHENTICATION")

    @staticmethod
    def error(status: int, message: str, category: str) -> web.Response:
        body = {"status": "error", "message": message, "correlationId": "0d1e6c1a-7f8e", "category": category}
        return respond(body, status=status)

    def add_ticket(self, case_id: str, **properties: str) -> str:
        ticket_id, self.next_id = str(self.next_id), self.next_id + 1
        self.tickets[ticket_id] = {"hs_object_id": ticket_id, self.unique_property: case_id} | properties
        return ticket_id

    def _shown(self, ticket_id: str) -> dict[str, Any]:
        stamp = "2026-03-01T12:00:02.000Z"
        properties = self.tickets[ticket_id]
        return {"id": ticket_id, "properties": properties, "createdAt": stamp, "updatedAt": stamp, "archived": False}

    async def create_ticket(self, request: web.Request) -> web.Response:
        properties = (await request.json()).get("properties", {})
        missing = [p for p in ("subject", "hs_pipeline", "hs_pipeline_stage") if not properties.get(p)]
        if missing or properties.get("hs_ticket_priority") not in ("LOW", "MEDIUM", "HIGH"):
            return self.error(400, f"Property values were not valid: {missing}", "VALIDATION_ERROR")
        case_id = properties.get(self.unique_property)
        if any(t.get(self.unique_property) == case_id for t in self.tickets.values()):
            message = f"A ticket with {self.unique_property} {case_id} already exists"
            return self.error(409, message, "CONFLICT")
        ticket_id = self.add_ticket(case_id, **properties)
        return respond(self._shown(ticket_id), status=201)

    def _lookup(self, request: web.Request) -> str | None:
        key = request.match_info["id"]
        prop = request.query.get("idProperty")
        if prop is None:
            return key if key in self.tickets else None
        return next((i for i, t in self.tickets.items() if t.get(prop) == key), None)

    async def read_ticket(self, request: web.Request) -> web.Response:
        ticket_id = self._lookup(request)
        if ticket_id is None:
            return self.error(404, "Object not found.  objectId are usually numeric.", "OBJECT_NOT_FOUND")
        return respond(self._shown(ticket_id))

    async def update_ticket(self, request: web.Request) -> web.Response:
        ticket_id = self._lookup(request)
        if ticket_id is None:
            return self.error(404, "Object not found.  objectId are usually numeric.", "OBJECT_NOT_FOUND")
        self.tickets[ticket_id] |= (await request.json()).get("properties", {})
        return respond(self._shown(ticket_id))

    async def create_note(self, request: web.Request) -> web.Response:
        note = await request.json()
        targets = [a["to"]["id"] for a in note.get("associations", []) if a["types"][0]["associationTypeId"] == 228]
        if not note.get("properties", {}).get("hs_timestamp") or not all(t in self.tickets for t in targets):
            return self.error(400, "Property values were not valid: hs_timestamp or association", "VALIDATION_ERROR")
        self.notes.append(note)
        return respond({"id": str(5_000 + len(self.notes)), "properties": note["properties"]}, status=201)


# --- ServiceNow: Table API (incident) ------------------------------------------------------------


@dataclass
class FakeServiceNow(FakeCrm):
    username: str = "clamor.integration"
    password: str = "sn-pass-4e9a7c"
    token: str = ""
    incidents: dict[str, dict[str, str]] = field(default_factory=dict)
    work_notes: dict[str, list[str]] = field(default_factory=dict)

    def routes(self) -> Routes:
        return {
            ("GET", "/api/now/table/incident"): self.guard(self.query),
            ("POST", "/api/now/table/incident"): self.guard(self.insert),
            ("PATCH", "/api/now/table/incident/{sys_id}"): self.guard(self.update),
        }

    def authorized(self, request: web.Request) -> bool:
        sent = request.headers.get("Authorization")
        return sent == (f"Bearer {self.token}" if self.token else basic(self.username, self.password))

    def unauthorized(self) -> web.Response:
        error = {"message": "User Not Authenticated", "detail": "Required to provide Auth information"}
        return respond({"error": error, "status": "failure"}, status=401)

    def add_incident(self, correlation_id: str, **fields: str) -> str:
        number = f"INC{len(self.incidents) + 10001:07d}"
        sys_id = f"{len(self.incidents) + 1:032x}"
        self.incidents[sys_id] = {"sys_id": sys_id, "number": number, "correlation_id": correlation_id, "state": "1"}
        self.incidents[sys_id] |= fields
        self.work_notes[sys_id] = []
        return sys_id

    @staticmethod
    def _fields(record: Mapping[str, str], request: web.Request) -> dict[str, str]:
        wanted = request.query.get("sysparm_fields")
        return dict(record) if wanted is None else {k: v for k, v in record.items() if k in wanted.split(",")}

    async def query(self, request: web.Request) -> web.Response:
        match = re.fullmatch(r"correlation_id=([^^]*)", request.query.get("sysparm_query", ""))
        if match is None:
            error = {"message": "Invalid query", "detail": "this fake understands correlation_id=<value> only"}
            return respond({"error": error, "status": "failure"}, status=400)
        found = [r for r in self.incidents.values() if r["correlation_id"] == match.group(1)]
        limit = int(request.query.get("sysparm_limit", "10000"))
        return respond({"result": [self._fields(r, request) for r in found[:limit]]})

    async def insert(self, request: web.Request) -> web.Response:
        fields = await request.json()
        if not fields.get("short_description") or any(
            fields.get(k) not in ("1", "2", "3") for k in ("urgency", "impact")
        ):
            error = {"message": "Operation Failed", "detail": "short_description, urgency and impact are required"}
            return respond({"error": error, "status": "failure"}, status=400)
        sys_id = self.add_incident(fields.pop("correlation_id", ""), **fields)
        location = {"Location": f"{self.base_url}/api/now/table/incident/{sys_id}"}
        return respond({"result": self._fields(self.incidents[sys_id], request)}, status=201, headers=location)

    async def update(self, request: web.Request) -> web.Response:
        sys_id = request.match_info["sys_id"]
        if sys_id not in self.incidents:
            error = {
                "message": "No Record found",
                "detail": "Record doesn't exist or ACL restricts the record retrieval",
            }
            return respond({"error": error, "status": "failure"}, status=404)
        fields = await request.json()
        if fields.get("state") == "6" and not (fields.get("close_code") and fields.get("close_notes")):
            detail = "Data Policy Exception: The following fields are mandatory: Resolution code, Resolution notes"
            return respond(
                {"error": {"message": "Operation Failed", "detail": detail}, "status": "failure"}, status=403
            )
        if note := fields.pop("work_notes", ""):
            self.work_notes[sys_id].append(note)
        self.incidents[sys_id] |= fields
        return respond({"result": self._fields(self.incidents[sys_id], request)})


# --- A generic receiver of Standard Webhooks ----------------------------------------------------

HOOK_PATH = "/hooks/clamor"


@dataclass
class FakeWebhookReceiver(FakeCrm):
    """Verifies every signature with the secrets it knows and keeps one event per ``webhook-id``."""

    secrets: list[str] = field(default_factory=list)
    now: float = 0.0
    events: dict[str, dict[str, Any]] = field(default_factory=dict)

    def routes(self) -> Routes:
        return {("POST", HOOK_PATH): self.guard(self.receive, auth=False)}

    def authorized(self, request: web.Request) -> bool:
        return True

    def unauthorized(self) -> web.Response:
        return web.Response(status=401, text="bad signature")

    async def receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            verify(self.secrets, dict(request.headers), body, now=self.now)
        except WebhookVerificationError as exc:
            return web.Response(status=401, text=f"bad signature: {exc}")
        # A repeat of a delivery already taken is acknowledged and dropped.
        self.events.setdefault(request.headers["webhook-id"], json.loads(body))
        return web.Response(status=204)
