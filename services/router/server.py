"""The router's gRPC API: cases."""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc

from clamor.v1 import router_service_pb2, router_service_pb2_grpc

if TYPE_CHECKING:
    from services.router.clients import CaseStore

SERVICE_NAME = router_service_pb2.DESCRIPTOR.services_by_name["RouterService"].full_name
DEFAULT_LIMIT = 100


class RouterServicer(router_service_pb2_grpc.RouterServiceServicer):
    def __init__(self, cases: list[CaseStore]) -> None:
        # A one-element list filled once NATS is up: the server starts before the store exists.
        self._cases = cases

    async def ListCases(
        self, request: router_service_pb2.ListCasesRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> router_service_pb2.ListCasesResponse:
        store = await self._store(context)
        return router_service_pb2.ListCasesResponse(cases=await store.list(request.limit or DEFAULT_LIMIT))

    async def GetCase(
        self, request: router_service_pb2.GetCaseRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> router_service_pb2.GetCaseResponse:
        store = await self._store(context)
        found = await store.get(request.case_id) if request.case_id else None
        if found is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no case {request.case_id!r}")
            raise AssertionError("unreachable")
        return router_service_pb2.GetCaseResponse(case=found[0])

    async def _store(self, context: grpc.aio.ServicerContext[object, object]) -> CaseStore:
        if not self._cases:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "router is not connected to NATS yet")
        return self._cases[0]
