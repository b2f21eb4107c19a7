"""`clamor rules validate`: rules checked from a file without a router, each problem with its rule, field and line."""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING

import pytest
from click import unstyle
from typer.testing import CliRunner, Result

from services.cli.app import app

if TYPE_CHECKING:
    from pathlib import Path

# Config in use: one destination besides the outbox, one SLA policy.
CONFIG = """\
router:
  destinations:
    - {kind: nats, name: crm}
  sla_policies:
    - {name: standard, first_response_s: 3600, levels: [{team: leads}]}
"""
VALID = """\
- name: billing
  match: {category: [billing]}
  destinations: [outbox]
- name: legal
  match: {risk_flags_any: [legal_threat]}
  continue: true
  routes:
    - name: legal-vip
      match: {min_followers: 10000}
      priority: urgent
"""


@pytest.fixture(autouse=True)
def no_config_in_use(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A working directory without .clamor/clamor.yaml, so no developer's config is read."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "250")


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def validate(*args: str) -> Result:
    return CliRunner().invoke(app, ["rules", "validate", *args])


def lines_of(text: str) -> list[str]:
    return [line for line in unstyle(text).splitlines() if line.strip()]


# --- valid files ----------------------------------------------------------------------------


def test_a_valid_list_of_rules_exits_0_with_the_count(tmp_path: Path) -> None:
    result = validate(str(write(tmp_path, "rules.yaml", VALID)))
    assert result.exit_code == 0, result.output
    assert "valid: 3 rules" in unstyle(result.stdout)


def test_without_a_config_the_built_in_destinations_are_used(tmp_path: Path) -> None:
    result = validate(str(write(tmp_path, "rules.yaml", VALID)))
    assert "from the built-in defaults" in unstyle(result.stdout)


def test_a_mapping_with_rules_is_read(tmp_path: Path) -> None:
    path = write(tmp_path, "rules.yaml", "rules:\n" + textwrap.indent(VALID, "  "))
    result = validate(str(path))
    assert result.exit_code == 0, result.output


def test_rules_may_name_what_the_config_in_use_defines(tmp_path: Path) -> None:
    config = write(tmp_path, "clamor.yaml", CONFIG)
    rules = write(tmp_path, "rules.yaml", "- {name: vip, destinations: [crm, outbox], sla: standard}\n")
    result = validate(str(rules), "--config", str(config))
    assert result.exit_code == 0, result.output
    assert f"valid: 1 rule in {rules} (destinations and SLA policies from {config})" in unstyle(result.stdout)


def test_an_empty_file_has_no_rules_and_is_valid(tmp_path: Path) -> None:
    result = validate(str(write(tmp_path, "rules.yaml", "")))
    assert result.exit_code == 0, result.output
    assert "valid: 0 rules" in unstyle(result.stdout)


# --- problems -------------------------------------------------------------------------------


def test_a_typo_in_a_field_names_rule_field_and_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "rules.yaml",
        """\
        - name: billing
          match:
            severty: [HIGH]
        """,
    )
    result = validate(str(path))
    assert result.exit_code == 1
    assert lines_of(result.stdout) == ["rule billing: match.severty (line 3): unknown field (did you mean severity?)"]
    assert "1 problem in" in unstyle(result.stderr)


def test_an_unknown_destination_names_rule_field_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "rules.yaml", VALID + "- name: crm-only\n  destinations: [outbox, zendesk]\n")
    result = validate(str(path))
    assert result.exit_code == 1
    assert lines_of(result.stdout) == [
        "rule crm-only: destinations[1] (line 12): unknown destination 'zendesk' (known: outbox)"
    ]


def test_an_unknown_sla_policy_of_a_nested_rule_names_the_child(tmp_path: Path) -> None:
    config = write(tmp_path, "clamor.yaml", CONFIG)
    path = write(
        tmp_path,
        "rules.yaml",
        """\
        rules:
          - name: parent
            routes:
              - name: child
                sla: gold
        """,
    )
    result = validate(str(path), "--config", str(config))
    assert result.exit_code == 1
    assert lines_of(result.stdout) == ["rule child: sla (line 5): unknown SLA policy 'gold' (known: standard)"]


def test_every_problem_is_printed_in_line_order(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "rules.yaml",
        """\
        - name: one
          priority: soon
        - name: two
          match: {severity: [HUGE]}
        """,
    )
    result = validate(str(path))
    assert result.exit_code == 1
    printed = lines_of(result.stdout)
    assert [line.split(":")[0] for line in printed] == ["rule one", "rule two"]
    assert "(line 2)" in printed[0]
    assert "(line 4)" in printed[1]


