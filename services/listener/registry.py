"""The running sources, by name: built from the config file or added over gRPC, steered by gRPC."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import TypeAdapter, ValidationError

from services.listener.config import AnySourceSettings
from services.listener.errors import ListenerError
from services.shared.config import format_validation_error

if TYPE_CHECKING:
    from services.listener.clients import AddedSourceStore
    from services.listener.domain import SourceStatus

log = logging.getLogger(__name__)

_SETTINGS = TypeAdapter[Any](AnySourceSettings)


class Runner(Protocol):
    status: SourceStatus

    def pause(self) -> None: ...
    def resume(self) -> None: ...
    async def run(self, stopping: asyncio.Event) -> None: ...


class UnknownSourceError(ListenerError):
    """No source has that name."""


class SourceConflictError(ListenerError):
    """The change is not allowed for this source (name taken, or it comes from the config file)."""


class InvalidSourceError(ListenerError):
    """A source definition sent over gRPC does not validate; the message names the fields."""


def parse_source_settings(data: object, *, where: str = "source") -> Any:
    try:
        return _SETTINGS.validate_python(data)
    except ValidationError as exc:
        raise InvalidSourceError(format_validation_error(exc, where, {}, {}, data)) from exc


def _nobody(_: str) -> str:
    return ""


async def _no_lease(_: str) -> None:
    return None


class SourceRegistry:
    def __init__(
        self,
        build: Callable[[Any, bool], Runner],
        added: AddedSourceStore,
        stopping: asyncio.Event,
        *,
        holder_of: Callable[[str], str] = _nobody,
        claim: Callable[[str], Awaitable[None]] = _no_lease,
    ) -> None:
        """``holder_of`` names the replica that polls a source now (its lease's holder), for the statuses;
        ``claim`` takes the lease of a source added here, before AddSource answers."""
        self._build = build
        self._added = added
        self._stopping = stopping
        self._holder_of = holder_of
        self._claim = claim
        self._runners: dict[str, Runner] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def statuses(self) -> list[SourceStatus]:
        return [self.status(name) for name in self._runners]

    def status(self, name: str) -> SourceStatus:
        """A copy of the source's status, with the replica that polls it now."""
        return dataclasses.replace(self.get(name).status, holder=self._holder_of(name))

    def get(self, name: str) -> Runner:
        try:
            return self._runners[name]
        except KeyError:
            raise UnknownSourceError(f"no source named {name!r}") from None

    def start(self, settings: Any, *, dynamic: bool = False) -> Runner:
        if settings.name in self._runners:
            raise SourceConflictError(f"a source named {settings.name!r} already exists")
        runner = self._build(settings, dynamic)
        self._runners[settings.name] = runner
        if settings.enabled:
            self._tasks[settings.name] = asyncio.create_task(self._guard(settings.name, runner))
        else:
            runner.pause()
        return runner

    async def add(self, settings: Any) -> Runner:
        """Start a source added at run time and keep its settings in KV so it survives restarts."""
        if settings.kind == "webhook":
            raise SourceConflictError("webhook sources come from the config file, which also opens their endpoint")
        runner = self.start(settings, dynamic=True)
        try:
            await self._added.save(settings.name, settings.model_dump(mode="json"))
        except Exception:
            await self._stop_task(settings.name)
            await self._close(self._runners.pop(settings.name))
            raise
        await self._claim(settings.name)
        return runner

    async def remove(self, name: str) -> None:
        runner = self.get(name)
        if not runner.status.dynamic:
            raise SourceConflictError(f"source {name!r} comes from the config file: pause it, or edit the file")
        await self._added.delete(name)
        await self._stop_task(name)
        await self._close(self._runners.pop(name))

    @staticmethod
    async def _close(runner: Runner) -> None:
        """Give up the runner's lease and connections, for the runners that have them."""
        closing = getattr(runner, "close", None)
        if closing is not None:
            await closing()

    async def restore(self) -> None:
        """Start the sources added over gRPC before the last restart."""
        for name, data in await self._added.load_all():
            if name in self._runners:
                continue
            try:
                self.start(parse_source_settings(data, where=f"added source {name}"), dynamic=True)
            except (InvalidSourceError, SourceConflictError, ValueError) as exc:
                log.error("cannot restore added source %s: %s", name, exc)

    async def run(self) -> None:
        """Wait for shutdown, then let every source loop finish."""
        await self._stopping.wait()
        if self._tasks:
            await asyncio.wait(self._tasks.values(), timeout=5.0)
        for name in list(self._tasks):
            await self._stop_task(name)

    async def _guard(self, name: str, runner: Runner) -> None:
        try:
            await runner.run(self._stopping)
        except asyncio.CancelledError:
            raise
        except Exception:
            # One broken source must not take the others down: record it and leave it stopped.
            log.exception("source %s stopped after an unexpected error", name)
            runner.status.last_error = "stopped after an unexpected error; see the listener log"

    async def _stop_task(self, name: str) -> None:
        task = self._tasks.pop(name, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
