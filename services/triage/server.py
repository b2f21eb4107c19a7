"""Triage's gRPC API: ad-hoc classification and model information."""

from __future__ import annotations

import asyncio
import hashlib
from typing import TYPE_CHECKING

import grpc

from clamor.v1 import triage_pb2, triage_service_pb2, triage_service_pb2_grpc
from services.triage.domain import LANGUAGES, Classifier, Post

if TYPE_CHECKING:
    from services.shared.jsonl import IdempotentJsonlFile


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


SERVICE_NAME = triage_service_pb2.DESCRIPTOR.services_by_name["TriageService"].full_name
MAX_CLASSIFY_BATCH = 1024


class TriageServicer(triage_service_pb2_grpc.TriageServiceServicer):
    def __init__(
        self, classifier: Classifier, *, feedback: IdempotentJsonlFile, held_out_macro_f1: float = 0.0
    ) -> None:
        self._classifier = classifier
        self._feedback = feedback
        self._macro_f1 = held_out_macro_f1

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
        name, _, version = self._classifier.version.partition("/")
        return triage_service_pb2.ModelInfoResponse(
            name=name,
            version=version,
            threshold=self._classifier.threshold,
            languages=LANGUAGES,
            held_out_macro_f1=self._macro_f1,
        )

    async def Feedback(
        self, request: triage_service_pb2.FeedbackRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> triage_service_pb2.FeedbackResponse:
        if not request.text.strip():
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "text is required: training needs the post")
        if request.verdict not in (triage_pb2.VERDICT_COMPLAINT, triage_pb2.VERDICT_NOISE):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "verdict must be VERDICT_COMPLAINT or VERDICT_NOISE")
        complaint = request.verdict == triage_pb2.VERDICT_COMPLAINT
        record = {
            "id": request.request_id or f"feedback:{request.mention_id or _digest(request.text)}",
            "mention_id": request.mention_id,
            "text": request.text[:10_000],
            "label": "complaint" if complaint else "noise",
            "severity": triage_pb2.Severity.Name(request.severity).removeprefix("SEVERITY_")
            if complaint and request.severity
            else None,
            "category": request.category if complaint else "none",
            "language": request.language,
            "style": "feedback",
            "actor": " ".join(request.actor.split())[:100],
        }
        stored = await asyncio.to_thread(self._feedback.append, record)
        return triage_service_pb2.FeedbackResponse(stored=stored)
