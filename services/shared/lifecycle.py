"""Run a service until SIGTERM/SIGINT, then shut it down in order.

Start: gRPC first (health answers NOT_SERVING while we connect), then NATS, streams and
consumers; health turns SERVING only when every readiness condition holds.

Shutdown (STYLE.md): health NOT_SERVING → stop fetching → finish or nak in-flight work →
``server.stop(grace)`` → ``nc.drain()`` → flush telemetry. A task that dies unexpectedly stops
the process with a non-zero exit, so the supervisor (Kubernetes, ``clamor up``) restarts it
rather than leaving a half-working service behind.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from services.shared.consumer_gauges import ConsumerGauges
from services.shared.errors import ClamorError, ConfigError
from services.shared.grpc_server import GrpcServer, Registrar
from services.shared.jetstream import connect, ensure_streams
from services.shared.periodic import every
from services.shared.pull_consumer import BatchHandler, PullConsumer
from services.shared.status import Counters, Readiness, StatusReporter

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine, Sequence

    from google.protobuf.message import Message
    from nats.aio.client import Client as NatsClient
    from nats.js import JetStreamContext
    from opentelemetry import trace

    from services.shared import subjects
    from services.shared.config import GrpcSettings, NatsSettings
    from services.shared.telemetry import Telemetry

log = logging.getLogger(__name__)

NATS_CONDITION = "nats"
# Met once the service has wired its parts (servicer attached, consumers bound, workers running):
# NATS up alone must not make health SERVING while an RPC would still answer "connecting".
STARTED_CONDITION = "started"
# How often consumer lag and dead-letter depth are read from JetStream: a scrape interval's worth.
CONSUMER_GAUGES_EVERY_S = 5.0
# Set by `clamor up`: a service whose supervisor is gone stops instead of lingering.
SUPERVISOR_ENV = "CLAMOR_SUPERVISOR_PID"


class ServiceRuntime:
    """What every service process has: readiness, counters, tracer, gRPC server, NATS, consumers."""

    def __init__(
        self, name: str, nats_settings: NatsSettings, grpc_settings: GrpcSettings, telemetry: Telemetry
    ) -> None:
        self.name = name
        self.telemetry = telemetry
        self.readiness = Readiness(NATS_CONDITION, STARTED_CONDITION)
        self.counters = Counters(telemetry.metrics)
        self.reporter = StatusReporter(name, self.readiness, self.counters)
        self.consumer_gauges = ConsumerGauges(telemetry.metrics, self.reporter)
        self.stopping = asyncio.Event()
        self._nats_settings = nats_settings
        self._grpc_settings = grpc_settings
        self._grpc: GrpcServer | None = None
        self._nc: NatsClient | None = None
        self._js: JetStreamContext | None = None
        self._consumers: list[PullConsumer[Any]] = []
        self._workers: list[tuple[str, Callable[[], Coroutine[Any, Any, None]]]] = []
        self._failure: BaseException | None = None

    @property
    def tracer(self) -> trace.Tracer:
        return self.telemetry.tracer

    @property
    def js(self) -> JetStreamContext:
        if self._js is None:
            raise RuntimeError("connect() first")
        return self._js

    @property
    def grpc_port(self) -> int:
        return self._grpc.port if self._grpc is not None else 0

    async def start_grpc(self, register: Registrar, service_names: Sequence[str]) -> int:
        self._grpc = GrpcServer(
            self._grpc_settings,
            self.reporter,
            service_names=service_names,
            register=register,
            trace_status_calls=self.telemetry.trace_status_calls,
        )
        return await self._grpc.start()

    async def connect(self) -> JetStreamContext:
        """Connect to NATS (waiting for it if need be) and make sure every stream exists."""

        async def connection_changed(up: bool) -> None:
            await self.readiness.mark(NATS_CONDITION, up)

        self._nc = await connect(
            self._nats_settings, name=f"clamor-{self.name}", on_connection_change=connection_changed, stop=self.stopping
        )
        self._js = self._nc.jetstream()
        await ensure_streams(
            self._js, replicas=self._nats_settings.stream_replicas, history_days=self._nats_settings.history_days
        )
        return self._js

    async def add_consumer(
        self,
        spec: subjects.ConsumerSpec,
        payload_type: type[Message],
        handler: BatchHandler[Any],
        *,
        batch_size: int = 16,
        fetch_wait_s: float = 1.0,
    ) -> PullConsumer[Any]:
        consumer: PullConsumer[Any] = PullConsumer(
            self.js,
            spec,
            payload_type=payload_type,
            handler=handler,
            tracer=self.tracer,
            counters=self.counters,
            batch_size=batch_size,
            fetch_wait_s=fetch_wait_s,
        )
        await self.readiness.require(consumer.readiness_condition)
        await consumer.bind()
        await self.readiness.mark(consumer.readiness_condition, True)
        self._consumers.append(consumer)
        if not self._consumers[:-1]:
            # Once, with the first durable: lag and dead letters for /metrics and GetStatus.
            self.add_periodic("consumer-gauges", CONSUMER_GAUGES_EVERY_S, lambda: self.consumer_gauges.refresh(self.js))
        self.consumer_gauges.add(spec)
        return consumer

    def add_worker(self, name: str, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """A long-running task (a poller, a timer) that should watch :attr:`stopping` and return."""
        self._workers.append((name, work))

    def add_periodic(self, name: str, interval_s: float, tick: Callable[[], Awaitable[None]]) -> None:
        """Run ``tick`` every ``interval_s`` seconds until the service stops.

        A :class:`TransientError` (NATS or a downstream away for now) is logged and the next tick
        tries again; any other error stops the service, as a failed worker does, so it is restarted.
        """
        self.add_worker(name, lambda: every(interval_s, tick, self.stopping, name=name))

    async def started(self) -> None:
        """Every part is wired: from now on health follows NATS and the consumers alone."""
        await self.readiness.mark(STARTED_CONDITION, True)

    async def run_until_signal(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._on_signal, signum)
        tasks = [asyncio.create_task(self._guard(f"consumer {c.spec.durable}", c.run)) for c in self._consumers]
        tasks += [asyncio.create_task(self._guard(name, work)) for name, work in self._workers]
        watchdog = asyncio.create_task(self._watch_supervisor())
        await self.started()
        log.info("%s ready", self.name)
        await self.stopping.wait()
        watchdog.cancel()
        await self._shutdown(tasks)
        if self._failure is not None:
            raise self._failure

    async def shutdown(self) -> None:
        """Shut down without having run (tests, start-up failures): the same order as on a signal."""
        await self._shutdown([])

    def _on_signal(self, signum: int) -> None:
        log.info("received %s, shutting down", signal.Signals(signum).name)
        self.stopping.set()

    async def _watch_supervisor(self) -> None:
        supervisor = os.environ.get(SUPERVISOR_ENV, "")
        if not supervisor.isdigit():
            return
        while not self.stopping.is_set():
            if os.getppid() != int(supervisor):
                log.warning("supervisor %s is gone; shutting down", supervisor)
                self.stopping.set()
                return
            await asyncio.sleep(1.0)

    async def _guard(self, name: str, work: Callable[[], Awaitable[None]]) -> None:
        try:
            await work()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("%s failed; stopping the service so it is restarted", name)
            self._failure = exc
            self.stopping.set()

    async def _shutdown(self, tasks: list[asyncio.Task[None]]) -> None:
        grace = self._grpc_settings.shutdown_grace_s
        await self.readiness.mark_all_down()
        for consumer in self._consumers:
            consumer.stop()
        _done, pending = await asyncio.wait(tasks, timeout=grace) if tasks else (set(), set())
        for task in pending:
            task.cancel()
        for consumer in self._consumers:
            await consumer.nak_in_flight()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        for consumer in self._consumers:
            await consumer.close()
        if self._grpc is not None:
            await self._grpc.stop()
        if self._nc is not None and self._nc.is_connected:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._nc.drain(), timeout=grace)
        log.info("%s stopped", self.name)
        self.telemetry.shutdown()


def service_main(
    name: str, run: Callable[[Path | None], Coroutine[Any, Any, None]], argv: Sequence[str] | None = None
) -> int:
    """The ``__main__`` of every service: parse ``--config``, run, turn known errors into exit codes."""
    parser = argparse.ArgumentParser(prog=f"clamor serve {name}", description=f"Run the Clamor {name} service.")
    parser.add_argument(
        "--config",
        type=Path,
        default=os.environ.get("CLAMOR_CONFIG") or None,
        help="YAML config file (default: $CLAMOR_CONFIG; without either, built-in defaults)",
    )
    options = parser.parse_args(argv)
    try:
        asyncio.run(run(options.config))
    except ConfigError as exc:
        print(f"clamor {name}: invalid configuration\n{exc}", file=sys.stderr)
        return 2
    except ClamorError as exc:
        print(f"clamor {name}: {exc}", file=sys.stderr)
        return 1
    return 0
