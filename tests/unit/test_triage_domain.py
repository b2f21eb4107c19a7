"""RuleClassifier: risk flags in four languages, auditable reasons, severity and the sample's labels;
and the verdict on a post by the brand's own account, which no classifier is asked about."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from clamor.v1 import mention_pb2, triage_pb2
from services.triage.domain import OWN_ACCOUNT_RULE, Post, RuleClassifier, own_account_result
from services.triage.terms import RiskFlag

LEGAL = triage_pb2.RISK_FLAG_LEGAL_THREAT
REGULATOR = triage_pb2.RISK_FLAG_REGULATOR
SAFETY = triage_pb2.RISK_FLAG_SAFETY
HIERARCHY = triage_pb2.RISK_FLAG_HIERARCHICAL_REQUEST

Classified = list[tuple[Post, triage_pb2.TriageResult]]


@pytest.fixture(scope="module")
def classifier() -> RuleClassifier:
    return RuleClassifier()


@pytest.fixture(scope="module")
def sample_posts() -> list[Post]:
    return [post for post, _ in _labelled_sample()]


@pytest.fixture(scope="module")
def sample_results(classifier: RuleClassifier, sample_posts: list[Post]) -> Classified:
    return list(zip(sample_posts, classifier.classify(sample_posts), strict=True))


def _labelled_sample() -> list[tuple[Post, bool]]:
    text = resources.files("services.cli_data").joinpath("sample_posts.jsonl").read_text(encoding="utf-8")
    labelled = []
    for line in text.splitlines():
        raw = json.loads(line)
        post = Post(text=raw["text"], language=raw["language"], followers=raw["author"]["followers"])
        labelled.append((post, raw["label"] == "complaint"))
    return labelled


def _flag_rule(flag: RiskFlag) -> str:
    return "risk:" + triage_pb2.RiskFlag.Name(flag).removeprefix("RISK_FLAG_").lower()


# --- risk flags in every language ---------------------------------------------------------

RISK_CASES = [
    pytest.param(LEGAL, "I will see you in court, the refund is a joke", "see you in court", id="legal-en"),
    pytest.param(LEGAL, "再不退款我就去法院起诉你们", "法院", id="legal-zh"),
    pytest.param(LEGAL, "返金されないので弁護士に相談します", "弁護士", id="legal-ja"),
    pytest.param(LEGAL, "Не вернёте деньги, пойду в суд", "в суд", id="legal-ru"),
    pytest.param(REGULATOR, "Filing with the CFPB after the fourth refund denial", "CFPB", id="regulator-en"),
    pytest.param(REGULATOR, "已经打12315了，退款还是没到", "12315", id="regulator-zh-12315"),
    pytest.param(REGULATOR, "已经向消协投诉，还是没退款", "消协", id="regulator-zh-consumer-association"),
    pytest.param(REGULATOR, "返金されないので消費者センターに相談しました", "消費者センター", id="regulator-ja"),
    pytest.param(
        REGULATOR, "Написала в Роспотребнадзор, возврат так и не сделали", "Роспотребнадзор", id="regulator-ru"
    ),
    pytest.param(SAFETY, "The charger caught fire on my desk", "caught fire", id="safety-en"),
    pytest.param(SAFETY, "充电宝起火了，太差了", "起火", id="safety-zh"),
    pytest.param(SAFETY, "充電器が発火しました。最悪です", "発火", id="safety-ja"),
    pytest.param(SAFETY, "Зарядка загорелась, ужасное качество", "загорелась", id="safety-ru"),
    pytest.param(HIERARCHY, "Let me speak to a manager, this is ridiculous", "manager", id="hierarchy-en"),
    pytest.param(HIERARCHY, "叫你们经理出来，太差了", "经理", id="hierarchy-zh"),
    pytest.param(HIERARCHY, "責任者を出してください。対応がひどい", "責任者", id="hierarchy-ja"),
    pytest.param(HIERARCHY, "Позовите руководителя, обслуживание ужасное", "руководителя", id="hierarchy-ru"),
]


@pytest.mark.parametrize(("flag", "text", "term"), RISK_CASES)
def test_risk_term_raises_its_flag(classifier: RuleClassifier, flag: RiskFlag, text: str, term: str) -> None:
    assert flag in classifier.classify_one(Post(text)).risk_flags


@pytest.mark.parametrize(("flag", "text", "term"), RISK_CASES)
def test_risk_reason_names_the_matched_text(classifier: RuleClassifier, flag: RiskFlag, text: str, term: str) -> None:
    reasons = {r.rule: r.matched for r in classifier.classify_one(Post(text)).reasons}
    assert reasons[_flag_rule(flag)] == term


def test_risk_terms_are_read_in_every_language(classifier: RuleClassifier) -> None:
    result = classifier.classify_one(Post("已经向FTC投诉了，退款还是没到"))
    assert result.language == "zh"
    assert REGULATOR in result.risk_flags


def test_every_reason_names_text_found_in_the_post(
    sample_results: Classified,
) -> None:
    for post, result in sample_results:
        for reason in result.reasons:
            assert reason.matched, (post.text, reason.rule)
            assert reason.matched.lower() in post.text.lower(), (post.text, reason.rule)


def test_every_risk_flag_has_a_reason(sample_results: Classified) -> None:
    for post, result in sample_results:
        rules = {r.rule for r in result.reasons}
        assert {_flag_rule(f) for f in result.risk_flags} <= rules, post.text


# --- term matching ------------------------------------------------------------------------


@pytest.mark.parametrize("word", ["refund", "refunds", "refunded", "Refunding"])
def test_stem_matches_its_inflections(classifier: RuleClassifier, word: str) -> None:
    matched = [r.matched for r in classifier.classify_one(Post(f"Still no {word} from them")).reasons]
    assert word in matched


def test_stem_does_not_match_inside_another_word(classifier: RuleClassifier) -> None:
    matched = [r.matched.lower() for r in classifier.classify_one(Post("Nonrefundable fares, noted")).reasons]
    assert not any("refund" in m for m in matched)


def test_whole_word_term_does_not_match_inside_another_word(classifier: RuleClassifier) -> None:
    result = classifier.classify_one(Post("Pursue your dreams, said the issue tracker"))
    assert LEGAL not in result.risk_flags


def test_terms_match_regardless_of_case(classifier: RuleClassifier) -> None:
    assert LEGAL in classifier.classify_one(Post("MY LAWYER WILL HEAR ABOUT THIS")).risk_flags


def test_regulator_number_does_not_match_inside_a_longer_number(classifier: RuleClassifier) -> None:
    result = classifier.classify_one(Post("Order 431500 never arrived, still waiting"))
    assert REGULATOR not in result.risk_flags


# --- score, verdict and severity ----------------------------------------------------------


def test_complaint_score_is_a_probability(classifier: RuleClassifier, sample_results: Classified) -> None:
    extremes = [
        Post("worst terrible awful scam refund lawyer FTC fire manager journalist cancel my account"),
        Post("love amazing awesome kudos thank you great job best recommend"),
        Post(""),
    ]
    results = [*sample_results, *((post, classifier.classify_one(post)) for post in extremes)]
    for post, result in results:
        assert 0.0 <= result.complaint_score <= 1.0, post.text


def test_verdict_follows_the_threshold(sample_posts: list[Post]) -> None:
    for result in RuleClassifier(threshold=0.7).classify(sample_posts):
        is_complaint = result.verdict == triage_pb2.VERDICT_COMPLAINT
        assert is_complaint == (result.complaint_score >= 0.7)


def test_complaint_cues_raise_the_score(classifier: RuleClassifier) -> None:
    one = classifier.classify_one(Post("The app is broken")).complaint_score
    two = classifier.classify_one(Post("The app is broken and support is useless")).complaint_score
    assert two > one


def test_noise_gets_severity_low(classifier: RuleClassifier) -> None:
    result = classifier.classify_one(Post("Love the new app, great job team!", followers=5_000_000))
    assert result.verdict == triage_pb2.VERDICT_NOISE
    assert result.severity == triage_pb2.SEVERITY_LOW


def test_every_noise_verdict_has_severity_low(sample_results: Classified) -> None:
    for _, result in sample_results:
        if result.verdict == triage_pb2.VERDICT_NOISE:
            assert result.severity == triage_pb2.SEVERITY_LOW


@pytest.mark.parametrize(("flag", "text", "term"), [c for c in RISK_CASES if c.values[0] == SAFETY])
def test_safety_risk_is_critical(classifier: RuleClassifier, flag: RiskFlag, text: str, term: str) -> None:
    assert classifier.classify_one(Post(text)).severity == triage_pb2.SEVERITY_CRITICAL


@pytest.mark.parametrize(("flag", "text", "term"), [c for c in RISK_CASES if c.values[0] == LEGAL])
def test_legal_threat_is_high(classifier: RuleClassifier, flag: RiskFlag, text: str, term: str) -> None:
    assert classifier.classify_one(Post(text)).severity == triage_pb2.SEVERITY_HIGH


def test_two_escalating_risks_are_critical(classifier: RuleClassifier) -> None:
    result = classifier.classify_one(Post("My lawyer and the FTC will hear about this refund"))
    assert {LEGAL, REGULATOR} <= set(result.risk_flags)
    assert result.severity == triage_pb2.SEVERITY_CRITICAL


def test_churn_alone_does_not_make_a_case_high(classifier: RuleClassifier) -> None:
    result = classifier.classify_one(Post("Switching to another bank, the app is broken"))
    assert list(result.risk_flags) == [triage_pb2.RISK_FLAG_CHURN]
    assert result.severity < triage_pb2.SEVERITY_HIGH


def test_follower_reach_raises_severity() -> None:
    classifier = RuleClassifier(reach_medium=1_000, reach_high=50_000)
    text = "My refunded order arrived damaged"

    def severity(followers: int) -> int:
        return classifier.classify_one(Post(text, followers=followers)).severity

    assert severity(999) == severity(0)
    assert severity(0) < severity(1_000) < severity(50_000)


def test_reach_does_not_raise_severity_above_critical() -> None:
    classifier = RuleClassifier(reach_medium=10, reach_high=100)
    post = Post("The charger caught fire, awful", followers=1_000_000)
    assert classifier.classify_one(post).severity == triage_pb2.SEVERITY_CRITICAL


# --- language and batches -----------------------------------------------------------------


def test_result_carries_the_detected_language(classifier: RuleClassifier) -> None:
    assert classifier.classify_one(Post("Возврат до сих пор не пришёл")).language == "ru"


def test_language_hint_overrides_detection(classifier: RuleClassifier) -> None:
    assert classifier.classify_one(Post("Nimbus 的客服太差了", language="ja-JP")).language == "ja"


def test_classify_returns_one_result_per_post_in_order(classifier: RuleClassifier) -> None:
    posts = [Post("Love it, thank you!"), Post("The charger caught fire"), Post("Love it, thank you!")]
    results = classifier.classify(posts)
    assert [r.verdict for r in results] == [
        triage_pb2.VERDICT_NOISE,
        triage_pb2.VERDICT_COMPLAINT,
        triage_pb2.VERDICT_NOISE,
    ]


def test_sample_labels_agree_with_the_classifier_on_three_quarters(
    sample_results: Classified,
) -> None:
    labelled = _labelled_sample()
    agree = sum(
        (result.verdict == triage_pb2.VERDICT_COMPLAINT) == is_complaint
        for (_, result), (_, is_complaint) in zip(sample_results, labelled, strict=True)
    )
    assert len(labelled) >= 300
    assert agree / len(labelled) >= 0.75, f"{agree}/{len(labelled)} posts agree with their label"


# --- the brand's own posts ----------------------------------------------------------------

BRAND_APOLOGY = "@kev_oconnor so sorry, your refund failed again, DM us and we will sort it out"


def own_post(text: str = BRAND_APOLOGY, language: str = "") -> mention_pb2.Mention:
    return mention_pb2.Mention(
        id="x:1",
        platform="x",
        text=text,
        language=language,
        watch="lumo",
        own_account=True,
        author=mention_pb2.Author(handle="LumoMobile", followers=95_800),
    )


def test_a_brand_apology_reads_like_a_complaint_to_the_rules(classifier: RuleClassifier) -> None:
    # Why own posts skip the classifier: the rules (and the model) hear a grievance in an apology.
    result = classifier.classify_one(Post(BRAND_APOLOGY, followers=95_800))
    assert result.verdict == triage_pb2.VERDICT_COMPLAINT
    assert result.severity >= triage_pb2.SEVERITY_HIGH


def test_an_own_post_is_noise_with_the_own_account_reason() -> None:
    result = own_account_result(own_post(), model_version="rules/1")
    assert (result.verdict, result.complaint_score, result.severity) == (
        triage_pb2.VERDICT_NOISE,
        0.0,
        triage_pb2.SEVERITY_UNSPECIFIED,
    )
    assert [(r.rule, r.matched) for r in result.reasons] == [(OWN_ACCOUNT_RULE, "LumoMobile")]
    assert (list(result.risk_flags), result.category, result.model_version) == ([], "", "rules/1")


def test_an_own_post_keeps_its_detected_language() -> None:
    assert (
        own_account_result(
            own_post("ご不便をおかけして申し訳ございません。DMでご連絡ください。"), model_version="m"
        ).language
        == "ja"
    )
    assert own_account_result(own_post(language="en-GB"), model_version="m").language == "en"


def test_an_own_post_with_risk_words_raises_no_flag() -> None:
    result = own_account_result(own_post("Our lawyer and the FTC have confirmed the recall is safe"), model_version="m")
    assert list(result.risk_flags) == []
