"""Reading a Prometheus /metrics page the way Prometheus does (prometheus_client's own parser)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


def samples(text: str) -> list[Sample]:
    return [
        Sample(sample.name, dict(sample.labels), float(sample.value))
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


def total(pages: list[str] | str, name: str, **labels: str) -> float:
    """The sum of ``name`` over every page and series whose labels include ``labels`` (a missing
    label matches "", as in PromQL)."""
    found = 0.0
    for page in [pages] if isinstance(pages, str) else pages:
        for sample in samples(page):
            if sample.name == name and all(sample.labels.get(k, "") == v for k, v in labels.items()):
                found += sample.value
    return found


def names(text: str) -> set[str]:
    return {sample.name for sample in samples(text)}
