"""Routing rules: the tree walk, how matched rules merge, every matcher, and located validation errors."""

from __future__ import annotations

import dataclasses
import textwrap
from typing import Any

import pytest

from clamor.v1 import mention_pb2, triage_pb2
from services.router.rules import (
    RISK_FLAGS,
    Defaults,
    Facts,
    Match,
    Rule,
    RuleProblem,
    check_references,
    count_rules,
    matches,
    parse_rules,
    route,
    rules_from_data,
)

DEFAULTS = Defaults(destinations=("care-inbox",), team="care", priority="normal", sla="standard")
COMPLAINT = Facts(
    verdict="complaint",
    score=0.8,
    severity="MEDIUM",
    category="billing",
    language="en-GB",
    platform="reddit",
    source="reddit-brand",
    watch="acme",
    risk_flags=frozenset({"legal_threat", "churn"}),
    followers=1200,
    text="I will SUE you over this double charge",
)
NOISE = dataclasses.replace(COMPLAINT, verdict="noise", risk_flags=frozenset(), severity="LOW")


def tree(text: str) -> list[Rule]:
    rules, problems = parse_rules(textwrap.dedent(text))
    assert problems == []
    return rules


def facts(**changes: Any) -> Facts:
    return dataclasses.replace(COMPLAINT, **changes)


# --- the tree walk --------------------------------------------------------------------------


def test_the_first_matching_rule_stops_its_level() -> None:
    rules = tree("- {name: first, team: alpha}\n- {name: second, team: beta}\n")
    decision = route(rules, COMPLAINT, DEFAULTS)
    assert (decision.matched, decision.team) == (("first",), "alpha")


def test_a_rule_that_does_not_match_is_passed_over() -> None:
    rules = tree("- {name: critical, match: {severity: [CRITICAL]}, team: alpha}\n- {name: rest, team: beta}\n")
    assert route(rules, COMPLAINT, DEFAULTS).matched == ("rest",)


def test_continue_lets_later_siblings_match_too() -> None:
    rules = tree("""
        - {name: audit, continue: true, destinations: [audit-log]}
        - {name: billing, match: {category: [billing]}, destinations: [finance]}
        - {name: rest, destinations: [care]}
    """)
    decision = route(rules, COMPLAINT, DEFAULTS)
    assert decision.matched == ("audit", "billing")
    assert decision.destinations == ("audit-log", "finance")


def test_continue_is_read_from_its_yaml_spelling() -> None:
    assert tree("- {name: a, continue: true}\n")[0].continue_ is True


def test_children_are_tried_only_when_their_parent_matches() -> None:
    rules = tree("""
        - name: mastodon
          match: {platform: [mastodon]}
          routes: [{name: any-child, team: fedi}]
        - {name: rest}
    """)
    assert route(rules, COMPLAINT, DEFAULTS).matched == ("rest",)


def test_a_child_overrides_its_parents_team_and_sla() -> None:
    rules = tree("""
        - name: billing
          match: {category: [billing]}
          team: finance
          sla: standard
          routes:
            - {name: billing-legal, match: {risk_flags_any: [legal_threat]}, team: legal, sla: fast}
    """)
    decision = route(rules, COMPLAINT, DEFAULTS)
    assert decision.matched == ("billing", "billing-legal")
    assert (decision.team, decision.sla) == ("legal", "fast")


def test_a_parent_keeps_its_team_when_no_child_matches() -> None:
    rules = tree("""
        - name: billing
          team: finance
          routes: [{name: critical, match: {severity: [CRITICAL]}, team: seniors}]
    """)
    decision = route(rules, COMPLAINT, DEFAULTS)
    assert (decision.matched, decision.team) == (("billing",), "finance")


def test_the_first_matching_child_stops_the_childrens_level() -> None:
    rules = tree("- name: parent\n  routes:\n    - {name: one, team: alpha}\n    - {name: two, team: beta}\n")
    assert route(rules, COMPLAINT, DEFAULTS).matched == ("parent", "one")


def test_a_later_sibling_after_continue_overrides_an_earlier_siblings_child() -> None:
    rules = tree("""
        - name: first
          continue: true
          routes: [{name: first-child, team: alpha, sla: fast}]
        - {name: second, team: beta}
    """)
    decision = route(rules, COMPLAINT, DEFAULTS)
    assert decision.matched == ("first", "first-child", "second")
    # Match order is parent, its children, then later siblings: the last team set wins.
    assert (decision.team, decision.sla) == ("beta", "fast")


