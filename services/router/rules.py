"""Declarative routing rules: where a triaged mention goes, which team owns it, how urgent it is.

Modelled on Alertmanager's routing tree. Semantics:

* Rules at one level are tried in order. The first that matches stops that level, unless it has
  ``continue: true``, in which case later siblings are tried too. When a rule matches, its
  ``routes`` (children) are tried the same way before any later sibling.
* A rule's ``match`` conditions are ANDed; an omitted condition matches everything, except
  ``verdict``, which defaults to ``[complaint]``: noise is routed only where a rule asks for it.
  Children do not inherit their parent's ``verdict``, so under a noise rule repeat it.
* Across every matched rule (in match order: parent, its children, then later siblings):
  ``destinations`` and ``escalate_to`` are the union, deduplicated, in first-seen order; ``team``
  and ``sla`` come from the last matched rule that sets them; ``priority`` is the most urgent set.
  A field no matched rule sets takes its value from :class:`Defaults`.
* Complaints always route (through the defaults when no rule matched); noise routes only when a
  rule matched it. A decision that does not route carries no destinations and no escalations.

Validation reports problems by rule name (or ``rules[3]``, ``rules[0].routes[1]`` when unnamed),
dotted field inside the rule and YAML line, so a typo is found without reading a stack trace.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from clamor.v1 import triage_pb2
from services.shared.config import Section, record_lines

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterator, Sequence


SeverityName = Literal["LOW", "MEDIUM", "HIGH", "CRITICAL"]
Priority = Literal["urgent", "high", "normal", "low"]
# Kept here rather than imported from services.router.config, so that config can import this module.
RULE_NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,62}$"
TEAM_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
RISK_FLAGS = frozenset(
    name.removeprefix("RISK_FLAG_").lower() for name, value in triage_pb2.RiskFlag.items() if value != 0
)
_SEVERITY_RANK = {"UNSPECIFIED": 0, "LOW": 1, "MEDIUM": 2, "HIGH": 3, "CRITICAL": 4}
_PRIORITY_RANK: dict[str, int] = {"urgent": 0, "high": 1, "normal": 2, "low": 3}

Path = tuple[str | int, ...]


class Match(Section):
    """Conditions on a triaged mention, all ANDed; an omitted one matches everything."""

    verdict: list[Literal["complaint", "noise"]] = Field(default=["complaint"], min_length=1)
    min_score: float | None = Field(default=None, ge=0, le=1)
    max_score: float | None = Field(default=None, ge=0, le=1)
    severity: list[SeverityName] | None = Field(default=None, min_length=1)
    min_severity: SeverityName | None = None
    category: list[str] | None = Field(default=None, min_length=1)
    # BCP-47 basic filtering: "en" matches "en" and "en-GB", case-insensitively.
    language: list[str] | None = Field(default=None, min_length=1)
    platform: list[str] | None = Field(default=None, min_length=1)
    source: list[str] | None = Field(default=None, min_length=1)
    watch: list[str] | None = Field(default=None, min_length=1)
    risk_flags_any: list[str] | None = Field(default=None, min_length=1)
    risk_flags_all: list[str] | None = Field(default=None, min_length=1)
    min_followers: int | None = Field(default=None, ge=0)
    max_followers: int | None = Field(default=None, ge=0)
    # Any of these, case-insensitively: a last resort for words the classifier does not know.
    text_contains: list[str] | None = Field(default=None, min_length=1)

    @field_validator("risk_flags_any", "risk_flags_all")
    @classmethod
    def _known_flags(cls, value: list[str] | None) -> list[str] | None:
        unknown = sorted(set(value or ()) - RISK_FLAGS)
        if unknown:
            raise ValueError(f"unknown risk flag {', '.join(unknown)} (known: {', '.join(sorted(RISK_FLAGS))})")
        return value

    @model_validator(mode="after")
    def _bounds_in_order(self) -> Match:
        for low, high in (("min_score", "max_score"), ("min_followers", "max_followers")):
            bounds = (getattr(self, low), getattr(self, high))
            if None not in bounds and bounds[0] > bounds[1]:
                raise ValueError(f"{low} is above {high}: nothing could match")
        return self


class Rule(Section):
    """One node of the routing tree: conditions, what a match contributes, and child rules."""

    name: str = Field(pattern=RULE_NAME_PATTERN)
    match: Match = Match()
    destinations: list[str] = Field(default_factory=list)
    team: str | None = Field(default=None, pattern=TEAM_PATTERN)
    priority: Priority | None = None
    # Name of an SLA policy.
    sla: str | None = None
    # Teams told at once: a supervisor for a hierarchical request, a specialist for a category.
    escalate_to: list[str] = Field(default_factory=list)
    continue_: bool = Field(default=False, alias="continue")
    routes: list[Rule] = Field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class Facts:
    """What rules match on, flattened from a TriagedMention; names are the enums' without prefix."""

    verdict: str = "complaint"
    score: float = 0.0
    severity: str = "UNSPECIFIED"
    category: str = ""
    language: str = ""
    platform: str = ""
    source: str = ""
    watch: str = ""
    risk_flags: frozenset[str] = frozenset()
    followers: int = 0
    text: str = ""

    @classmethod
    def from_triaged(cls, triaged: triage_pb2.TriagedMention) -> Facts:
        mention, result = triaged.mention, triaged.result
        flags = (_enum_name(triage_pb2.RiskFlag.Name, f, "RISK_FLAG_").lower() for f in result.risk_flags)
        return cls(
            verdict=_enum_name(triage_pb2.Verdict.Name, result.verdict, "VERDICT_").lower(),
            score=result.complaint_score,
            severity=_enum_name(triage_pb2.Severity.Name, result.severity, "SEVERITY_"),
            category=result.category,
            # Triage detects the language; the platform's tag is the fallback when it did not.
            language=result.language or mention.language,
            platform=mention.platform,
            source=mention.source,
            watch=mention.watch,
            risk_flags=frozenset(flags) & RISK_FLAGS,
            followers=mention.author.followers,
            text=mention.text,
        )


