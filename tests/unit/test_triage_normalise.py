"""What the model reads: handles, links and hashtags in one form, the same in training and serving."""

from __future__ import annotations

import pytest

from services.triage.features import FeatureSpec
from services.triage.normalise import normalise


@pytest.mark.parametrize(
    ("text", "seen"),
    [
        pytest.param("@a @b", "@user @user", id="bare-reply"),
        pytest.param("@HalcyonAir delayed AGAIN. https://t.co/abc", "@user delayed AGAIN. http", id="x-link"),
        pytest.param("look pic.twitter.com/xyz123", "look http", id="x-picture"),
        pytest.param("hi @jo@mastodon.social and @maya.bsky.social.", "hi @user and @user.", id="fediverse"),
        pytest.param(
            "#话题#太离谱了 http://t.cn/A6xYzQ2 //@小王: 同感", "话题 太离谱了 http //@user: 同感", id="weibo"
        ),
        pytest.param("回复@某某:哈哈", "回复@user:哈哈", id="handle-after-cjk"),
        pytest.param("[id123|Иван], согласен", "@user, согласен", id="vk-reply"),
        pytest.param("mail support@brand.com #FailAgain", "mail support@brand.com FailAgain", id="e-mail-kept"),
        pytest.param("C# is fine", "C# is fine", id="not-a-hashtag"),
        pytest.param("see www.brand.example/help now", "see http now", id="www"),
    ],
)
def test_normalise_gives_handles_links_and_hashtags_one_form(text: str, seen: str) -> None:
    assert normalise(text) == seen


def test_normalising_twice_changes_nothing() -> None:
    text = "@Brand_Care hi #help https://t.co/x [id1|Оля] 回复@某某"
    assert normalise(normalise(text)) == normalise(text)


def test_two_bare_replies_to_different_people_are_one_post_to_the_model() -> None:
    assert FeatureSpec().prepare(["@a @b"]) == FeatureSpec().prepare(["@SomeBrand @someone_else"])


def test_a_2026_11_model_reads_raw_text_as_it_was_trained() -> None:
    legacy = FeatureSpec.from_card(65920)
    assert (legacy.encoder, legacy.normalised, legacy.embedding_weight) == ("minilm", False, 0.5)
    assert legacy.prepare(["@a https://t.co/x"]) == ["@a https://t.co/x"]


def test_a_feature_spec_survives_the_model_card() -> None:
    spec = FeatureSpec(encoder="e5-small", ngrams=False, embedding_weight=2.0)
    assert FeatureSpec.from_card(spec.as_dict()) == spec
    assert spec.width == 384
