"""Categories added by example phrases: a complaint close to them joins them, without retraining."""

from __future__ import annotations

import pytest

from services.triage.domain import Post
from services.triage.model import MIN_SIMILARITY, CategorySpec, ModelClassifier, ModelHeads, bundled_model_dir

RECALL = CategorySpec(
    "recall",
    "a product recall: the maker withdraws a product as unsafe",
    (
        "the product was recalled",
        "they recalled my car seat",
        "recall notice for my dryer",
        "my model is on the recall list but nobody replaced it",
    ),
)


@pytest.fixture(scope="module")
def classifier() -> ModelClassifier:
    # A low threshold: this is about the category a complaint gets, not the verdict.
    return ModelClassifier(ModelHeads.load(bundled_model_dir()), threshold=0.05, categories=[RECALL])


def test_a_complaint_close_to_the_examples_gets_the_added_category_and_says_why(classifier: ModelClassifier) -> None:
    [result] = classifier.classify([Post("My dryer was recalled months ago and still nobody replaced it")])
    assert result.category == "recall"
    [resolved] = classifier.prototypes.specs if classifier.prototypes else [RECALL]
    assert resolved.min_similarity == MIN_SIMILARITY["e5-small"]
    assert any(r.rule == "prototype:category:recall" and r.weight >= 0.9 for r in result.reasons)


def test_a_complaint_far_from_the_examples_keeps_the_model_category(classifier: ModelClassifier) -> None:
    [result] = classifier.classify([Post("I was charged twice for my order and support has ignored me for a week")])
    assert result.category == "billing"
    assert any(r.rule == "model:category:billing" for r in result.reasons)
