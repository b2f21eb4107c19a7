"""``clamor dashboard``: a read-only web page of trends, alerts and cases, served by the CLI from gRPC APIs.

:class:`DashboardServer` is a small aiohttp server. It serves the page's three static files from
``services/cli_data/dashboard/`` (read once, served by name from an allow-list, so no request can
reach another file) and three JSON endpoints that each make one call, to the reputation service or
the router:

- ``GET /api/trends?watch=&hours=&verdict=``: the reputation service's ``GetTrends``
- ``GET /api/alerts?firing_only=&limit=``: the reputation service's ``ListAlerts`` (one page)
- ``GET /api/cases?limit=``: the router's ``ListCases``

Answers are the services' messages as JSON (``MessageToDict`` with the proto field names). A failed
call becomes ``{"error": "..."}`` with 503 (service down or not ready) or 502 (anything else), which
the page shows as a banner. Every response carries a Content-Security-Policy that allows only the
server itself, since the page shows posts written by strangers.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import signal
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import TYPE_CHECKING, Annotated, Any

import grpc
import typer
from aiohttp import web
from google.protobuf.json_format import MessageToDict
from rich.console import Console
from rich.markup import escape

from clamor.v1 import reputation_service_pb2, router_service_pb2, triage_pb2
from services.cli import clients
from services.cli.config_in_use import ConfigOption, mesh_in_use
from services.cli.trends import TIMEOUT_S, service_problem

if TYPE_CHECKING:
    from google.protobuf.message import Message

    from services.cli.clients import ReputationStub, RouterStub

log = logging.getLogger(__name__)
console = Console()
errors = Console(stderr=True, soft_wrap=True)

STATIC_TYPES = {
    "index.html": "text/html",
    "app.js": "text/javascript",
    "style.css": "text/css",
    "favicon.svg": "image/svg+xml",
}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # Links to posts leave for other sites: they need not learn where the dashboard runs.
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}
LOCAL_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
MAX_HOURS = 720


def _static_files() -> dict[str, bytes]:
    folder = resources.files("services.cli_data").joinpath("dashboard")
    return {name: folder.joinpath(name).read_bytes() for name in STATIC_TYPES}


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers={"Cache-Control": "no-store"})


def _int_query(request: web.Request, name: str, *, default: int, low: int, high: int) -> int:
    raw = request.query.get(name, "")
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": f"{name} must be a whole number from {low} to {high}"}),
            content_type="application/json",
        )
    return value


class DashboardServer:
    """The dashboard's HTTP server: ``await start()`` returns the bound port, ``await stop()`` closes it."""

    def __init__(
        self,
        router_address: str,
        reputation_address: str,
        host: str = "127.0.0.1",
        port: int = 8088,
        *,
        refresh_s: float = 30.0,
    ) -> None:
        self.router_address = router_address
        self.reputation_address = reputation_address
        self.host = host
        self.port = port
        self.refresh_s = refresh_s
        self._files = _static_files()
        self._runner: web.AppRunner | None = None
        self._channels: list[grpc.aio.Channel] = []
        self._stub: RouterStub | None = None
        self._reputation: ReputationStub | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    async def start(self) -> int:
        """Listen on host and port (0: any free port); return the port. Raises OSError when it is taken."""
        # Each service is reconnected within seconds of coming back, not after gRPC's default backoff.
        router = clients.open_channel(self.router_address, options=clients.RECONNECT_FAST)
        reputation = clients.open_channel(self.reputation_address, options=clients.RECONNECT_FAST)
        self._channels = [router, reputation]
        self._stub = clients.router(router)
        self._reputation = clients.reputation(reputation)
        self._runner = web.AppRunner(self._app(), access_log=None)
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, self.host, self.port).start()
        except OSError:
            await self.stop()
            raise
        self.port = int(self._runner.addresses[0][1])
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        for channel in self._channels:
            await channel.close()
        self._channels = []
        self._stub = self._reputation = None

    def _app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard])
        app.on_response_prepare.append(_add_security_headers)
        app.router.add_get("/", self._index)
        app.router.add_get("/api/config", self._config)
        app.router.add_get("/api/trends", self._trends)
        app.router.add_get("/api/alerts", self._alerts)
        app.router.add_get("/api/cases", self._cases)
        app.router.add_get("/{name}", self._static)
        return app

    @web.middleware
    async def _guard(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        # Bound to loopback, only requests addressed to loopback are answered: a page elsewhere
        # cannot read the cases through a DNS name it re-points at 127.0.0.1.
        try:
            if _is_loopback(self.host) and request.url.host not in LOCAL_NAMES:
                return _error(421, f"this dashboard answers only to localhost, not {request.host!r}")
            return await handler(request)
        except web.HTTPException:
            raise
        except Exception:
            log.exception("dashboard request %s failed", request.path)
            return _error(500, "the dashboard failed to answer; its log has the details")

    async def _index(self, request: web.Request) -> web.Response:
        return self._file("index.html")

    async def _static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in self._files:
            raise web.HTTPNotFound
        return self._file(name)

    def _file(self, name: str) -> web.Response:
        return web.Response(
            body=self._files[name],
            content_type=STATIC_TYPES[name],
            charset="utf-8" if STATIC_TYPES[name].startswith("text/") else None,
            headers={"Cache-Control": "no-cache"},
        )

    async def _config(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"refresh_s": self.refresh_s, "router": self.router_address, "reputation": self.reputation_address}
        )

    async def _trends(self, request: web.Request) -> web.Response:
        verdict = request.query.get("verdict", "") or "complaint"
        if verdict not in ("complaint", "noise"):
            return _error(400, "verdict must be complaint or noise")
        ask = reputation_service_pb2.GetTrendsRequest(
            watch=request.query.get("watch", ""),
            hours=_int_query(request, "hours", default=48, low=1, high=MAX_HOURS),
            counted_verdict=triage_pb2.VERDICT_NOISE if verdict == "noise" else triage_pb2.VERDICT_COMPLAINT,
        )
        return await self._ask_reputation("GetTrends", lambda stub: stub.GetTrends(ask, timeout=TIMEOUT_S))

    async def _alerts(self, request: web.Request) -> web.Response:
        ask = reputation_service_pb2.ListAlertsRequest(
            firing_only=request.query.get("firing_only", "") in ("1", "true"),
            page_size=_int_query(request, "limit", default=50, low=1, high=1000),
        )
        return await self._ask_reputation("ListAlerts", lambda stub: stub.ListAlerts(ask, timeout=TIMEOUT_S))

    async def _cases(self, request: web.Request) -> web.Response:
        ask = router_service_pb2.ListCasesRequest(limit=_int_query(request, "limit", default=100, low=1, high=1000))
        return await self._ask("ListCases", lambda stub: stub.ListCases(ask, timeout=TIMEOUT_S))

    async def _ask(self, rpc: str, call: Callable[[RouterStub], Awaitable[Message]]) -> web.Response:
        if self._stub is None:
            return _error(503, "the dashboard is stopping")
        return await _answer("router", self.router_address, rpc, call(self._stub))

    async def _ask_reputation(self, rpc: str, call: Callable[[ReputationStub], Awaitable[Message]]) -> web.Response:
        if self._reputation is None:
            return _error(503, "the dashboard is stopping")
        return await _answer("reputation", self.reputation_address, rpc, call(self._reputation))


