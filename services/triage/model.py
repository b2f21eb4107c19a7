"""The triage model: a frozen multilingual encoder and hashed n-grams, read by three linear heads.

Heads: is it a complaint (logistic, so its probability is calibrated), its severity and its
category (multinomial). The risk rules of :class:`RuleClassifier` run beside the model: their
flags and reasons are kept, and a risk flag can only raise the model's severity, never lower it.
A model directory holds ``heads.npz`` (coefficients, float16) and ``model_card.json``.

Which encoder and whether n-grams join it is the model's :class:`FeatureSpec`, kept in its card.
A cascade runs first when the model has one: the same three heads trained on the n-grams alone
decide every post whose n-gram complaint probability is outside the uncertain band, and only the
posts inside it pay for the encoder. The 2026.12 model has none: on the shift split it cost more
than half a point (docs/triage-model.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from clamor.v1 import triage_pb2
from services.triage.domain import STRONG_RISKS, Post, RuleClassifier
from services.triage.errors import ModelError
from services.triage.features import EMBEDDING_DIM, Encoder, FeatureSpec, lexical, make_encoder
from services.triage.fine_tune import TUNED_FILE

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from scipy.sparse import spmatrix

NAME = "encoder-heads"
SEVERITY_ORDER = ("LOW", "MEDIUM", "HIGH", "CRITICAL")
CARD = "model_card.json"
HEADS = "heads.npz"


def bundled_model_dir() -> Path:
    return Path(__file__).resolve().parents[1] / "triage_data" / "model"


@dataclass(frozen=True)
class Head:
    """One linear head: ``classes`` × features coefficients and intercepts."""

    classes: tuple[str, ...]
    coef: np.ndarray
    intercept: np.ndarray

    def probabilities(self, features: spmatrix) -> np.ndarray:
        logits = np.asarray(features @ self.coef.T) + self.intercept
        if len(self.classes) == 2 and logits.shape[1] == 1:
            positive = 1.0 / (1.0 + np.exp(-logits[:, 0]))
            return np.stack([1.0 - positive, positive], axis=1)
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return np.asarray(exp / exp.sum(axis=1, keepdims=True))


HEAD_NAMES = ("complaint", "severity", "category")
CASCADE_PREFIX = "ngrams_"


def _save_head(arrays: dict[str, np.ndarray], name: str, head: Head) -> None:
    arrays[f"{name}_coef"] = head.coef.astype(np.float16)
    arrays[f"{name}_intercept"] = head.intercept.astype(np.float32)
    arrays[f"{name}_classes"] = np.array(head.classes)


def _load_head(data: Any, name: str) -> Head:
    return Head(
        classes=tuple(str(c) for c in data[f"{name}_classes"]),
        # Stored as float16 to keep the file small; widened once here, not on every batch.
        coef=data[f"{name}_coef"].astype(np.float32),
        intercept=data[f"{name}_intercept"],
    )


@dataclass(frozen=True)
class Cascade:
    """Heads on the n-grams alone, sure of a post when its complaint probability is outside (low, high)."""

    complaint: Head
    severity: Head
    category: Head
    low: float
    high: float

    def sure(self, complaint: np.ndarray) -> np.ndarray:
        return np.asarray((complaint <= self.low) | (complaint >= self.high))


@dataclass(frozen=True)
class ModelHeads:
    complaint: Head
    severity: Head
    category: Head
    threshold: float
    version: str
    card: dict[str, Any]
    cascade: Cascade | None = None
    spec: FeatureSpec = field(default_factory=FeatureSpec)
    # The strong-risk override applies only from this complaint probability up (docs/triage-model.md).
    risk_floor: float = 0.0

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {}
        for name in HEAD_NAMES:
            _save_head(arrays, name, getattr(self, name))
            if self.cascade is not None:
                _save_head(arrays, CASCADE_PREFIX + name, getattr(self.cascade, name))
        np.savez_compressed(folder / HEADS, **arrays)  # type: ignore[arg-type]
        card = {
            **self.card,
            "version": self.version,
            "threshold": self.threshold,
            "features": self.spec.as_dict(),
            "risk_floor": self.risk_floor,
        }
        if self.cascade is not None:
            card["cascade"] = {"low": self.cascade.low, "high": self.cascade.high}
        (folder / CARD).write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> ModelHeads:
        try:
            card = json.loads((folder / CARD).read_text(encoding="utf-8"))
            with np.load(folder / HEADS, allow_pickle=False) as data:
                heads = {name: _load_head(data, name) for name in HEAD_NAMES}
                band = card.get("cascade")
                cascade = (
                    Cascade(
                        **{name: _load_head(data, CASCADE_PREFIX + name) for name in HEAD_NAMES},
                        low=float(band["low"]),
                        high=float(band["high"]),
                    )
                    if band
                    else None
                )
            spec = FeatureSpec.from_card(card["features"])
            if heads["complaint"].coef.shape[1] != spec.width:
                raise ModelError(
                    f"{folder}: its heads read {heads['complaint'].coef.shape[1]} features, its card says {spec.width}"
                )
            return cls(
                complaint=heads["complaint"],
                severity=heads["severity"],
                category=heads["category"],
                threshold=float(card["threshold"]),
                version=str(card["version"]),
                card=card,
                cascade=cascade,
                spec=spec,
                risk_floor=float(card.get("risk_floor", 0.0)),
            )
        except (OSError, KeyError, ValueError, TypeError) as exc:
            raise ModelError(f"cannot load the triage model from {folder}: {exc!r}") from exc


# e5's cosines are compressed: unrelated complaints sit at 0.86-0.88 from a category's prototype, close
# ones at 0.90-0.94 (tests/integration/test_triage_categories.py); MiniLM's spread from 0.2 to 0.7.
MIN_SIMILARITY = {"e5-small": 0.9, "e5-small-c": 0.9, "minilm": 0.55}


@dataclass(frozen=True)
class CategorySpec:
    """A category added without retraining: its description and example phrases define it."""

    name: str
    description: str
    examples: tuple[str, ...]
    # Cosine similarity from which a post joins this category instead of the model's; None: the
    # encoder's own default (MIN_SIMILARITY), since each encoder spreads its cosines differently.
    min_similarity: float | None = None


@dataclass(frozen=True)
class Prototypes:
    """One normalised mean embedding per added category."""

    specs: tuple[CategorySpec, ...]
    vectors: np.ndarray

    @classmethod
    def build(cls, encoder: Encoder, specs: Sequence[CategorySpec]) -> Prototypes:
        rows = []
        for spec in specs:
            vectors = encoder.encode([spec.description, *spec.examples] if spec.description else list(spec.examples))
            mean = vectors.mean(axis=0)
            rows.append(mean / max(float(np.linalg.norm(mean)), 1e-9))
        floor = MIN_SIMILARITY.get(encoder.name, 0.55)
        resolved = tuple(
            spec if spec.min_similarity is not None else replace(spec, min_similarity=floor) for spec in specs
        )
        return cls(resolved, np.vstack(rows))

    def best(self, embeddings: np.ndarray) -> list[tuple[str, float] | None]:
        """Per post, the closest added category when it passes that category's floor."""
        similarity = embeddings @ self.vectors.T
        found: list[tuple[str, float] | None] = []
        for row in similarity:
            index = int(row.argmax())
            spec = self.specs[index]
            close = spec.min_similarity is not None and row[index] >= spec.min_similarity
            found.append((spec.name, round(float(row[index]), 4)) if close else None)
        return found


