"""The RuleClassifier: a transparent keyword-and-rules classifier.

It is what it says: weighted term matches, not a model. Every verdict carries the reasons
(rule and matched text) so a care team can audit it. The transformer model replaces the
verdict later; the risk rules stay, because a legal threat must escalate in every language
whatever a model thinks.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from clamor.v1 import mention_pb2, triage_pb2
from services.triage.language import detect_language
from services.triage.terms import COMPLAINT_CUES, NOISE_CUES, RISK_TERMS, RiskFlag

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

NAME = "rules"
VERSION = "1"
LANGUAGES = ("en", "zh", "ja", "ru")
# The reason on a post by one of the watch's own accounts (Mention.own_account).
OWN_ACCOUNT_RULE = "own-account"

_SPACED_SCRIPTS = re.compile(r"[A-Za-z\u0400-\u04ff]")

# Score contributions; the logistic of their sum is the complaint score.
BIAS = -0.7
COMPLAINT_CUE_WEIGHT = 0.9
NOISE_CUE_WEIGHT = -0.8
RISK_WEIGHT = 1.0
# Risk flags that say "customer grievance" more than "topic": a churn threat or a supervisor
# request is almost never noise, a regulator or the press may well be news.
STRONG_RISKS = frozenset(
    {
        triage_pb2.RISK_FLAG_CHURN,
        triage_pb2.RISK_FLAG_HIERARCHICAL_REQUEST,
        triage_pb2.RISK_FLAG_LEGAL_THREAT,
        triage_pb2.RISK_FLAG_SAFETY,
    }
)
MAX_CUES_COUNTED = 3


def _pattern(term: str) -> str:
    """A term's regex. The left edge is checked by :func:`_starts_clear`, not by a lookbehind here:
    a lookbehind in front of every alternative halves the speed of the whole alternation."""
    stem = term.endswith("*")
    body = re.escape(term.rstrip("*"))
    if term.isdigit():
        # A hotline number, not part of an order number; CJK letters around it are fine ("打12315投诉").
        return rf"{body}(?![0-9])"
    if not _SPACED_SCRIPTS.search(term):
        return body
    return body + (r"\w*" if stem else r"(?!\w)")


def _starts_clear(text: str, start: int) -> bool:
    """Whether a match at ``start`` begins a word (or a number) rather than continuing one.

    Terms in CJK scripts match anywhere: those scripts do not separate words with spaces.
    """
    if start == 0:
        return True
    first, before = text[start], text[start - 1]
    if first.isdigit():
        return not before.isdigit()
    if _SPACED_SCRIPTS.match(first):
        return not (before.isalnum() or before == "_")
    return True


@dataclass(frozen=True)
class TermSet:
    """One compiled alternation per language; matches report the text that fired."""

    name: str
    patterns: dict[str, re.Pattern[str]]

    @classmethod
    def build(cls, name: str, terms: dict[str, tuple[str, ...]]) -> TermSet:
        return cls(
            name,
            {
                # Lower-cased terms against lower-cased text: five times faster than re.IGNORECASE.
                lang: re.compile("|".join(_pattern(t.lower()) for t in sorted(words, key=len, reverse=True)))
                for lang, words in terms.items()
            },
        )

    def matches(self, text: str, languages: Iterable[str]) -> list[str]:
        """The terms found in ``text``, as written, in the order of ``languages`` and then of the text."""
        lowered = text.lower()
        # Reasons quote the text as written; the rare letter whose lower case is longer shifts offsets.
        shown = text if len(lowered) == len(text) else lowered
        found: list[str] = []
        for lang in languages:
            pattern = self.patterns.get(lang)
            if pattern is not None:
                found += [
                    shown[m.start() : m.end()] for m in pattern.finditer(lowered) if _starts_clear(lowered, m.start())
                ]
        return list(dict.fromkeys(found))


@dataclass(frozen=True)
class Post:
    """What classification needs of a mention."""

    text: str
    language: str = ""
    followers: int = 0

    @classmethod
    def from_mention(cls, mention: mention_pb2.Mention) -> Post:
        return cls(text=mention.text, language=mention.language, followers=mention.author.followers)


def own_account_result(mention: mention_pb2.Mention, *, model_version: str) -> triage_pb2.TriageResult:
    """The verdict on a post by one of the watch's own accounts: noise, and no classifier asked.

    A brand's reply ("so sorry your refund failed, DM us") reads like a complaint to any model; it
    is the brand answering one, and must never open or escalate a case.
    """
    return triage_pb2.TriageResult(
        verdict=triage_pb2.VERDICT_NOISE,
        complaint_score=0.0,
        language=detect_language(mention.text, hint=mention.language),
        reasons=[triage_pb2.Reason(rule=OWN_ACCOUNT_RULE, matched=mention.author.handle)],
        model_version=model_version,
    )


class Classifier(Protocol):
    """What triage needs of a classifier: the rules, or the model with the rules beside it."""

    threshold: float

    @property
    def version(self) -> str: ...

    def classify(
        self, posts: Sequence[Post], *, encoded: Callable[[int], None] | None = None
    ) -> list[triage_pb2.TriageResult]:
        """One result per post, in order. ``encoded`` hears how many of the posts the encoder read, when
        the classifier has one: a cascade decides the others without it, so only it knows."""
        ...


class RuleClassifier:
    def __init__(self, *, threshold: float = 0.5, reach_medium: int = 5_000, reach_high: int = 100_000) -> None:
        self.threshold = threshold
        self.reach_medium = reach_medium
        self.reach_high = reach_high
        self._risks = {flag: TermSet.build(triage_pb2.RiskFlag.Name(flag), terms) for flag, terms in RISK_TERMS.items()}
        self._complaint = TermSet.build("complaint", COMPLAINT_CUES)
        self._noise = TermSet.build("noise", NOISE_CUES)

    @property
    def version(self) -> str:
        return f"{NAME}/{VERSION}"

    def classify(
        self, posts: Sequence[Post], *, encoded: Callable[[int], None] | None = None
    ) -> list[triage_pb2.TriageResult]:
        # No encoder here: ``encoded`` is never called.
        return [self.classify_one(post) for post in posts]

    def classify_one(self, post: Post) -> triage_pb2.TriageResult:
        language = detect_language(post.text, hint=post.language)
        # Risk terms are read in every language we know: a Chinese post may name the FTC.
        languages = (language, *(lang for lang in LANGUAGES if lang != language))
        reasons: list[triage_pb2.Reason] = []
        flags: list[RiskFlag] = []
        for flag, terms in self._risks.items():
            hits = terms.matches(post.text, languages)
            if hits:
                flags.append(flag)
                reasons.append(triage_pb2.Reason(rule=f"risk:{_flag_key(flag)}", matched=hits[0], weight=RISK_WEIGHT))
        complaint_hits = self._complaint.matches(post.text, [language])[:MAX_CUES_COUNTED]
        noise_hits = self._noise.matches(post.text, [language])[:MAX_CUES_COUNTED]
        reasons += [
            triage_pb2.Reason(rule="cue:complaint", matched=h, weight=COMPLAINT_CUE_WEIGHT) for h in complaint_hits
        ]
        reasons += [triage_pb2.Reason(rule="cue:noise", matched=h, weight=NOISE_CUE_WEIGHT) for h in noise_hits]
        strong = [f for f in flags if f in STRONG_RISKS]
        # Weak risks (regulator, media) only count alongside a grievance: otherwise they are news.
        risk_weight = RISK_WEIGHT * (len(strong) + (len(flags) - len(strong)) * (1 if complaint_hits else 0))
        logit = BIAS + COMPLAINT_CUE_WEIGHT * len(complaint_hits) + NOISE_CUE_WEIGHT * len(noise_hits) + risk_weight
        score = 1.0 / (1.0 + math.exp(-logit))
        is_complaint = score >= self.threshold
        return triage_pb2.TriageResult(
            verdict=triage_pb2.VERDICT_COMPLAINT if is_complaint else triage_pb2.VERDICT_NOISE,
            complaint_score=round(score, 4),
            severity=self._severity(is_complaint, flags, len(complaint_hits), post.followers),
            category="",
            language=language,
            risk_flags=flags,
            reasons=reasons,
            model_version=self.version,
        )

    def complaint_severity(self, result: triage_pb2.TriageResult, followers: int) -> triage_pb2.Severity.ValueType:
        """The severity the rules give ``result``'s flags and cues if the post is a complaint (a model said so)."""
        cues = sum(1 for reason in result.reasons if reason.rule == "cue:complaint")
        return self._severity(True, list(result.risk_flags), cues, followers)

    def _severity(
        self, is_complaint: bool, flags: list[RiskFlag], cues: int, followers: int
    ) -> triage_pb2.Severity.ValueType:
        if not is_complaint:
            return triage_pb2.SEVERITY_LOW
        level = 1  # LOW
        if cues >= 2:
            level += 1
        escalating = [f for f in flags if f != triage_pb2.RISK_FLAG_CHURN]
        if escalating:
            level = max(level, 3)  # any legal, regulator, safety, media or supervisor signal: HIGH
        if triage_pb2.RISK_FLAG_SAFETY in flags or len(escalating) >= 2:
            level = 4
        if followers >= self.reach_high:
            level += 2
        elif followers >= self.reach_medium:
            level += 1
        return _SEVERITIES[min(level, 4) - 1]


_SEVERITIES = (
    triage_pb2.SEVERITY_LOW,
    triage_pb2.SEVERITY_MEDIUM,
    triage_pb2.SEVERITY_HIGH,
    triage_pb2.SEVERITY_CRITICAL,
)


def _flag_key(flag: RiskFlag) -> str:
    return triage_pb2.RiskFlag.Name(flag).removeprefix("RISK_FLAG_").lower()