async def _answer(service: str, address: str, rpc: str, pending: Awaitable[Message]) -> web.Response:
    """The call's answer as JSON, or its failure as the banner's words."""
    try:
        answer = await pending
    except grpc.aio.AioRpcError as exc:
        code = exc.code()
        text = service_problem(service, address, code, exc.details() or "", rpc=rpc)
        return _error(503 if code == grpc.StatusCode.UNAVAILABLE else 502, text)
    body: dict[str, Any] = MessageToDict(answer, preserving_proto_field_name=True)
    return web.json_response(body, headers={"Cache-Control": "no-store"})


async def _add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(SECURITY_HEADERS)


async def serve_until_stopped(server: DashboardServer) -> None:
    """Run the server until SIGINT or SIGTERM, then close it."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await server.start()
    try:
        console.print(
            f"dashboard at [bold]{escape(server.url)}[/bold] (router at {escape(server.router_address)}, "
            f"reputation at {escape(server.reputation_address)}, "
            f"refresh every {server.refresh_s:g}s); Ctrl-C stops it",
            soft_wrap=True,
        )
        if not _is_loopback(server.host):
            errors.print("[yellow]the dashboard has no login and shows posts and cases: keep it off open networks")
        await stop.wait()
    finally:
        await server.stop()
    console.print("dashboard stopped")


def dashboard(
    host: Annotated[str, typer.Option(help="Address to listen on; anything but loopback exposes the cases.")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on (0: any free port).")] = 8088,
    refresh_s: Annotated[
        float, typer.Option("--refresh-s", min=2, max=3600, help="Seconds between the page's refreshes.")
    ] = 30.0,
    config: ConfigOption = None,
) -> None:
    """A read-only web page of complaint trends, current alerts and open cases; Ctrl-C stops it."""
    mesh = mesh_in_use(config)
    server = DashboardServer(
        clients.address_of(mesh.router.grpc), clients.address_of(mesh.reputation.grpc), host, port, refresh_s=refresh_s
    )
    try:
        asyncio.run(serve_until_stopped(server))
    except OSError as exc:
        errors.print(f"[red]cannot listen on {escape(host)}:{port}[/red]: {escape(exc.strerror or str(exc))}")
        raise typer.Exit(1) from exc
