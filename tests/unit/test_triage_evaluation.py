"""Splits and folds that estimate quality honestly: shift held-out posts, folds that never share a post."""

from __future__ import annotations

from collections import Counter

import pytest

from services.triage.evaluation import fold_of, folds
from services.triage.training import SHIFT_INDUSTRIES, SHIFT_PLATFORMS, Example, shift_split


def post(n: int, platform: str, industry: str, text: str = "") -> Example:
    return Example(
        id=f"p{n}", text=text or f"post {n} on {platform}", label="noise", platform=platform, industry=industry
    )


def test_the_shift_split_holds_out_whole_platforms_and_industries() -> None:
    platform = sorted(SHIFT_PLATFORMS)[0]
    industry = sorted(SHIFT_INDUSTRIES)[0]
    examples = [
        post(1, "x", "telecom"),
        post(2, platform, "telecom"),
        post(3, "x", industry),
        post(4, "reddit", "none"),
    ]
    train, test = shift_split(examples)
    assert [e.id for e in train] == ["p1", "p4"]
    assert [e.id for e in test] == ["p2", "p3"]


def test_the_first_corpus_and_posts_without_a_platform_are_always_trained_on() -> None:
    industry = sorted(SHIFT_INDUSTRIES)[0]
    train, test = shift_split([post(1, "v1", industry), post(2, "", industry)])
    assert (len(train), len(test)) == (2, 0)


def test_the_shift_split_leaves_every_platform_family_and_language_on_both_sides() -> None:
    # One register per family and language is held out; the others of that language are trained on.
    held = {"mastodon", "hackernews", "appstore", "xiaohongshu", "zhihu", "chiebukuro", "kakaku", "pikabu", "habr"}
    assert held == SHIFT_PLATFORMS


def examples_with_repeats(count: int) -> list[Example]:
    texts = [f"@user{n % 7} my parcel number {n // 2} never came https://t.co/{n}" for n in range(count)]
    return [Example(id=f"e{n}", text=text, label="complaint" if n % 3 else "noise") for n, text in enumerate(texts)]


@pytest.mark.parametrize("k", [2, 5, 10])
def test_folds_test_every_post_exactly_once(k: int) -> None:
    examples = examples_with_repeats(400)
    tested = Counter(i for _, test in folds(examples, k) for i in test)
    assert set(tested) == set(range(len(examples)))
    assert set(tested.values()) == {1}


@pytest.mark.parametrize("k", [2, 5, 10])
def test_a_fold_never_trains_on_a_post_it_tests(k: int) -> None:
    examples = examples_with_repeats(400)
    for train, test in folds(examples, k):
        assert not set(train) & set(test)
        # Copies of one post (other handles, other links: the same post to the model) share a fold.
        seen = {examples[i].text.split("https")[0].split(" ", 1)[1] for i in train}
        assert not seen & {examples[i].text.split("https")[0].split(" ", 1)[1] for i in test}


def test_a_repost_lands_in_the_fold_of_its_original() -> None:
    original = Example(id="a", text="@BrandA charged twice https://t.co/1", label="complaint")
    repost = Example(id="b", text="@someone_else  charged twice   https://t.co/2", label="complaint")
    assert fold_of(original, 5) == fold_of(repost, 5)


def test_folds_need_two_at_least() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        folds(examples_with_repeats(10), 1)
