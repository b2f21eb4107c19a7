"""Tools for CRM outage tests: a fake CRM server whose port can close and reopen, and a Zendesk that keeps time.

:class:`CrmServer` serves a fake from ``crm_servers`` on one loopback port; :meth:`CrmServer.stop`
closes the port (connections refused, as when the CRM is unreachable) and :meth:`CrmServer.start`
opens the same port again. :class:`TimedZendesk` notes when each request arrived (the monotonic
clock), for which case and how it was answered, which is what retry schedules and rate budgets are
checked against; with ``down`` set it answers 503 without ``Retry-After`` once the scripted faults
are spent. :func:`losing_first_answer` makes a CRM do a request's work and then lose its answer.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from itertools import pairwise

from aiohttp import web

from tests.http_server import Handler
from tests.integration.crm_servers import FakeCrm, FakeZendesk, Routes


@dataclass(frozen=True)
class Arrival:
    at: float
    case_id: str
    method: str
    status: int
    # The Retry-After the answer carried, 0 when it asked for no wait.
    retry_after_s: float


@dataclass
class TimedZendesk(FakeZendesk):
    arrivals: list[Arrival] = field(default_factory=list)
    down: bool = False

    def routes(self) -> Routes:
        return {route: self._timed(handler) for route, handler in super().routes().items()}

    def _timed(self, handler: Handler) -> Handler:
        async def timed(request: web.Request) -> web.StreamResponse:
            at = time.monotonic()
            case_id = await self._case_of(request)
            if self.down and not self.faults:
                response: web.StreamResponse = web.Response(status=503, text="Service Unavailable")
            else:
                response = await handler(request)
            retry_after = float(response.headers.get("Retry-After", "0"))
            self.arrivals.append(Arrival(at, case_id, request.method, response.status, retry_after))
            return response

        return timed

    async def _case_of(self, request: web.Request) -> str:
        if request.method == "GET":
            return request.query.get("external_id", "")
        if request.method == "POST":
            return str((await request.json()).get("ticket", {}).get("external_id", ""))
        return str(self.tickets.get(int(request.match_info["id"]), {}).get("external_id", ""))

    def external_ids(self) -> list[str]:
        return sorted(str(ticket["external_id"]) for ticket in self.tickets.values())


def losing_first_answer(handler: Handler, before_loss: Callable[[], Awaitable[None]]) -> Handler:
    """``handler``, whose first 2xx answer is lost: the work is done, ``before_loss`` runs, the connection drops.

    The caller sees the connection close without an answer, as when a network or a proxy fails after
    the CRM committed; ``before_loss`` lets the test change the world (a second post joins the case)
    before the caller learns that it must retry.
    """
    lost = False

    async def losing(request: web.Request) -> web.StreamResponse:
        nonlocal lost
        response = await handler(request)
        if lost or not 200 <= response.status < 300:
            return response
        lost = True
        await before_loss()
        if request.transport is not None:
            request.transport.abort()
        return response

    return losing


class CrmServer:
    """A fake CRM on a loopback port that stays the same across :meth:`stop` and :meth:`start`."""

    def __init__(self, fake: FakeCrm) -> None:
        self.fake = fake
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        for (method, path), handler in self.fake.routes().items():
            app.router.add_route(method, path, handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", self.port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = runner.addresses[0][1]
        self.fake.base_url = f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        """Close the port and every open connection: requests now fail to connect."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()


@asynccontextmanager
async def crm_server(fake: FakeCrm, *, running: bool = True) -> AsyncIterator[CrmServer]:
    """A :class:`CrmServer` with a port of its own; ``running=False`` leaves that port closed (the CRM is down)."""
    server = CrmServer(fake)
    await server.start()
    if not running:
        await server.stop()
    try:
        yield server
    finally:
        await server.stop()


def busiest_second(times: list[float]) -> int:
    """The most events in any window of one second."""
    ordered = sorted(times)
    return max((bisect_left(ordered, start + 1.0) - i for i, start in enumerate(ordered)), default=0)


def early_retries(arrivals: list[Arrival], *, first_s: float, max_s: float, floor_s: float) -> list[str]:
    """Requests of a case that came sooner after a failure than its Retry-After or the equal-jitter backoff allow.

    The backoff after attempt n is at least half its step, ``min(max_s, first_s * 2**(n-1)) / 2``, and never
    under the consumer's ``floor_s``. A failure ends its attempt, so a case's n-th failure is attempt n or later.
    """
    by_case: dict[str, list[Arrival]] = defaultdict(list)
    for arrival in arrivals:
        by_case[arrival.case_id].append(arrival)
    early = []
    for case_id, seen in by_case.items():
        failures = 0
        for failed, retry in pairwise(seen):
            if failed.status < 500:
                continue
            failures += 1
            floor = max(failed.retry_after_s, floor_s, min(max_s, first_s * 2.0 ** (failures - 1)) / 2)
            if retry.at - failed.at < floor:
                early.append(f"{case_id}: {retry.at - failed.at:.2f}s after a {failed.status} (at least {floor:.2f}s)")
    return early
