"""What triage records of each batch: its size, the model's time, the posts the encoder read, the verdicts.

Verdicts are counted as they are published, so a mention counts once however often it was redelivered
before; the encoder's posts are counted as it reads them, so encoder.posts / verdicts is the share of
posts that paid for the encoder (a cascade decides the others on n-grams; own posts and empty ones
never reach the model). Only the pipeline records: ad-hoc ``Classify`` calls would skew the mix.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from clamor.v1 import triage_pb2
from services.shared.metric_catalogue import LABEL, LANGUAGE

if TYPE_CHECKING:
    from services.shared.metrics import Metrics

VERDICTS = "clamor.triage.verdicts"
BATCH_SIZE = "clamor.triage.batch.size"
MODEL_DURATION = "clamor.triage.model.duration"
ENCODER_POSTS = "clamor.triage.encoder.posts"

# A platform's language tag reaches the result as written: anything but a bare code is "und", so a
# malformed tag cannot add series.
_LANGUAGE_CODE = re.compile(r"[a-z]{2,3}")
UNDETERMINED = "und"


def verdict_label(verdict: triage_pb2.Verdict.ValueType) -> str:
    """``complaint`` or ``noise`` (``unspecified`` for a result that has none)."""
    try:
        return triage_pb2.Verdict.Name(verdict).removeprefix("VERDICT_").lower()
    except ValueError:
        return "unspecified"


def language_code(language: str) -> str:
    return language if _LANGUAGE_CODE.fullmatch(language) else UNDETERMINED


class BatchMetrics:
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def batch(self, size: int) -> None:
        self._metrics.record(BATCH_SIZE, size)

    def model_call(self, seconds: float) -> None:
        self._metrics.record(MODEL_DURATION, seconds)

    def encoded(self, posts: int) -> None:
        """The classifier's ``encoded`` callback; called on its worker thread (the SDK's counters are thread-safe)."""
        if posts:
            self._metrics.add(ENCODER_POSTS, posts)

    def verdict(self, result: triage_pb2.TriageResult) -> None:
        attributes = {LABEL: verdict_label(result.verdict), LANGUAGE: language_code(result.language)}
        self._metrics.add(VERDICTS, 1, attributes)