def test_destinations_are_the_union_in_match_order_without_duplicates() -> None:
    rules = tree("""
        - name: all
          continue: true
          destinations: [slack, email]
          routes: [{name: child, destinations: [pager, slack]}]
        - {name: other, destinations: [email, webhook]}
    """)
    assert route(rules, COMPLAINT, DEFAULTS).destinations == ("slack", "email", "pager", "webhook")


def test_escalations_are_the_union_of_every_matched_rule() -> None:
    rules = tree("""
        - {name: legal, continue: true, match: {risk_flags_any: [legal_threat]}, escalate_to: [legal, seniors]}
        - {name: churn, match: {risk_flags_any: [churn]}, escalate_to: [retention, seniors]}
    """)
    assert route(rules, COMPLAINT, DEFAULTS).escalate_to == ("legal", "seniors", "retention")


def test_priority_is_the_most_urgent_of_the_matched_rules() -> None:
    rules = tree("""
        - {name: a, continue: true, priority: low}
        - name: b
          continue: true
          priority: high
          routes: [{name: b1, priority: normal}]
        - {name: c, priority: urgent}
    """)
    assert route(rules, COMPLAINT, DEFAULTS).priority == "urgent"


def test_a_rule_may_lower_the_priority_below_the_default() -> None:
    rules = tree("- {name: quiet, priority: low}\n")
    assert route(rules, COMPLAINT, DEFAULTS).priority == "low"


def test_a_complaint_no_rule_matches_is_routed_by_the_defaults() -> None:
    rules = tree("- {name: critical, match: {severity: [CRITICAL]}, destinations: [pager]}\n")
    decision = route(rules, COMPLAINT, DEFAULTS)
    assert decision.routed is True
    assert decision.matched == ()
    assert (decision.destinations, decision.team, decision.priority, decision.sla) == (
        ("care-inbox",),
        "care",
        "normal",
        "standard",
    )


def test_fields_no_matched_rule_sets_come_from_the_defaults() -> None:
    decision = route(tree("- {name: tag-only, escalate_to: [seniors]}\n"), COMPLAINT, DEFAULTS)
    assert (decision.destinations, decision.team, decision.sla) == (("care-inbox",), "care", "standard")
    assert decision.escalate_to == ("seniors",)


def test_noise_is_not_routed_even_by_a_catch_all_rule() -> None:
    decision = route(tree("- {name: everything, destinations: [slack], escalate_to: [seniors]}\n"), NOISE, DEFAULTS)
    assert decision.routed is False
    assert (decision.matched, decision.destinations, decision.escalate_to) == ((), (), ())


def test_noise_is_routed_when_a_rule_asks_for_it() -> None:
    rules = tree("- {name: noise-sample, match: {verdict: [noise]}, destinations: [training-set]}\n")
    decision = route(rules, NOISE, DEFAULTS)
    assert decision.routed is True
    assert (decision.matched, decision.destinations) == (("noise-sample",), ("training-set",))


def test_children_of_a_noise_rule_match_noise_only_when_they_say_so() -> None:
    rules = tree("""
        - name: noise
          match: {verdict: [noise]}
          routes:
            - {name: plain-child, team: alpha}
            - {name: noise-child, match: {verdict: [noise, complaint]}, team: beta}
    """)
    assert route(rules, NOISE, DEFAULTS).matched == ("noise", "noise-child")


def test_count_rules_includes_nested_routes() -> None:
    rules = tree("- name: a\n  routes:\n    - name: a1\n      routes: [{name: a1x}]\n    - {name: a2}\n- {name: b}\n")
    assert count_rules(rules) == 5
    assert count_rules([]) == 0


# --- matchers -------------------------------------------------------------------------------

