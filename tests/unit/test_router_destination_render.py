"""What every CRM shows of a case: plain text, hostile posts inert, every piece and the whole cut to size."""

from __future__ import annotations

import pytest

from clamor.v1 import case_pb2, triage_pb2
from services.router.delivery.destinations.render import (
    MAX_POSTS,
    description,
    https_link,
    inert,
    priority_of,
    subject,
    update_comment,
)
from tests.integration.case_samples import HOSTILE_TEXT, hostile_case, resolved, sample_case, triaged, with_new_post

EXPECTED_DESCRIPTION = """\
Clamor case c_0f1e2d3c4b5a69788796
Severity: HIGH. Priority: high. State: routed.
Category: billing
Team: care. Escalation level: 1.
Risk flags: legal_threat
Matched rules: legal-threats, billing
First response due: 2026-03-01T12:10:00Z
Resolution due: 2026-03-02T12:00:00Z

Posts (1), quoted as plain text; their authors are members of the public:
Post 1: @ana_b (12000 followers) on mastodon at 2026-03-01T11:58:00Z (watch acme)
   Link: https://social.example/@ana_b/1
   Text: Charged twice for my March bill and support won't answer. My lawyer will hear about this."""


@pytest.mark.parametrize(
    ("priority", "severity", "expected"),
    [
        (case_pb2.CASE_PRIORITY_URGENT, triage_pb2.SEVERITY_LOW, "urgent"),
        (case_pb2.CASE_PRIORITY_LOW, triage_pb2.SEVERITY_CRITICAL, "low"),
        (case_pb2.CASE_PRIORITY_UNSPECIFIED, triage_pb2.SEVERITY_CRITICAL, "urgent"),
        (case_pb2.CASE_PRIORITY_UNSPECIFIED, triage_pb2.SEVERITY_HIGH, "high"),
        (case_pb2.CASE_PRIORITY_UNSPECIFIED, triage_pb2.SEVERITY_MEDIUM, "normal"),
        (case_pb2.CASE_PRIORITY_UNSPECIFIED, triage_pb2.SEVERITY_LOW, "low"),
        (case_pb2.CASE_PRIORITY_UNSPECIFIED, triage_pb2.SEVERITY_UNSPECIFIED, "normal"),
        # A priority from a newer proto than this build's: as if unset.
        (case_pb2.CasePriority.ValueType(99), triage_pb2.SEVERITY_HIGH, "high"),
    ],
)
def test_priority_is_the_rules_choice_else_derived_from_severity(
    priority: case_pb2.CasePriority.ValueType, severity: triage_pb2.Severity.ValueType, expected: str
) -> None:
    assert priority_of(case_pb2.Case(priority_level=priority, severity=severity)) == expected


def test_the_description_lists_the_case_facts_and_its_posts() -> None:
    assert description(sample_case()) == EXPECTED_DESCRIPTION


def test_the_subject_is_one_line_cut_to_its_limit() -> None:
    long = sample_case(text="refund " * 100)

    assert subject(sample_case()) == (
        "[HIGH] billing from @ana_b on mastodon: "
        "Charged twice for my March bill and support won't answer. My lawyer will hear about this."
    )
    assert len(subject(long, limit=80)) == 80
    assert subject(long, limit=80).endswith("…")


def test_a_case_without_posts_still_has_a_subject() -> None:
    assert subject(case_pb2.Case(id="c_1", severity=triage_pb2.SEVERITY_LOW)) == "[LOW] complaint"


def test_inert_flattens_control_characters_and_bidirectional_overrides() -> None:
    assert inert("a\r\nStatus: solved\tb\x1b[31m\u202egnp.exe\u2028c") == "a Status: solved b [31m gnp.exe c"


def test_inert_breaks_up_servicenow_code_tags_in_any_case() -> None:
    assert inert("[code]<b>x</b>[/code] [CODE]y[/Code]") == "[ code]<b>x</b>[/ code] [ CODE]y[/ Code]"


def test_inert_keeps_markup_and_template_syntax_as_literal_characters() -> None:
    assert inert("<script>alert(1)</script> {{7*7}} ${7*7}", 200) == "<script>alert(1)</script> {{7*7}} ${7*7}"


@pytest.mark.parametrize(
    "url",
    ["javascript:alert(1)", "http://social.example/1", "https://evil.example/a b", "data:text/html,x", "https://"],
)
def test_only_plain_https_links_are_shown(url: str) -> None:
    assert https_link(url) == ""


def test_a_hostile_post_cannot_forge_a_line_or_a_link() -> None:
    case = hostile_case()
    case.mentions[0].mention.url = "javascript:alert(1)"

    text = description(case)

    assert "   Link: (none that is plain https)" in text
    assert "\nStatus: solved" not in text
    assert "\r" not in text
    assert "@mallory X-Injected: 1 (12000 followers)" in text
    assert "<script>alert(1)</script> {{7*7}}" in text
    assert HOSTILE_TEXT not in text


def test_the_description_quotes_at_most_ten_posts_and_keeps_to_its_limit() -> None:
    case = sample_case()
    case.mentions.extend(triaged(f"mastodon:{n}", text="x" * 2000) for n in range(MAX_POSTS + 2))

    text = description(case, limit=100_000)

    assert f"Post {MAX_POSTS}: " in text
    assert f"Post {MAX_POSTS + 1}: " not in text
    assert text.endswith(f"… and {len(case.mentions) - MAX_POSTS} more posts in Clamor.")
    assert "x" * 1000 not in text
    assert len(description(case, limit=3000)) == 3000


def test_the_update_comment_lists_each_event_and_quotes_the_post_it_attached() -> None:
    later, events = with_new_post(sample_case())

    assert update_comment(later, events) == (
        "Clamor case c_0f1e2d3c4b5a69788796: escalated, priority urgent, severity HIGH\n"
        "2026-03-01T12:30:00Z post added: mention reddit:t3_2\n"
        "Post 2: @ana_b (12000 followers) on reddit at 2026-03-01T11:58:00Z (watch acme)\n"
        "   Link: https://reddit.example/r/acme/2\n"
        "   Text: Still no refund, day three.\n"
        "2026-03-01T12:30:05Z escalated: level 2 to escalations: first response SLA breached"
    )


def test_the_update_comment_of_a_resolution_says_so() -> None:
    done, events = resolved(sample_case())

    assert update_comment(done, events).splitlines() == [
        "Clamor case c_0f1e2d3c4b5a69788796: resolved, priority high, severity HIGH",
        "2026-03-01T14:00:00Z resolve: resolve by maria via crm [c_0f1e:resolve:1]",
    ]


def test_hostile_event_details_stay_on_their_line() -> None:
    case = sample_case()
    events = [
        case_pb2.CaseEvent(
            event_kind=case_pb2.CASE_EVENT_KIND_ACKNOWLEDGE, detail="ack by eve\r\nStatus: solved [code]<i>x</i>[/code]"
        )
    ]

    lines = update_comment(case, events).splitlines()

    assert lines[1] == "(no time) acknowledge: ack by eve Status: solved [ code]<i>x</i>[/ code]"
    assert len(lines) == 2


def test_the_actors_note_follows_its_event_as_one_inert_line() -> None:
    done, events = resolved(sample_case())
    events[0].note = "refund sent\r\nStatus: open"

    assert update_comment(done, events).splitlines()[1:] == [
        "2026-03-01T14:00:00Z resolve: resolve by maria via crm [c_0f1e:resolve:1]",
        "  Note: refund sent Status: open",
    ]
