"""Routing rules read from a file for ``clamor rules validate``, every problem with the file's own line.

A file is a list of rules, a mapping with ``rules:``, or a whole clamor.yaml whose rules sit under
``router: rules:``. For the last, the rules' text is cut out of the file and padded with the lines
and columns before it, so :func:`~services.router.rules.parse_rules` reports lines of the file
itself; the names those rules may use come from the same file's router section.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import yaml

from services.cli.mesh import MeshConfig
from services.router.config import OUTBOX
from services.router.rules import RuleProblem, check_references, count_rules, parse_rules, rules_from_data
from services.shared.config import record_lines

if TYPE_CHECKING:
    from collections.abc import Callable

Location = tuple[str | int, ...]
# Top-level keys that make a mapping a whole config file rather than a rules file.
CONFIG_SECTIONS = frozenset(MeshConfig.model_fields)
_FIELD_PART = re.compile(r"\[(\d+)\]|([^.\[\]]+)")


@dataclass(frozen=True)
class RuleNames:
    """What rules may name, and where that came from (for the report)."""

    destinations: frozenset[str]
    sla_policies: frozenset[str]
    origin: str


@dataclass(frozen=True)
class CheckedRules:
    rule_count: int
    problems: list[RuleProblem]
    names: RuleNames


class Problem(Protocol):
    """A RuleProblem, or the RuleError the router answers with: the same four fields."""

    @property
    def rule(self) -> str: ...
    @property
    def field(self) -> str: ...
    @property
    def message(self) -> str: ...
    @property
    def line(self) -> int: ...


def describe_problem(problem: Problem, *, file: str) -> str:
    """``rule <name>: <field> (line N): message``; problems with the file as a whole name the file."""
    at = f" (line {problem.line})" if problem.line else ""
    if problem.rule:
        where = f"rule {problem.rule}" + (f": {problem.field}" if problem.field else "")
    else:
        where = problem.field or file
    return f"{where}{at}: {problem.message}"


@dataclass(frozen=True)
class _Rules:
    """The rules of a file: as YAML text whose lines are the file's, or (rarely) as data without lines."""

    text: str | None
    data: Any = None
    # A whole config file's own names; None for a rules file.
    names: RuleNames | None = None


def validate_rules_file(text: str, *, names: Callable[[], RuleNames]) -> CheckedRules:
    """Parse and check the rules in ``text``; ``names`` gives the config in use's, unless the file is one."""
    found = _find_rules(text)
    if found.text is not None:
        rules, problems = parse_rules(found.text)
    else:
        rules, problems = rules_from_data(found.data)
    known = found.names or names()
    if not problems:
        missing = check_references(rules, destinations=known.destinations, sla_policies=known.sla_policies)
        problems = _with_lines(missing, found.text) if found.text is not None else missing
    return CheckedRules(count_rules(rules), problems, known)


def _find_rules(text: str) -> _Rules:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return _Rules(text)  # parse_rules reports it, with its line
    if not isinstance(node, yaml.MappingNode):
        return _Rules(text)
    keys = {str(key.value) for key, _ in node.value}
    if "rules" in keys or not keys & CONFIG_SECTIONS:
        return _Rules(text)
    data = yaml.safe_load(text)
    router = data.get("router")
    names = _declared_names(router)
    router_node = _value(node, "router")
    rules = _value(router_node, "rules") if isinstance(router_node, yaml.MappingNode) else None
    if rules is None:
        return _Rules("", names=names)
    start, end = rules.start_mark, rules.end_mark
    # Padding keeps every line and column where it was, so problems name the file's lines.
    sliced = "\n" * start.line + " " * start.column + text[start.index : end.index]
    try:
        yaml.safe_load(sliced)
    except yaml.YAMLError:
        # An alias to an anchor outside the rules: check them as data, without lines.
        return _Rules(None, data=router["rules"], names=names)
    return _Rules(sliced, names=names)


def _value(node: yaml.MappingNode, key: str) -> yaml.Node | None:
    return next((value for k, value in node.value if str(k.value) == key), None)


def _declared_names(router: Any) -> RuleNames:
    section = router if isinstance(router, dict) else {}

    def names(key: str) -> set[str]:
        items = section.get(key)
        items = items if isinstance(items, list) else []
        return {str(item["name"]) for item in items if isinstance(item, dict) and "name" in item}

    return RuleNames(
        destinations=frozenset({OUTBOX, *names("destinations")}),
        sla_policies=frozenset(names("sla_policies")),
        origin="the file's own router section",
    )


def _with_lines(problems: list[RuleProblem], rules_text: str) -> list[RuleProblem]:
    """Reference problems come without lines; find them by rule name (unique once parsing passed)."""
    if not problems:
        return problems
    node = yaml.compose(rules_text, Loader=yaml.SafeLoader)
    lines: dict[Location, int] = {}
    if node is not None:
        record_lines(node, (), lines)
    paths = _rule_paths(yaml.safe_load(rules_text))
    located = []
    for problem in problems:
        path = paths.get(problem.rule)
        if path is None:
            located.append(problem)
            continue
        field: Location = tuple(int(index) if index else name for index, name in _FIELD_PART.findall(problem.field))
        located.append(dataclasses.replace(problem, line=_line((*path, *field), lines)))
    return located


def _rule_paths(data: Any) -> dict[str, Location]:
    root: Location = ("rules",) if isinstance(data, dict) else ()
    paths: dict[str, Location] = {}

    def walk(items: Any, path: Location) -> None:
        for index, item in enumerate(items if isinstance(items, list) else []):
            if isinstance(item, dict):
                paths.setdefault(str(item.get("name")), (*path, index))
                walk(item.get("routes"), (*path, index, "routes"))

    walk(data.get("rules") if isinstance(data, dict) else data, root)
    return paths


def _line(path: Location, lines: dict[Location, int]) -> int:
    for depth in range(len(path), -1, -1):
        if path[:depth] in lines:
            return lines[path[:depth]]
    return 0