class ModelClassifier:
    """Posts in, TriageResults out: the model's verdict, severity and category, with the rules' flags."""

    def __init__(
        self,
        heads: ModelHeads,
        *,
        encoder: Encoder | None = None,
        rules: RuleClassifier | None = None,
        threshold: float | None = None,
        categories: Sequence[CategorySpec] = (),
    ) -> None:
        self.heads = heads
        self.spec = heads.spec
        self.encoder = encoder or make_encoder(heads.spec.encoder)
        self.rules = rules or RuleClassifier()
        self.threshold = heads.threshold if threshold is None else threshold
        self.prototypes = Prototypes.build(self.encoder, categories) if categories else None

    @classmethod
    def load(cls, folder: Path | None = None, *, quantize: bool = False, threads: int = 0) -> ModelClassifier:
        folder = folder or bundled_model_dir()
        heads = ModelHeads.load(folder)
        return cls(heads, encoder=encoder_for(heads, folder, quantize=quantize, threads=threads))

    @property
    def version(self) -> str:
        return f"{NAME}/{self.heads.version}"

    def features(self, texts: Sequence[str], *, progress: Callable[[int], None] | None = None) -> spmatrix:
        prepared = self.spec.prepare(texts)
        grams = lexical(prepared) if self.spec.ngrams else None
        return self.spec.join(grams, self.encoder.encode(prepared, progress=progress))

    def classify(
        self,
        posts: Sequence[Post],
        *,
        progress: Callable[[int], None] | None = None,
        encoded: Callable[[int], None] | None = None,
    ) -> list[triage_pb2.TriageResult]:
        if not posts:
            return []
        texts = self.spec.prepare([post.text for post in posts])
        grams = lexical(texts) if self.spec.ngrams or self.heads.cascade is not None else None
        count = len(posts)
        complaint = np.zeros(count)
        severity = np.zeros((count, len(self.heads.severity.classes)))
        category = np.zeros((count, len(self.heads.category.classes)))
        sure = np.zeros(count, dtype=bool)
        ruled = [self.rules.classify_one(post) for post in posts]
        cascade = self.heads.cascade
        if cascade is not None and grams is not None:
            complaint = _positive(cascade.complaint, grams)
            # The n-grams may call a post noise only when the rules see no grievance in it either:
            # a confident miss costs more than a false alarm (docs/triage-model.md).
            grievance = np.array([r.verdict == triage_pb2.VERDICT_COMPLAINT for r in ruled], dtype=bool)
            sure = cascade.sure(complaint) & ~(grievance & (complaint < self.threshold))
            chosen = np.flatnonzero(sure)
            severity[chosen] = cascade.severity.probabilities(grams[chosen])
            category[chosen] = cascade.category.probabilities(grams[chosen])
        # Added categories are matched by embedding, so complaints the n-grams were sure of need one too.
        embed = ~sure | ((complaint >= self.threshold) & (self.prototypes is not None))
        embedded = np.flatnonzero(embed)
        if progress is not None and count > len(embedded):
            progress(count - len(embedded))
        embeddings = np.zeros((count, EMBEDDING_DIM), dtype=np.float32)
        if len(embedded):
            embeddings[embedded] = self.encoder.encode([texts[i] for i in embedded], progress=progress)
        if encoded is not None:
            encoded(len(embedded))
        unsure = np.flatnonzero(~sure)
        if len(unsure):
            features = self.spec.join(grams[unsure] if grams is not None else None, embeddings[unsure])
            complaint[unsure] = _positive(self.heads.complaint, features)
            severity[unsure] = self.heads.severity.probabilities(features)
            category[unsure] = self.heads.category.probabilities(features)
        extra: list[tuple[str, float] | None] = [None] * count
        if self.prototypes is not None and len(embedded):
            for index, found in zip(embedded, self.prototypes.best(embeddings[embedded]), strict=True):
                extra[index] = found
        return [
            self._result(post, ruled[i], float(complaint[i]), severity[i], category[i], extra[i])
            for i, post in enumerate(posts)
        ]

    def _result(  # noqa: PLR0917 - private, called once, every argument a per-post column
        self,
        post: Post,
        ruled: triage_pb2.TriageResult,
        score: float,
        severity: np.ndarray,
        category: np.ndarray,
        extra: tuple[str, float] | None,
    ) -> triage_pb2.TriageResult:
        is_complaint = score >= self.threshold
        reasons = list(ruled.reasons)
        overridable = score >= self.heads.risk_floor
        strong = STRONG_RISKS & set(ruled.risk_flags)
        if not is_complaint and overridable and ruled.verdict == triage_pb2.VERDICT_COMPLAINT and strong:
            # A legal threat, a safety risk, a supervisor request or a churn threat the rules read as a
            # grievance escalates unless the model is sure it is noise (below risk_floor: advice that
            # names a regulator, a brand's reply about safety): missing one costs more than a false alarm.
            is_complaint, score = True, max(score, ruled.complaint_score)
            reasons.append(triage_pb2.Reason(rule="rules:strong-risk", matched="", weight=ruled.complaint_score))
        top = int(category.argmax())
        name = self.heads.category.classes[top]
        if is_complaint and extra is not None:
            # A category the user added by example phrases, close enough to this post.
            name = extra[0]
            reasons.append(triage_pb2.Reason(rule=f"prototype:category:{name}", matched="", weight=extra[1]))
        elif is_complaint:
            reasons.append(triage_pb2.Reason(rule=f"model:category:{name}", matched="", weight=float(category[top])))
        model_level = SEVERITY_ORDER.index(self.heads.severity.classes[int(severity.argmax())])
        # The rules' severity holds the risk flags and reach: they raise the model's, never lower it.
        rule_level = self.rules.complaint_severity(ruled, post.followers) - triage_pb2.SEVERITY_LOW
        level = max(model_level, rule_level) if is_complaint else 0
        return triage_pb2.TriageResult(
            verdict=triage_pb2.VERDICT_COMPLAINT if is_complaint else triage_pb2.VERDICT_NOISE,
            complaint_score=round(score, 4),
            severity=triage_pb2.Severity.Value(f"SEVERITY_{SEVERITY_ORDER[level]}"),
            category=name if is_complaint else "",
            language=ruled.language,
            risk_flags=ruled.risk_flags,
            reasons=reasons,
            model_version=self.version,
        )


def encoder_for(heads: ModelHeads, folder: Path, *, quantize: bool = False, threads: int = 0) -> Encoder:
    """The encoder a model's heads read: its named encoder, with its fine-tuned layers when it has them."""
    tuned = folder / TUNED_FILE if heads.spec.tuned else None
    if tuned is not None and not tuned.is_file():
        raise ModelError(f"{folder}: its card says the encoder was fine-tuned, but {TUNED_FILE} is missing")
    return make_encoder(heads.spec.encoder, quantize=quantize, threads=threads, tuned=tuned)


def _positive(head: Head, features: spmatrix) -> np.ndarray:
    """The complaint head's probability of "complaint", one per row."""
    return np.asarray(head.probabilities(features)[:, list(head.classes).index("complaint")])