MATCHER_CASES: list[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]] = [
    # (match, changes that match, changes that do not)
    ({"verdict": ["noise"]}, {"verdict": "noise"}, {"verdict": "complaint"}),
    ({"min_score": 0.7}, {"score": 0.7}, {"score": 0.69}),
    ({"max_score": 0.5}, {"score": 0.5}, {"score": 0.51}),
    ({"severity": ["HIGH", "CRITICAL"]}, {"severity": "CRITICAL"}, {"severity": "MEDIUM"}),
    ({"min_severity": "HIGH"}, {"severity": "HIGH"}, {"severity": "MEDIUM"}),
    ({"min_severity": "HIGH"}, {"severity": "CRITICAL"}, {"severity": "LOW"}),
    ({"min_severity": "LOW"}, {"severity": "LOW"}, {"severity": "UNSPECIFIED"}),
    ({"category": ["billing", "delivery"]}, {"category": "delivery"}, {"category": "defect"}),
    ({"language": ["en"]}, {"language": "en-GB"}, {"language": "de"}),
    ({"language": ["en"]}, {"language": "EN"}, {"language": "eng"}),
    ({"language": ["zh-Hant"]}, {"language": "zh-hant-TW"}, {"language": "zh"}),
    ({"platform": ["mastodon"]}, {"platform": "mastodon"}, {"platform": "reddit"}),
    ({"source": ["reddit-brand"]}, {"source": "reddit-brand"}, {"source": "reddit-other"}),
    ({"watch": ["acme", "acme-cloud"]}, {"watch": "acme-cloud"}, {"watch": "rival"}),
    (
        {"risk_flags_any": ["safety", "regulator"]},
        {"risk_flags": frozenset({"regulator", "churn"})},
        {"risk_flags": frozenset({"churn"})},
    ),
    (
        {"risk_flags_all": ["legal_threat", "media"]},
        {"risk_flags": frozenset({"legal_threat", "media", "churn"})},
        {"risk_flags": frozenset({"legal_threat"})},
    ),
    ({"min_followers": 10000}, {"followers": 10000}, {"followers": 9999}),
    ({"max_followers": 100}, {"followers": 100}, {"followers": 101}),
    ({"text_contains": ["refund", "lawyer"]}, {"text": "Calling my LAWYER now"}, {"text": "just sad"}),
]


@pytest.mark.parametrize(("match", "hit", "miss"), MATCHER_CASES)
def test_each_matcher_accepts_and_rejects(match: dict[str, Any], hit: dict[str, Any], miss: dict[str, Any]) -> None:
    condition = Match.model_validate({"verdict": ["complaint", "noise"], **match})
    assert matches(condition, facts(**hit)) is True
    assert matches(condition, facts(**miss)) is False


def test_an_empty_match_takes_every_complaint_and_no_noise() -> None:
    assert matches(Match(), COMPLAINT) is True
    assert matches(Match(), NOISE) is False


def test_conditions_are_anded() -> None:
    condition = Match(category=["billing"], min_severity="HIGH")
    assert matches(condition, facts(severity="HIGH")) is True
    assert matches(condition, facts(severity="HIGH", category="defect")) is False
    assert matches(condition, facts(severity="LOW")) is False


def test_risk_flags_all_with_no_flags_on_the_mention_does_not_match() -> None:
    assert matches(Match(risk_flags_all=["churn"]), facts(risk_flags=frozenset())) is False


def test_the_valid_risk_flags_are_the_enum_names_without_prefix() -> None:
    assert frozenset({"legal_threat", "regulator", "safety", "media", "churn", "hierarchical_request"}) == RISK_FLAGS


# --- facts from a triaged mention -----------------------------------------------------------


def triaged(**result: Any) -> triage_pb2.TriagedMention:
    mention = mention_pb2.Mention(
        id="mastodon-eu:1",
        source="mastodon-eu",
        platform="mastodon",
        text="Where is my refund?",
        language="de",
        watch="acme",
        thread_id="t1",
        author=mention_pb2.Author(handle="ana", followers=5400),
    )
    fields: dict[str, Any] = {
        "verdict": triage_pb2.VERDICT_COMPLAINT,
        "complaint_score": 0.9,
        "severity": triage_pb2.SEVERITY_HIGH,
        "category": "billing",
        "language": "en",
        "risk_flags": [triage_pb2.RISK_FLAG_HIERARCHICAL_REQUEST, triage_pb2.RISK_FLAG_CHURN],
    }
    return triage_pb2.TriagedMention(mention=mention, result=triage_pb2.TriageResult(**{**fields, **result}))


def test_facts_are_read_from_a_triaged_mention() -> None:
    assert Facts.from_triaged(triaged()) == Facts(
        verdict="complaint",
        score=0.9,
        severity="HIGH",
        category="billing",
        language="en",
        platform="mastodon",
        source="mastodon-eu",
        watch="acme",
        risk_flags=frozenset({"hierarchical_request", "churn"}),
        followers=5400,
        text="Where is my refund?",
    )