def _enum_name(name_of: Callable[[Any], str], value: int, prefix: str) -> str:
    # A value from a newer proto than ours is treated as unspecified rather than crashing the router.
    try:
        return name_of(value).removeprefix(prefix)
    except ValueError:
        return "UNSPECIFIED"


@dataclass(frozen=True, kw_only=True)
class Defaults:
    """What a decision gets for every field no matched rule sets."""

    destinations: tuple[str, ...] = ()
    team: str
    priority: Priority = "normal"
    sla: str = ""


@dataclass(frozen=True, kw_only=True)
class RoutingDecision:
    """Where a mention goes; ``routed`` is False only for noise that no rule asked for."""

    routed: bool
    destinations: tuple[str, ...]
    team: str
    priority: Priority
    sla: str
    escalate_to: tuple[str, ...]
    # Names of the matched rules, in match order: why the mention went where it went.
    matched: tuple[str, ...]


def _language_matches(tags: list[str], language: str) -> bool:
    language = language.lower()
    return any(language == tag.lower() or language.startswith(tag.lower() + "-") for tag in tags)


def matches(match: Match, facts: Facts) -> bool:
    """Whether every condition of ``match`` holds for ``facts``."""
    m, f = match, facts
    checks = (
        f.verdict in m.verdict,
        m.min_score is None or f.score >= m.min_score,
        m.max_score is None or f.score <= m.max_score,
        m.severity is None or f.severity in m.severity,
        m.min_severity is None or _SEVERITY_RANK.get(f.severity, 0) >= _SEVERITY_RANK[m.min_severity],
        m.category is None or f.category in m.category,
        m.language is None or _language_matches(m.language, f.language),
        m.platform is None or f.platform in m.platform,
        m.source is None or f.source in m.source,
        m.watch is None or f.watch in m.watch,
        m.risk_flags_any is None or not f.risk_flags.isdisjoint(m.risk_flags_any),
        m.risk_flags_all is None or f.risk_flags.issuperset(m.risk_flags_all),
        m.min_followers is None or f.followers >= m.min_followers,
        m.max_followers is None or f.followers <= m.max_followers,
        m.text_contains is None or any(s.casefold() in f.text.casefold() for s in m.text_contains),
    )
    return all(checks)


