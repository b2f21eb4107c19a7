"""``clamor classify``: JSON lines in, one verdict per line out, through triage's own classifier."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, TextIO

from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from clamor.v1 import triage_pb2
from services.triage.domain import Classifier, Post, RuleClassifier

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from rich.console import Console


def load(*, model: Path | None, rules: bool, threshold: float | None) -> Classifier:
    if rules:
        return RuleClassifier(threshold=threshold or 0.5)
    from services.triage.model import ModelClassifier, ModelHeads, bundled_model_dir  # noqa: PLC0415

    return ModelClassifier(ModelHeads.load(model or bundled_model_dir()), threshold=threshold)


def verdict_line(item_id: Any, result: triage_pb2.TriageResult) -> str:
    """The line DESIGN.md promises: id, is_complaint, complaint_score, severity, category, language, risk_flags."""
    out = {
        "id": item_id,
        "is_complaint": result.verdict == triage_pb2.VERDICT_COMPLAINT,
        "complaint_score": result.complaint_score,
        "severity": triage_pb2.Severity.Name(result.severity).removeprefix("SEVERITY_"),
        "category": result.category,
        "language": result.language,
        "risk_flags": [triage_pb2.RiskFlag.Name(f).removeprefix("RISK_FLAG_").lower() for f in result.risk_flags],
    }
    return json.dumps(out, ensure_ascii=False) + "\n"


def _batches(lines: TextIO, size: int, errors: Console) -> Iterator[list[tuple[Any, Post]]]:
    batch: list[tuple[Any, Post]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            text = item["text"]
            if not isinstance(text, str):
                raise TypeError("text is not a string")
        except (ValueError, KeyError, TypeError):
            errors.print(f'line {number}: expected a JSON object with a "text" field; skipped')
            continue
        if not text.strip():
            errors.print(f"line {number}: empty text; skipped")
            continue
        batch.append((item.get("id"), Post(text=text, language=str(item.get("language") or ""))))
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def classify_stream(
    classifier: Classifier, lines: TextIO, out: TextIO, *, errors: Console, batch_size: int, progress: bool
) -> int:
    """Classify every line; returns how many verdicts were written."""
    written = 0
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.completed} posts classified"),
        TimeElapsedColumn(),
        console=errors,
        disable=not progress,
        transient=False,
    ) as bar:
        task = bar.add_task("classify", total=None)
        for batch in _batches(lines, batch_size, errors):
            results = classifier.classify([post for _, post in batch])
            out.writelines(verdict_line(item_id, result) for (item_id, _), result in zip(batch, results, strict=True))
            out.flush()
            written += len(batch)
            bar.advance(task, len(batch))
    return written
