"""``clamor serve triage``: config → telemetry → classifier → server → NATS → consumer → run."""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING

from clamor.v1 import mention_pb2, triage_service_pb2_grpc
from services.shared import subjects
from services.shared.config import load_config
from services.shared.jsonl import IdempotentJsonlFile
from services.shared.lifecycle import ServiceRuntime, service_main
from services.shared.telemetry import setup_telemetry
from services.triage.clients import TriagedPublisher
from services.triage.config import TriageConfig, TriageSettings
from services.triage.consumer import TriageHandler
from services.triage.domain import Classifier, RuleClassifier
from services.triage.server import SERVICE_NAME, TriageServicer

if TYPE_CHECKING:
    from pathlib import Path

    import grpc

NAME = "triage"
MODEL_CONDITION = "model"


async def run(config_path: Path | None) -> None:
    config = load_config(TriageConfig, config_path)
    settings = config.triage
    runtime = ServiceRuntime(NAME, config.nats, settings.grpc, setup_telemetry(NAME, config.telemetry))
    await runtime.readiness.require(MODEL_CONDITION)
    # Loading torch and the encoder takes seconds: off the event loop, before health says SERVING.
    classifier = await asyncio.to_thread(load_classifier, settings)
    await runtime.readiness.mark(MODEL_CONDITION, True)
    card = getattr(getattr(classifier, "heads", None), "card", {})
    servicer = TriageServicer(
        classifier,
        feedback=IdempotentJsonlFile(settings.feedback_path),
        held_out_macro_f1=float(card.get("held_out", {}).get("macro_f1", 0.0)),
    )

    def register(server: grpc.aio.Server) -> None:
        triage_service_pb2_grpc.add_TriageServiceServicer_to_server(servicer, server)

    await runtime.start_grpc(register, [SERVICE_NAME])
    js = await runtime.connect()
    publisher = TriagedPublisher(js, runtime.tracer, metrics=runtime.counters.metrics)
    handler = TriageHandler(classifier, publisher, runtime.tracer, runtime.counters)
    await runtime.add_consumer(
        subjects.TRIAGE_CONSUMER,
        mention_pb2.Mention,
        handler.handle_batch,
        batch_size=settings.batch_size,
        fetch_wait_s=settings.batch_wait_ms / 1000,
    )
    await runtime.run_until_signal()


def load_classifier(settings: TriageSettings) -> Classifier:
    rules = RuleClassifier(
        threshold=settings.threshold or 0.5, reach_medium=settings.reach_medium, reach_high=settings.reach_high
    )
    if settings.classifier == "rules":
        return rules
    from services.triage.model import (  # noqa: PLC0415
        CategorySpec,
        ModelClassifier,
        ModelHeads,
        bundled_model_dir,
        encoder_for,
    )

    folder = settings.model_dir or bundled_model_dir()
    heads = ModelHeads.load(folder)
    encoder = encoder_for(heads, folder, quantize=settings.quantize, threads=settings.threads)
    categories = [CategorySpec(c.name, c.description, tuple(c.examples), c.min_similarity) for c in settings.categories]
    return ModelClassifier(heads, encoder=encoder, rules=rules, threshold=settings.threshold, categories=categories)


def main(argv: list[str] | None = None) -> int:
    return service_main(NAME, run, argv)


if __name__ == "__main__":
    sys.exit(main())
