"""``rpc.server.call.duration`` for every gRPC method we serve (probes and status polls excluded)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc

from services.shared import metric_catalogue as m

if TYPE_CHECKING:
    from services.shared.metrics import Metrics

# Probes and polls: frequent, cheap, and not what an SRE asks about.
UNMEASURED_PREFIXES = ("/grpc.health.v1.", "/grpc.reflection.", "/clamor.v1.StatusService/")


class CallDurationInterceptor(grpc.aio.ServerInterceptor):
    """Times unary calls, with the semantic conventions' attributes and the gRPC status code."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(details)
        method: str = details.method
        if handler is None or handler.unary_unary is None or method.startswith(UNMEASURED_PREFIXES):
            return handler
        service, _, name = method.lstrip("/").partition("/")
        inner = handler.unary_unary
        metrics = self._metrics

        async def timed(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            started = time.perf_counter()
            # An exception that is not an abort reaches the client as UNKNOWN.
            code: Any = grpc.StatusCode.UNKNOWN
            try:
                response = await inner(request, context)  # type: ignore[arg-type]
                code = context.code() or grpc.StatusCode.OK
                return response
            except grpc.aio.AbortError:
                code = context.code() or grpc.StatusCode.UNKNOWN
                raise
            finally:
                metrics.record(
                    "rpc.server.call.duration",
                    time.perf_counter() - started,
                    {m.RPC_SYSTEM: "grpc", m.RPC_SERVICE: service, m.RPC_METHOD: name, m.GRPC_STATUS: _code(code)},
                )

        return grpc.unary_unary_rpc_method_handler(
            timed, request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer
        )


def _code(code: Any) -> int:
    # context.code() may answer a StatusCode or, once set through abort, the same enum: its int value.
    return int(code.value[0]) if isinstance(code, grpc.StatusCode) else int(code)
