"""How well a training recipe generalises: held-out splits and K-fold cross-validation on labelled posts.

A recipe is scored by fitting it on one part of the posts and classifying the other part with the
same code that serves (:class:`ModelClassifier`), so the figures include the rules' overrides and
the threshold. Embeddings are computed once per post and shared by every fit.

K-fold folds are chosen by a hash of the normalised text, so two copies of one post (a repost, a
label given twice) always land in the same fold and a fold never scores a post it trained on.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from services.triage.domain import Post
from services.triage.features import EMBEDDING_DIM
from services.triage.normalise import normalise

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from scipy.sparse import spmatrix

    from services.triage.features import Encoder
    from services.triage.training import Example, Recipe, Report


def fold_of(example: Example, k: int) -> int:
    key = " ".join(normalise(example.text).lower().split())
    return int(hashlib.blake2b(key.encode(), digest_size=4).hexdigest(), 16) % k


def folds(examples: Sequence[Example], k: int) -> list[tuple[list[int], list[int]]]:
    """``k`` (train, test) index pairs; every post is tested exactly once."""
    if k < 2:
        raise ValueError("cross-validation needs at least 2 folds")
    assigned = [fold_of(e, k) for e in examples]
    return [
        ([i for i, f in enumerate(assigned) if f != fold], [i for i, f in enumerate(assigned) if f == fold])
        for fold in range(k)
    ]


class CachedEncoder:
    """An encoder whose rows are already computed: the features of every fit come from one pass."""

    def __init__(self, name: str, texts: Sequence[str], rows: np.ndarray) -> None:
        self.name = name
        self._rows = {text: row for text, row in zip(texts, rows, strict=True)}

    def encode(self, texts: Sequence[str], *, progress: Callable[[int], None] | None = None) -> np.ndarray:
        if progress is not None:
            progress(len(texts))
        return np.vstack([self._rows[t] for t in texts]) if texts else np.zeros((0, EMBEDDING_DIM), dtype=np.float32)


@dataclass(frozen=True)
class Embedded:
    """Labelled posts with their prepared texts, n-grams and embeddings, computed once."""

    examples: Sequence[Example]
    texts: list[str]
    grams: spmatrix | None
    encoder: CachedEncoder

    @classmethod
    def build(
        cls,
        examples: Sequence[Example],
        recipe: Recipe,
        encoder: Encoder,
        progress: Callable[[int], None] | None = None,
    ) -> Embedded:
        from services.triage.features import lexical  # noqa: PLC0415

        texts = recipe.spec.prepare([e.text for e in examples])
        unique = sorted(set(texts))
        rows = (
            encoder.encode(unique, progress=progress) if recipe.spec.encoder else np.zeros((len(unique), EMBEDDING_DIM))
        )
        grams = lexical(texts) if recipe.spec.ngrams or recipe.cascade_band else None
        return cls(examples, texts, grams, CachedEncoder(recipe.spec.encoder, unique, rows))

    def features(self, recipe: Recipe, chosen: Sequence[int]) -> spmatrix:
        grams = self.grams[list(chosen)] if self.grams is not None else None
        return recipe.spec.join(grams, self.encoder.encode([self.texts[i] for i in chosen]))


def fit_and_score(embedded: Embedded, recipe: Recipe, train: Sequence[int], test: Sequence[int]) -> Report:
    """Fit ``recipe`` on the ``train`` posts and report on the ``test`` posts."""
    from services.triage.model import ModelClassifier  # noqa: PLC0415
    from services.triage.training import fit_heads, report, severity_name  # noqa: PLC0415

    examples = embedded.examples
    chosen = [examples[i] for i in train]
    grams = embedded.grams[list(train)] if embedded.grams is not None else None
    heads = fit_heads(embedded.features(recipe, train), chosen, version="evaluation", recipe=recipe, grams=grams)
    classifier = ModelClassifier(heads, encoder=embedded.encoder)
    # The classifier prepares the raw texts as Embedded.build did, so the cached rows are found by text.
    results = classifier.classify([Post(examples[i].text, examples[i].language) for i in test])
    labels = ["complaint" if r.verdict == 1 else "noise" for r in results]
    return report(
        [examples[i] for i in test], labels, [severity_name(r.severity) for r in results], [r.category for r in results]
    )


@dataclass(frozen=True)
class CrossValidation:
    """Per-fold reports and their mean ± sd."""

    reports: list[Report]

    def mean_sd(self, pick: Callable[[Report], float]) -> tuple[float, float]:
        values = np.array([pick(r) for r in self.reports])
        return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0

    def languages(self) -> list[str]:
        return sorted({language for r in self.reports for language in r.by_language})

    def as_dict(self) -> dict[str, object]:
        f1, sd = self.mean_sd(lambda r: r.macro_f1)
        by_language = {}
        for language in self.languages():
            scored = [r.by_language[language]["macro_f1"] for r in self.reports if language in r.by_language]
            by_language[language] = {
                "macro_f1": round(float(np.mean(scored)), 4),
                "sd": round(float(np.std(scored, ddof=1)) if len(scored) > 1 else 0.0, 4),
            }
        return {
            "folds": len(self.reports),
            "macro_f1": round(f1, 4),
            "sd": round(sd, 4),
            "by_language": by_language,
            "per_fold": [round(r.macro_f1, 4) for r in self.reports],
        }


def cross_validate(
    embedded: Embedded, recipe: Recipe, k: int, progress: Callable[[int], None] | None = None
) -> CrossValidation:
    reports = []
    for train, test in folds(embedded.examples, k):
        reports.append(fit_and_score(embedded, recipe, train, test))
        if progress is not None:
            progress(1)
    return CrossValidation(reports)
