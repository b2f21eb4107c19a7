"""An aiohttp application served inside a service's own event loop: inbound webhooks, link endpoints."""

from __future__ import annotations

from aiohttp import web


class HttpSite:
    """Serves ``app`` on ``host:port`` until :meth:`stop`; no access log, because bodies and paths carry secrets."""

    def __init__(self, app: web.Application) -> None:
        self._app = app
        self._runner: web.AppRunner | None = None

    async def start(self, host: str, port: int) -> int:
        """Listen (port 0 picks a free one) and return the port bound."""
        runner = web.AppRunner(self._app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        bound: int = runner.addresses[0][1]
        return bound

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