def _matched(rules: Sequence[Rule], facts: Facts) -> Iterator[Rule]:
    for rule in rules:
        if matches(rule.match, facts):
            yield rule
            yield from _matched(rule.routes, facts)
            if not rule.continue_:
                return


def route(rules: Sequence[Rule], facts: Facts, defaults: Defaults) -> RoutingDecision:
    """Walk the routing tree for ``facts`` and merge what the matched rules say (see the module doc)."""
    hits = list(_matched(rules, facts))
    routed = bool(hits) or facts.verdict == "complaint"
    # dict.fromkeys: a union that keeps first-seen order.
    destinations = tuple(dict.fromkeys(d for rule in hits for d in rule.destinations))
    escalate_to = tuple(dict.fromkeys(t for rule in hits for t in rule.escalate_to))
    teams = [rule.team for rule in hits if rule.team is not None]
    slas = [rule.sla for rule in hits if rule.sla is not None]
    priorities = [rule.priority for rule in hits if rule.priority is not None]
    return RoutingDecision(
        routed=routed,
        destinations=(destinations or defaults.destinations) if routed else (),
        team=teams[-1] if teams else defaults.team,
        priority=min(priorities, key=_PRIORITY_RANK.__getitem__) if priorities else defaults.priority,
        sla=slas[-1] if slas else defaults.sla,
        escalate_to=escalate_to if routed else (),
        matched=tuple(rule.name for rule in hits),
    )


def count_rules(rules: Sequence[Rule]) -> int:
    """How many rules the tree holds, children included."""
    return sum(1 + count_rules(rule.routes) for rule in rules)


# --- validation -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RuleProblem:
    """One thing wrong with the rules: which rule, which field inside it, what, and the YAML line.

    ``rule`` and ``field`` are empty for problems with the file as a whole; ``line`` is 0 unknown.
    """

    rule: str
    field: str
    message: str
    line: int = 0

    def __str__(self) -> str:
        where = ": ".join(part for part in (self.rule, self.field) if part)
        at = f" (line {self.line})" if self.line else ""
        return f"{where or 'rules'}{at}: {self.message}"