def test_a_duplicate_rule_name_is_a_problem(tmp_path: Path) -> None:
    path = write(tmp_path, "rules.yaml", "- {name: same}\n- {name: same}\n")
    result = validate(str(path))
    assert result.exit_code == 1
    assert lines_of(result.stdout)[0].startswith("rule same: name (line 2): duplicate rule name")


def test_a_file_that_is_not_yaml_names_the_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "rules.yaml", "- name: billing\n  destinations: [outbox\n")
    result = validate(str(path))
    assert result.exit_code == 1
    assert unstyle(result.stdout).startswith(f"{path} (line 3): not valid YAML")


def test_a_missing_file_exits_2(tmp_path: Path) -> None:
    result = validate(str(tmp_path / "missing.yaml"))
    assert result.exit_code == 2
    assert "cannot read" in unstyle(result.stderr)


def test_an_invalid_config_in_use_exits_2(tmp_path: Path) -> None:
    config = write(tmp_path, "clamor.yaml", "router:\n  team: Not A Team\n")
    result = validate(str(write(tmp_path, "rules.yaml", VALID)), "--config", str(config))
    assert result.exit_code == 2
    assert "invalid configuration" in unstyle(result.stderr)


# --- a whole clamor.yaml --------------------------------------------------------------------

WHOLE = """\
nats: {url: "nats://127.0.0.1:4222"}
router:
  team: care
  destinations:
    - {kind: nats, name: warehouse}
  sla_policies:
    - {name: gold, first_response_s: 600, levels: [{team: leads}]}
  rules:
    - name: billing
      destinations: [warehouse]
      sla: gold
      routes:
        - name: billing-vip
          destinations: [zendesk]
"""


def test_a_whole_config_is_checked_against_its_own_router_section(tmp_path: Path) -> None:
    path = write(tmp_path, "clamor.yaml", WHOLE.replace("[zendesk]", "[outbox]"))
    result = validate(str(path))
    assert result.exit_code == 0, result.output
    assert "valid: 2 rules" in unstyle(result.stdout)
    assert "the file's own router section" in unstyle(result.stdout)


def test_problems_in_a_whole_config_name_the_files_lines(tmp_path: Path) -> None:
    path = write(tmp_path, "clamor.yaml", WHOLE)
    result = validate(str(path))
    assert result.exit_code == 1
    assert lines_of(result.stdout) == [
        "rule billing-vip: destinations[0] (line 14): unknown destination 'zendesk' (known: outbox, warehouse)"
    ]


def test_a_typo_in_a_whole_config_names_the_files_line(tmp_path: Path) -> None:
    path = write(tmp_path, "clamor.yaml", WHOLE.replace("sla: gold", "slaa: gold"))
    result = validate(str(path))
    assert result.exit_code == 1
    assert lines_of(result.stdout) == ["rule billing: slaa (line 11): unknown field (did you mean sla?)"]


def test_a_whole_config_ignores_the_config_in_use(tmp_path: Path) -> None:
    in_use = write(tmp_path, "in-use.yaml", CONFIG)
    path = write(tmp_path, "clamor.yaml", WHOLE.replace("[zendesk]", "[crm]"))
    result = validate(str(path), "--config", str(in_use))
    assert result.exit_code == 1
    assert "unknown destination 'crm'" in unstyle(result.stdout)


def test_a_whole_config_without_rules_is_valid(tmp_path: Path) -> None:
    path = write(tmp_path, "clamor.yaml", "nats: {url: 'nats://127.0.0.1:4222'}\nrouter: {team: care}\n")
    result = validate(str(path))
    assert result.exit_code == 0, result.output
    assert "valid: 0 rules" in unstyle(result.stdout)


def test_rules_using_an_anchor_outside_them_are_still_checked(tmp_path: Path) -> None:
    text = """\
    x-shared: &where [warehouse]
    router:
      destinations:
        - {kind: nats, name: warehouse}
      rules:
        - {name: billing, destinations: *where}
        - {name: legal, destinations: [zendesk]}
    """
    result = validate(str(write(tmp_path, "clamor.yaml", text)))
    assert result.exit_code == 1
    assert lines_of(result.stdout) == [
        "rule legal: destinations[0]: unknown destination 'zendesk' (known: outbox, warehouse)"
    ]
