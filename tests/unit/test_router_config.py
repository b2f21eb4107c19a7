"""The router section: defaults, references between rules, destinations and SLA policies, and a full example."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from services.router.config import OUTBOX, RouterConfig, RouterSettings
from services.router.delivery.destinations.settings import ZendeskDestinationSettings
from services.router.rules import count_rules
from services.shared.config import load_config
from services.shared.errors import ConfigError

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
ZENDESK = {"kind": "zendesk", "name": "zendesk", "subdomain": "acme", "email": "a@acme.example", "api_token": "t"}
POLICY = {"name": "standard", "first_response_s": 3600, "levels": [{"team": "leads"}]}


def settings(**fields: Any) -> RouterSettings:
    return RouterSettings.model_validate(fields)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "clamor.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


# --- the outbox path ----------------------------------------------------------------------------


def test_outbox_path_given_in_the_file_resolves_against_the_config_folder(tmp_path: Path) -> None:
    path = write(tmp_path, "router:\n  outbox: {path: cases.jsonl}\n")
    config = load_config(RouterConfig, path, environ={})
    assert config.router.outbox.path == tmp_path.resolve() / "cases.jsonl"


def test_default_outbox_path_resolves_when_the_outbox_block_is_present(tmp_path: Path) -> None:
    path = write(tmp_path, "router:\n  outbox: {}\n")
    assert load_config(RouterConfig, path, environ={}).router.outbox.path.is_absolute()


def test_default_outbox_path_resolves_against_the_config_folder(tmp_path: Path) -> None:
    path = write(tmp_path, "router:\n  team: care\n")
    assert load_config(RouterConfig, path, environ={}).router.outbox.path.parent == tmp_path.resolve()


# --- defaults -----------------------------------------------------------------------------------


def test_defaults_load_without_a_file() -> None:
    router = load_config(RouterConfig, None, environ={}).router
    assert (router.team, router.default_destinations, router.default_priority) == ("care", [OUTBOX], "normal")
    assert (router.rules, router.sla_policies, router.destinations) == ([], [], [])
    assert (router.default_sla, router.escalate_at, router.escalation_team) == ("", "HIGH", "escalations")
    assert router.grpc.port == 50073
    assert not router.callback.enabled


def test_default_grouping_and_delivery() -> None:
    router = RouterSettings()
    assert (router.grouping.by_author, router.grouping.by_thread) == (True, True)
    assert router.delivery.first_retry_s <= router.delivery.max_retry_s


def test_the_outbox_is_retried_for_its_own_period() -> None:
    router = settings(outbox={"retry_for_s": 60})
    assert router.retry_for_s(OUTBOX) == 60


def test_a_destination_is_retried_for_its_own_period() -> None:
    router = settings(destinations=[{**ZENDESK, "retry_for_s": 120}])
    assert router.retry_for_s("zendesk") == 120


def test_an_unknown_destination_is_retried_for_a_day() -> None:
    assert RouterSettings().retry_for_s("gone") == 24 * 3600


# --- references ---------------------------------------------------------------------------------


def test_a_rule_with_an_unknown_destination_is_refused_naming_the_rule() -> None:
    with pytest.raises(ValidationError, match=r"rules: billing: destinations\[0\]: unknown destination 'crm'"):
        settings(rules=[{"name": "billing", "destinations": ["crm"]}])


def test_a_nested_rule_with_an_unknown_destination_is_refused_naming_the_child() -> None:
    rules = [{"name": "parent", "routes": [{"name": "child", "destinations": ["outbox", "crm"]}]}]
    with pytest.raises(ValidationError, match=r"child: destinations\[1\]: unknown destination 'crm'"):
        settings(rules=rules)


def test_a_rule_with_an_unknown_sla_policy_is_refused_naming_the_rule() -> None:
    with pytest.raises(ValidationError, match=r"rules: vip: sla: unknown SLA policy 'gold' \(none are configured\)"):
        settings(rules=[{"name": "vip", "sla": "gold"}])


def test_rules_may_name_configured_destinations_and_policies() -> None:
    router = settings(
        destinations=[ZENDESK],
        sla_policies=[POLICY],
        rules=[{"name": "billing", "destinations": ["zendesk", OUTBOX], "sla": "standard"}],
    )
    assert [rule.name for rule in router.rules] == ["billing"]


def test_duplicate_destination_names_are_refused() -> None:
    with pytest.raises(ValidationError, match="names must be unique, repeated: zendesk"):
        settings(destinations=[ZENDESK, {**ZENDESK, "subdomain": "other"}])


def test_a_destination_named_outbox_is_refused() -> None:
    with pytest.raises(ValidationError, match="'outbox' is built in"):
        settings(destinations=[{"kind": "nats", "name": OUTBOX}])


def test_an_unknown_default_destination_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"default_destinations: unknown crm \(known: outbox\)"):
        settings(default_destinations=["crm"])


def test_a_configured_default_destination_is_accepted() -> None:
    router = settings(destinations=[{"kind": "nats", "name": "crm"}], default_destinations=["crm", OUTBOX])
    assert router.default_destinations == ["crm", OUTBOX]


def test_an_unknown_default_sla_is_refused() -> None:
    with pytest.raises(ValidationError, match="default_sla: no SLA policy named 'gold'"):
        settings(default_sla="gold")


def test_a_configured_default_sla_is_accepted() -> None:
    assert settings(sla_policies=[POLICY], default_sla="standard").default_sla == "standard"


# --- callback and delivery --------------------------------------------------------------------


def test_an_enabled_callback_without_secrets_is_refused() -> None:
    with pytest.raises(ValidationError, match="needs at least one secret"):
        settings(callback={"enabled": True})


def test_an_enabled_callback_with_a_secret_is_accepted() -> None:
    assert settings(callback={"enabled": True, "secrets": [SECRET]}).callback.enabled


def test_a_disabled_callback_needs_no_secret() -> None:
    assert not settings(callback={"enabled": False}).callback.secrets


def test_a_maximum_retry_below_the_first_is_refused() -> None:
    with pytest.raises(ValidationError, match="max_retry_s must be at least first_retry_s"):
        settings(delivery={"first_retry_s": 30, "max_retry_s": 10})


def test_equal_first_and_maximum_retry_are_accepted() -> None:
    assert settings(delivery={"first_retry_s": 10, "max_retry_s": 10}).delivery.max_retry_s == 10


# --- through the loader: field and line ---------------------------------------------------------


def test_a_typo_inside_a_rule_is_reported_with_its_field_and_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        router:
          rules:
            - name: billing
              match:
                severty: [HIGH]
        """,
    )
    with pytest.raises(ConfigError, match=r"router\.rules\[0\]\.match\.severty \(.*clamor\.yaml:5\)"):
        load_config(RouterConfig, path, environ={})