def parse_rules(yaml_text: str) -> tuple[list[Rule], list[RuleProblem]]:
    """Rules from YAML text: a list of rules, or a mapping with a ``rules:`` key.

    Returns the top-level rules that validated and every problem found, sorted by line. Apply the
    rules only when there are no problems: a partial tree would route differently from the file.
    """
    lines: dict[Path, int] = {}
    try:
        # Composed for the lines, then loaded: rule files are small, and this needs no loader internals.
        node = yaml.compose(yaml_text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(yaml_text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        return [], [RuleProblem("", "", f"not valid YAML: {exc}", mark.line + 1 if mark is not None else 0)]
    if node is not None:
        record_lines(node, (), lines)
    return _validate(data, lines)


def rules_from_data(data: Any) -> tuple[list[Rule], list[RuleProblem]]:
    """Rules from already-parsed YAML (no line numbers); see :func:`parse_rules`."""
    return _validate(data, {})


def _line(path: Path, lines: dict[Path, int]) -> int:
    for depth in range(len(path), -1, -1):
        if path[:depth] in lines:
            return lines[path[:depth]]
    return 0


def _validate(data: Any, lines: dict[Path, int]) -> tuple[list[Rule], list[RuleProblem]]:
    root: Path = ()
    if isinstance(data, dict):
        problems = [
            RuleProblem("", str(key), "unknown top-level key (expected only rules)", _line((str(key),), lines))
            for key in data
            if key != "rules"
        ]
        root, data = ("rules",), data.get("rules")
    else:
        problems = []
    if data is None:
        return [], problems
    if not isinstance(data, list):
        message = "expected a list of rules, or a mapping with a rules: key holding one"
        return [], [*problems, RuleProblem("", "", message, _line(root, lines))]
    rules: list[Rule] = []
    for index, item in enumerate(data):
        try:
            rules.append(Rule.model_validate(item))
        except ValidationError as exc:
            problems.extend(_locate(error, item, (*root, index), lines) for error in exc.errors())
    problems.extend(_duplicates(rules, root, lines))
    problems.sort(key=lambda problem: problem.line)
    return rules, problems


def _locate(error: Any, item: Any, path: Path, lines: dict[Path, int]) -> RuleProblem:
    """Turn a pydantic error inside the top-level rule at ``path`` into the innermost rule and field."""
    loc: Path = tuple(part for part in error["loc"] if isinstance(part, str | int))
    node, label = item, f"rules[{path[-1]}]"
    # Each ("routes", i) prefix descends into a child rule: the problem belongs to the innermost.
    while len(loc) >= 2 and loc[0] == "routes" and isinstance(loc[1], int):
        children = node.get("routes") if isinstance(node, dict) else None
        node = children[loc[1]] if isinstance(children, list) and loc[1] < len(children) else None
        path, loc, label = (*path, *loc[:2]), loc[2:], f"{label}.routes[{loc[1]}]"
    name = node.get("name") if isinstance(node, dict) else None
    dotted = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden" and loc:
        known = set(Match.model_fields) if loc[:1] == ("match",) else {"continue", *Rule.model_fields} - {"continue_"}
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        message = "unknown field" + (f" (did you mean {close[0]}?)" if close else "")
    label = name if isinstance(name, str) and name else label
    return RuleProblem(label, dotted, message, _line((*path, *loc), lines))


def _walk(rules: Sequence[Rule], path: Path) -> Iterator[tuple[Rule, Path]]:
    for index, rule in enumerate(rules):
        yield rule, (*path, index)
        yield from _walk(rule.routes, (*path, index, "routes"))


def _duplicates(rules: Sequence[Rule], root: Path, lines: dict[Path, int]) -> Iterator[RuleProblem]:
    # Names must be unique across the whole tree: decisions and metrics name the matched rules.
    first: dict[str, int] = {}
    for rule, path in _walk(rules, root):
        line = _line((*path, "name"), lines)
        if rule.name in first:
            at = f" (line {first[rule.name]})" if first[rule.name] else ""
            yield RuleProblem(rule.name, "name", f"duplicate rule name, first used earlier{at}", line)
        else:
            first[rule.name] = line


def check_references(
    rules: Sequence[Rule],
    *,
    destinations: Collection[str],
    teams_required: bool = False,
    sla_policies: Collection[str],
) -> list[RuleProblem]:
    """Names the rules use that the configuration does not define.

    With ``teams_required`` (no default team), every rule must set ``team`` itself or inherit
    one from a parent, since a mention that stops at that rule would otherwise have no owner.
    """

    def known(names: Collection[str]) -> str:
        return f"(known: {', '.join(sorted(names))})" if names else "(none are configured)"

    problems: list[RuleProblem] = []

    def visit(level: Sequence[Rule], has_team: bool) -> None:
        for rule in level:
            problems.extend(
                RuleProblem(rule.name, f"destinations[{i}]", f"unknown destination {name!r} {known(destinations)}")
                for i, name in enumerate(rule.destinations)
                if name not in destinations
            )
            if rule.sla is not None and rule.sla not in sla_policies:
                problems.append(RuleProblem(rule.name, "sla", f"unknown SLA policy {rule.sla!r} {known(sla_policies)}"))
            if teams_required and not has_team and rule.team is None:
                problems.append(RuleProblem(rule.name, "team", "no team here or on a parent, and no default team"))
            visit(rule.routes, has_team or rule.team is not None)

    visit(rules, False)
    return problems