def test_facts_fall_back_to_the_platforms_language_when_triage_detected_none() -> None:
    assert Facts.from_triaged(triaged(language="")).language == "de"


def test_facts_name_noise_and_unspecified_values_plainly() -> None:
    found = Facts.from_triaged(triaged(verdict=triage_pb2.VERDICT_NOISE, severity=triage_pb2.SEVERITY_UNSPECIFIED))
    assert (found.verdict, found.severity) == ("noise", "UNSPECIFIED")


def test_enum_values_from_a_newer_proto_are_ignored_rather_than_fatal() -> None:
    found = Facts.from_triaged(triaged(severity=99, risk_flags=[triage_pb2.RISK_FLAG_SAFETY, 99]))
    assert (found.severity, found.risk_flags) == ("UNSPECIFIED", frozenset({"safety"}))


# --- validation located by rule, field and line ---------------------------------------------


def only_problem(text: str) -> RuleProblem:
    _, problems = parse_rules(text)
    assert len(problems) == 1, problems
    return problems[0]


def test_a_misspelt_matcher_names_the_rule_the_field_and_the_line() -> None:
    problem = only_problem("- name: first\n- name: legal\n  match:\n    severty: [HIGH]\n")
    assert (problem.rule, problem.field, problem.line) == ("legal", "match.severty", 4)
    assert "did you mean severity?" in problem.message


def test_a_misspelt_continue_suggests_the_right_key() -> None:
    problem = only_problem("- {name: a, continue_: true}\n")
    assert (problem.rule, problem.field) == ("a", "continue_")
    assert "did you mean continue?" in problem.message


def test_an_unknown_risk_flag_is_named_with_the_valid_ones() -> None:
    problem = only_problem("- name: legal\n  match:\n    risk_flags_all: [legal_threat, lawsuit]\n")
    assert (problem.rule, problem.field, problem.line) == ("legal", "match.risk_flags_all", 3)
    assert "lawsuit" in problem.message
    assert "legal_threat" in problem.message


def test_a_bad_priority_is_located() -> None:
    problem = only_problem("- name: vip\n  priority: asap\n")
    assert (problem.rule, problem.field, problem.line) == ("vip", "priority", 2)
    assert "urgent" in problem.message


def test_a_rule_without_a_name_is_called_by_its_position() -> None:
    problem = only_problem("- name: a\n- name: b\n- team: care\n")
    assert (problem.rule, problem.field, problem.line) == ("rules[2]", "name", 3)


def test_a_nested_unnamed_rule_is_called_by_its_path() -> None:
    problem = only_problem("- name: a\n  routes:\n    - name: a1\n    - team: care\n")
    assert (problem.rule, problem.field, problem.line) == ("rules[0].routes[1]", "name", 4)


def test_a_problem_in_a_named_child_names_the_child() -> None:
    problem = only_problem("rules:\n  - name: a\n    routes:\n      - name: a1\n        match: {min_score: 1.5}\n")
    assert (problem.rule, problem.field, problem.line) == ("a1", "match.min_score", 5)


def test_a_bad_list_item_is_located_by_its_index() -> None:
    problem = only_problem("- name: sev\n  match:\n    severity:\n      - HIGH\n      - URGENT\n")
    assert (problem.rule, problem.field, problem.line) == ("sev", "match.severity[1]", 5)


@pytest.mark.parametrize(
    ("match", "field"),
    [
        ("{category: []}", "match.category"),
        ("{verdict: []}", "match.verdict"),
        ("{verdict: [spam]}", "match.verdict[0]"),
        ("{min_severity: SEVERE}", "match.min_severity"),
        ("{min_followers: -1}", "match.min_followers"),
        ("{min_score: 0.9, max_score: 0.1}", "match"),
        ("{min_followers: 10, max_followers: 1}", "match"),
    ],
)
def test_invalid_matchers_are_rejected(match: str, field: str) -> None:
    problem = only_problem(f"- name: r\n  match: {match}\n")
    assert (problem.rule, problem.field, problem.line) == ("r", field, 2)


@pytest.mark.parametrize(("name", "team"), [("Legal", "legal"), ("legal", "Legal Team"), ("-x", "care")])
def test_names_and_teams_must_follow_their_patterns(name: str, team: str) -> None:
    problem = only_problem(f"- {{name: '{name}', team: '{team}'}}\n")
    assert problem.field in {"name", "team"}