def test_a_reference_error_is_reported_under_the_router_section(tmp_path: Path) -> None:
    path = write(tmp_path, "router:\n  rules:\n    - {name: billing, destinations: [crm]}\n")
    with pytest.raises(ConfigError, match=r"router \(.*clamor\.yaml:\d+\): rules: billing: destinations\[0\]"):
        load_config(RouterConfig, path, environ={})


def test_an_unset_secret_is_reported_by_its_variable(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        router:
          destinations:
            - {kind: zendesk, name: zendesk, subdomain: acme, email: a@acme.example, api_token: "${ZD_TOKEN}"}
        """,
    )
    with pytest.raises(ConfigError, match="environment variable ZD_TOKEN is not set"):
        load_config(RouterConfig, path, environ={})


FULL_EXAMPLE = """\
router:
  team: care
  default_destinations: [outbox]
  default_priority: normal
  default_sla: standard
  escalate_at: CRITICAL
  escalation_team: escalations
  grouping: {by_author: true, by_thread: false, window_s: 7200, max_posts: 20}
  delivery: {first_retry_s: 1, max_retry_s: 60, concurrency: 4}
  destinations:
    - kind: zendesk
      name: zendesk
      base_url: http://127.0.0.1:8089
      allow_hosts: [127.0.0.1]
      email: ${ZD_EMAIL}
      api_token: ${ZD_TOKEN}
      ticket_type: incident
    - {kind: nats, name: warehouse}
  sla_policies:
    - name: standard
      first_response_s: 14400
      resolution_s: 86400
      warn_before_s: 1800
      business_hours:
        timezone: Europe/Berlin
        days: [mon, tue, wed, thu, fri]
        start: "09:00"
        end: "17:00"
        holidays: [2026-12-25]
      levels:
        - {team: leads, after_s: 0}
        - {team: managers, after_s: 3600}
  rules:
    - name: legal
      match: {risk_flags_any: [legal_threat]}
      escalate_to: [legal]
      priority: urgent
      continue: true
    - name: billing
      match: {category: [billing]}
      team: billing
      destinations: [zendesk]
      sla: standard
      routes:
        - name: billing-vip
          match: {min_followers: 10000}
          priority: high
          escalate_to: [billing-leads]
        - name: billing-de
          match: {language: [de]}
          team: billing-de
    - name: praise
      match: {verdict: [noise], text_contains: [thank you]}
      destinations: [warehouse]
"""


def test_a_full_example_loads(tmp_path: Path) -> None:
    path = write(tmp_path, FULL_EXAMPLE)
    router = load_config(RouterConfig, path, environ={"ZD_EMAIL": "agent@acme.example", "ZD_TOKEN": "zd-secret"}).router
    assert count_rules(router.rules) == 5
    legal, billing, praise = router.rules
    assert legal.continue_
    assert [child.name for child in billing.routes] == ["billing-vip", "billing-de"]
    assert (billing.sla, praise.match.verdict) == ("standard", ["noise"])
    policy = router.sla_policies[0]
    assert policy.business_hours is not None
    assert policy.business_hours.timezone == "Europe/Berlin"
    assert [(level.team, level.after_s) for level in policy.levels] == [("leads", 0), ("managers", 3600)]
    zendesk = router.destinations[0]
    assert isinstance(zendesk, ZendeskDestinationSettings)
    assert (zendesk.email, zendesk.api_token, zendesk.allow_hosts) == ("agent@acme.example", "zd-secret", ["127.0.0.1"])
    assert [d.name for d in router.destinations] == ["zendesk", "warehouse"]


def test_secrets_of_the_full_example_stay_out_of_repr(tmp_path: Path) -> None:
    path = write(tmp_path, FULL_EXAMPLE)
    router = load_config(RouterConfig, path, environ={"ZD_EMAIL": "agent@acme.example", "ZD_TOKEN": "zd-secret"}).router
    assert "zd-secret" not in repr(router)
