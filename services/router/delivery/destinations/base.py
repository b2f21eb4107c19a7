"""The one interface every CRM destination implements, and the HTTP call they all share.

A destination keeps one ticket per case in a CRM (or one stream of events at a webhook). The
delivery worker calls :meth:`Destination.create` once per case and :meth:`Destination.update`
with the case's history since the last sync. Delivery is at least once, so ``create`` must be
idempotent: every adapter finds the ticket it made earlier by the case id, which it stores in
the CRM as an external id, and never makes a second one.

Errors say what the worker does next:

- :class:`DestinationUnavailableError` (transient): network trouble, a timeout, 408, 429, 5xx.
  ``retry_after_s`` carries the wait the CRM asked for (``Retry-After``), when it asked.
- :class:`DestinationRejectedError` (permanent): bad credentials, a payload the CRM refuses, a
  redirect. Retrying cannot help: the case is dead-lettered and the configuration fixed.
- :class:`DestinationGoneError` (permanent): 410, the endpoint was retired; disable the destination.

No error message carries a credential or a full URL: messages name the destination, the step
and the status, and quote at most 200 characters of the answer with every secret scrubbed.
"""

from __future__ import annotations

import abc
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from services.router.errors import DestinationError, RouterError
from services.shared.budget import RateBudget
from services.shared.clock import Clock, system_clock
from services.shared.errors import PermanentError
from services.shared.metrics import Metrics
from services.shared.outbound import (
    FetchLimits,
    OutboundClient,
    OutboundError,
    OutboundPolicy,
    RedirectRefusedError,
)
from services.shared.ratelimit import retry_after_seconds

if TYPE_CHECKING:
    from collections.abc import Collection, Mapping, Sequence

    from clamor.v1 import case_pb2
    from services.router.delivery.destinations.settings import DestinationCommonSettings
    from services.shared.outbound import HttpResponse

SettingsT = TypeVar("SettingsT", bound="DestinationCommonSettings")

JSON_TYPE = "application/json"
# Statuses worth retrying besides 5xx: Request Timeout and Too Many Requests.
RETRIED_STATUSES = frozenset({408, 429})
SNIPPET_CHARS = 200


@dataclass(frozen=True)
class Ticket:
    """The destination's record of a case."""

    remote_id: str
    url: str = ""
    # True only when this very call made the ticket, from the case as given. A ticket found (made by
    # an earlier attempt whose answer was lost) may hold an older history: the worker then syncs more.
    created: bool = False


class DestinationUnavailableError(DestinationError):
    """The destination cannot take the case now; retry after ``retry_after_s`` when it is set."""


class DestinationRejectedError(PermanentError, RouterError):
    """The destination refused the request for a reason retrying cannot fix: dead-letter the case."""


class DestinationGoneError(PermanentError, RouterError):
    """The destination answered 410 Gone: it was retired, and the destination must be disabled."""


class Destination(abc.ABC):
    kind: ClassVar[str]
    name: str
    settings: DestinationCommonSettings
    # The destination's rate budget, set by the delivery worker: one token per request sent.
    budget: RateBudget | None = None

    async def spend(self) -> None:
        """Wait for the budget's next token, before each request to the destination."""
        if self.budget is not None:
            await self.budget.acquire()

    @abc.abstractmethod
    async def create(self, case: case_pb2.Case) -> Ticket:
        """Open a ticket for the case. IDEMPOTENT: if the CRM already holds a ticket for case.id (its
        external id), return that ticket and create nothing.

        Return ``Ticket(created=True)`` only for a ticket this call made from ``case``; a found one,
        or one the destination cannot tell apart (a receiver that drops a repeated event), is
        ``created=False`` and the worker sends it what an earlier attempt may have lacked."""

    @abc.abstractmethod
    async def update(self, case: case_pb2.Case, ticket: Ticket, events: Sequence[case_pb2.CaseEvent]) -> Ticket:
        """Bring the ticket up to date: add ``events`` as one internal comment or note, and update
        priority and status (solved or closed when the case is resolved)."""

    async def aclose(self) -> None:
        """Release connections."""
        return


