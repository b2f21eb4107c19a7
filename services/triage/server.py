"""Triage's gRPC API: ad-hoc classification and model information."""

from __future__ import annotations

import asyncio

import grpc

from clamor.v1 import triage_service_pb2, triage_service_pb2_grpc
from services.triage.domain import LANGUAGES, NAME, VERSION, Post, RuleClassifier

SERVICE_NAME = triage_service_pb2.DESCRIPTOR.services_by_name["TriageService"].full_name
MAX_CLASSIFY_BATCH = 1024


class TriageServicer(triage_service_pb2_grpc.TriageServiceServicer):
    def __init__(self, classifier: RuleClassifier) -> None:
        self._classifier = classifier

    async def Classify(
        self, request: triage_service_pb2.ClassifyRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> triage_service_pb2.ClassifyResponse:
        if len(request.mentions) > MAX_CLASSIFY_BATCH:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"at most {MAX_CLASSIFY_BATCH} mentions per call, got {len(request.mentions)}",
            )
        for index, mention in enumerate(request.mentions):
            if not mention.text.strip():
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"mentions[{index}].text is empty")
        posts = [Post.from_mention(m) for m in request.mentions]
        results = await asyncio.to_thread(self._classifier.classify, posts)
        return triage_service_pb2.ClassifyResponse(results=results)

    async def ModelInfo(
        self, request: triage_service_pb2.ModelInfoRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> triage_service_pb2.ModelInfoResponse:
        return triage_service_pb2.ModelInfoResponse(
            name=NAME, version=VERSION, threshold=self._classifier.threshold, languages=LANGUAGES
        )
