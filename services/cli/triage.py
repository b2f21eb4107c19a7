"""``clamor triage``: train the model from labelled JSON lines, and evaluate it."""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from services.triage.training import Report

app = typer.Typer(help="Train and evaluate the triage model.", no_args_is_help=True)
console = Console()
errors = Console(stderr=True, soft_wrap=True)


def bundled_corpus() -> Path:
    return Path(__file__).resolve().parents[1] / "triage_data" / "corpus"


@contextmanager
def progress_bar(label: str, total: int) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr; yields the function that advances it."""
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=errors, transient=False,
    ) as progress:  # fmt: skip
        task = progress.add_task(label, total=total)
        yield lambda done: progress.advance(task, done)


def print_report(title: str, report: Report) -> None:
    from services.triage.training import LABELS  # noqa: PLC0415

    console.print(f"[bold]{escape(title)}[/bold]: {report.count} posts")
    console.print(f"accuracy {report.accuracy:.3f}   macro F1 {report.macro_f1:.3f}")
    table = Table("class", "precision", "recall", "F1", "support", title_justify="left")
    for label, figures in report.per_class.items():
        table.add_row(label, f"{figures['precision']:.3f}", f"{figures['recall']:.3f}", f"{figures['f1']:.3f}",
                      str(int(figures["support"])))  # fmt: skip
    console.print(table)
    confusion = Table("true \\ predicted", *LABELS, title="confusion matrix", title_justify="left")
    for label, row in zip(LABELS, report.confusion, strict=True):
        confusion.add_row(label, *(str(n) for n in row))
    console.print(confusion)
    if report.by_language:
        languages = Table("language", "posts", "accuracy", "macro F1", title="by language", title_justify="left")
        for language, figures in report.by_language.items():
            languages.add_row(language, str(int(figures["count"])), f"{figures['accuracy']:.3f}",
                              f"{figures['macro_f1']:.3f}")  # fmt: skip
        console.print(languages)
    console.print(f"complaints: severity accuracy {report.severity_accuracy:.3f}, "
                  f"category accuracy {report.category_accuracy:.3f}")  # fmt: skip


def _evaluate(classifier_heads_dir: Path | None, examples: Sequence[object], threshold: float | None) -> Report:
    from services.triage.domain import Post  # noqa: PLC0415
    from services.triage.model import ModelClassifier, ModelHeads, bundled_model_dir  # noqa: PLC0415
    from services.triage.training import Example, report  # noqa: PLC0415

    chosen = [e for e in examples if isinstance(e, Example)]
    classifier = ModelClassifier(ModelHeads.load(classifier_heads_dir or bundled_model_dir()), threshold=threshold)
    with progress_bar("classifying", len(chosen)) as advance:
        results = classifier.classify([Post(e.text, e.language) for e in chosen], progress=advance)
    labels = ["complaint" if r.verdict == 1 else "noise" for r in results]
    severities = [_severity_name(r.severity) for r in results]
    return report(chosen, labels, severities, [r.category for r in results])


def _severity_name(value: int) -> str:
    from clamor.v1 import triage_pb2  # noqa: PLC0415

    return triage_pb2.Severity.Name(value).removeprefix("SEVERITY_")  # type: ignore[arg-type]


def _shown(path: Path) -> str:
    """A source as the model card names it: the bundled corpus by its place in the repository."""
    return "services/triage_data/corpus" if path.resolve() == bundled_corpus().resolve() else str(path)


@app.command()
def train(
    data: Annotated[
        list[Path] | None, typer.Option(help="Labelled JSON-lines files or folders (default: the bundled corpus).")
    ] = None,
    out: Annotated[Path, typer.Option(help="The model directory to write.")] = Path("triage-model"),
    version: Annotated[str, typer.Option(help="The model's version, shown by ModelInfo and in every verdict.")] = "",
) -> None:
    """Train the model's heads on the training split and report on the held-out split."""
    from services.triage.features import Encoder, joined, lexical  # noqa: PLC0415 - torch loads only for this command
    from services.triage.training import DataError, fit_heads, model_card, read_examples, split  # noqa: PLC0415

    sources = data or [bundled_corpus()]
    try:
        examples = read_examples(sources)
    except (DataError, ValueError, OSError) as exc:
        errors.print(f"[red]cannot read the training data[/red]: {escape(str(exc))}")
        raise typer.Exit(2) from exc
    training, test = split(examples)
    version = version or time.strftime("%Y%m%d")
    errors.print(f"{len(examples)} labelled posts: {len(training)} to train on, {len(test)} held out")
    encoder = Encoder()
    with progress_bar("embedding the training split", len(training)) as advance:
        embeddings = encoder.encode([e.text for e in training], progress=advance)
    errors.print("fitting the complaint, severity and category heads, with and without the encoder…")
    grams = lexical([e.text for e in training])
    try:
        heads = fit_heads(joined(grams, embeddings), training, version=version, grams=grams)
    except (DataError, ValueError) as exc:
        errors.print(f"[red]cannot train[/red]: {escape(str(exc))}")
        raise typer.Exit(2) from exc
    heads.save(out)
    evaluation = _evaluate(out, test, None) if test else None
    if evaluation is not None:
        card = model_card(train=training, test=test, evaluation=evaluation, version=version,
                          sources=[_shown(s) for s in sources])  # fmt: skip
        replace(heads, card=card).save(out)
        print_report("held-out split", evaluation)
    console.print(f"[green]model written[/green] to {escape(str(out))} (version {escape(version)})")


@app.command()
def evaluate(
    data: Annotated[Path, typer.Argument(help="Labelled JSON lines to evaluate on.")],
    model: Annotated[Path | None, typer.Option(help="A model directory (default: the bundled model).")] = None,
    threshold: Annotated[float | None, typer.Option(help="Complaint threshold (default: the model's).")] = None,
    held_out: Annotated[bool, typer.Option("--held-out", help="Only the posts of the held-out test split.")] = False,
) -> None:
    """Accuracy, macro F1, per-class precision and recall, and the confusion matrix."""
    from services.triage.training import DataError, read_examples, split  # noqa: PLC0415

    try:
        examples = read_examples([data])
    except (DataError, ValueError, OSError) as exc:
        errors.print(f"[red]cannot read {escape(str(data))}[/red]: {escape(str(exc))}")
        raise typer.Exit(2) from exc
    if held_out:
        examples = split(examples)[1]
    print_report(str(data), _evaluate(model, examples, threshold))