class HttpDestination(Destination, Generic[SettingsT]):
    """A destination that talks HTTP through an :class:`OutboundClient` limited to its ``allow_hosts``.

    A client handed in (``http=``: tests, shared pools) belongs to the caller and is never closed
    here; one the destination builds itself is closed by :meth:`aclose`.
    """

    settings: SettingsT

    def __init__(self, settings: SettingsT, *, http: OutboundClient | None = None, clock: Clock = system_clock) -> None:
        self.name = settings.name
        self.settings = settings
        self._clock = clock
        self._owns_http = http is None
        self._http = http or OutboundClient(
            OutboundPolicy(tuple(settings.allow_hosts)), limits=FetchLimits(timeout_s=settings.timeout_s), clock=clock
        )

    def measure_with(self, metrics: Metrics) -> None:
        """Record this one's HTTP requests (http.client.request.duration) to ``metrics``."""
        self._http.metrics = metrics

    def _secrets(self) -> tuple[str, ...]:
        """Every credential value (and encoding of one) an error message must never show."""
        return ()

    def _retry_after(self, response: HttpResponse) -> float | None:
        """The wait a refusal asks for; ``Retry-After`` (delta-seconds or HTTP date) by default."""
        return retry_after_seconds(dict(response.headers), response.received_at)

    def _classify(self, response: HttpResponse, what: str) -> Exception | None:
        """A vendor-specific error for an answer the generic mapping would get wrong, else None."""
        return None

    def _describe(self, what: str) -> str:
        return f"{self.kind} destination {self.name!r}: {what}"

    def scrub(self, text: str) -> str:
        for secret in self._secrets():
            if len(secret) >= 4:
                text = text.replace(secret, "***")
        return text

    def snippet(self, response: HttpResponse) -> str:
        """The start of an answer's body, on one line and without secrets, for an error message."""
        text = response.body[: SNIPPET_CHARS * 2].decode("utf-8", errors="replace")
        text = self.scrub(" ".join(text.split()))
        return text if len(text) <= SNIPPET_CHARS else text[: SNIPPET_CHARS - 1] + "…"

    async def request(
        self,
        method: str,
        url: str,
        *,
        what: str,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        json_body: Any = None,
        content: bytes | None = None,
        form: Mapping[str, str] | None = None,
        accept: Collection[int] = (),
    ) -> HttpResponse:
        """Send one request and return a 2xx answer (or one whose status is in ``accept``).

        ``json_body`` is serialized here; ``content`` is sent as given (a signed body). Every other
        outcome becomes the destination error that says what to do next. Redirects are never
        followed: credentials and signed bodies go only to the configured host.
        """
        sent_headers = {"Accept": JSON_TYPE} | dict(headers or {})
        if json_body is not None:
            content = json.dumps(json_body, ensure_ascii=False, separators=(",", ":")).encode()
            sent_headers.setdefault("Content-Type", JSON_TYPE)
        await self.spend()
        try:
            response = await self._http.request(
                method, url, headers=sent_headers, params=params, content=content, data=form, follow_redirects=False
            )
        except OutboundError as exc:
            raise DestinationUnavailableError(
                self.scrub(f"{self._describe(what)}: {exc}"), retry_after_s=exc.retry_after_s
            ) from None
        except RedirectRefusedError:
            raise DestinationRejectedError(
                f"{self._describe(what)}: answered with a redirect; configure the final URL"
            ) from None
        except PermanentError as exc:
            raise DestinationRejectedError(self.scrub(f"{self._describe(what)}: {exc}")) from None
        status = response.status
        if 200 <= status < 300 or status in accept:
            return response
        raise self.error_for(response, what)

    def error_for(self, response: HttpResponse, what: str) -> Exception:
        """The error an unwanted answer stands for (the caller raises it)."""
        special = self._classify(response, what)
        if special is not None:
            return special
        status = response.status
        message = f"{self._describe(what)}: HTTP {status}: {self.snippet(response)}"
        if status == 410:
            return DestinationGoneError(f"{message} (the endpoint is gone: disable the destination or fix it)")
        if status in RETRIED_STATUSES or status >= 500:
            return DestinationUnavailableError(message, retry_after_s=self._retry_after(response))
        if 300 <= status < 400:
            return DestinationRejectedError(f"{self._describe(what)}: redirected (HTTP {status}); never followed")
        return DestinationRejectedError(message)

    def json_object(self, response: HttpResponse, what: str) -> dict[str, Any]:
        """The answer's JSON object; unreadable JSON is retried (the CRM may not have finished)."""
        try:
            value = json.loads(response.body)
        except ValueError:
            value = None
        if not isinstance(value, dict):
            raise DestinationUnavailableError(
                f"{self._describe(what)}: HTTP {response.status} without the JSON object expected: "
                f"{self.snippet(response)}"
            )
        return value

    def require(self, value: object, what: str, field: str) -> str:
        """A non-empty id from an answer, as a string; its absence means the answer is not the documented one."""
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
            return str(value)
        raise DestinationUnavailableError(f"{self._describe(what)}: the answer has no {field}")

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()