def test_duplicate_names_are_reported_at_the_second_use() -> None:
    _, problems = parse_rules("- name: legal\n- name: other\n  routes:\n    - name: legal\n")
    assert problems == [RuleProblem("legal", "name", "duplicate rule name, first used earlier (line 1)", 4)]


def test_all_problems_are_reported_sorted_by_line() -> None:
    _, problems = parse_rules("- name: a\n  priority: asap\n- team: care\n- name: a\n")
    assert [(p.rule, p.field, p.line) for p in problems] == [("a", "priority", 2), ("rules[1]", "name", 3)]


def test_the_valid_rules_are_returned_beside_the_problems() -> None:
    rules, problems = parse_rules("- name: good\n- name: bad\n  priority: asap\n")
    assert [rule.name for rule in rules] == ["good"]
    assert len(problems) == 1


def test_broken_yaml_is_reported_with_its_line() -> None:
    problem = only_problem("- name: a\n- name: b\n  match: {severity: [HIGH\n")
    assert (problem.rule, problem.field, problem.line) == ("", "", 4)
    assert "not valid YAML" in problem.message


def test_a_mapping_with_a_rules_key_is_accepted() -> None:
    rules, problems = parse_rules("rules:\n  - name: a\n  - name: b\n")
    assert ([rule.name for rule in rules], problems) == (["a", "b"], [])


def test_other_top_level_keys_are_reported() -> None:
    problem = only_problem("rules: []\nroutes: []\n")
    assert (problem.rule, problem.field, problem.line) == ("", "routes", 2)


@pytest.mark.parametrize("text", ["", "rules:\n", "[]\n"])
def test_an_empty_file_holds_no_rules_and_no_problems(text: str) -> None:
    assert parse_rules(text) == ([], [])


@pytest.mark.parametrize("text", ["just text\n", "rules: {name: a}\n"])
def test_rules_must_be_a_list(text: str) -> None:
    assert "list of rules" in only_problem(text).message


def test_rules_from_data_locates_problems_without_lines() -> None:
    rules, problems = rules_from_data([{"name": "a"}, {"name": "b", "match": {"severty": ["HIGH"]}}])
    assert [rule.name for rule in rules] == ["a"]
    assert [(p.rule, p.field, p.line) for p in problems] == [("b", "match.severty", 0)]


def test_a_problem_reads_as_rule_field_line_and_message() -> None:
    assert str(RuleProblem("legal", "priority", "bad", 7)) == "legal: priority (line 7): bad"
    assert str(RuleProblem("", "", "not valid YAML", 0)) == "rules: not valid YAML"


# --- references -----------------------------------------------------------------------------

REFERENCING = tree("""
    - name: legal
      destinations: [slack, pagr]
      sla: urgnt
      routes: [{name: legal-child, destinations: [emial], sla: fast}]
    - {name: ok, destinations: [slack], sla: fast, team: care}
""")


def test_unknown_destinations_and_sla_policies_are_named_with_the_known_ones() -> None:
    problems = check_references(REFERENCING, destinations={"slack", "email", "pager"}, sla_policies=["fast"])
    assert problems == [
        RuleProblem("legal", "destinations[1]", "unknown destination 'pagr' (known: email, pager, slack)"),
        RuleProblem("legal", "sla", "unknown SLA policy 'urgnt' (known: fast)"),
        RuleProblem("legal-child", "destinations[0]", "unknown destination 'emial' (known: email, pager, slack)"),
    ]


def test_references_with_nothing_configured_say_so() -> None:
    problems = check_references(tree("- {name: a, sla: fast}\n"), destinations=[], sla_policies=[])
    assert problems == [RuleProblem("a", "sla", "unknown SLA policy 'fast' (none are configured)")]


def test_known_references_raise_no_problem() -> None:
    assert check_references(REFERENCING[1:], destinations={"slack"}, sla_policies={"fast"}) == []


def test_required_teams_may_come_from_a_parent() -> None:
    rules = tree("""
        - name: billing
          team: finance
          routes: [{name: billing-child}]
        - name: orphan
          routes: [{name: orphan-child}, {name: owned-child, team: care}]
    """)
    problems = check_references(rules, destinations=[], teams_required=True, sla_policies=[])
    assert [(p.rule, p.field) for p in problems] == [("orphan", "team"), ("orphan-child", "team")]
    assert check_references(rules, destinations=[], sla_policies=[]) == []
