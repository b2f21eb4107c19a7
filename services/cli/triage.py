"""``clamor triage``: train the model from labelled JSON lines, and evaluate it."""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from services.triage.evaluation import CrossValidation, Embedded
    from services.triage.training import Example, Recipe, Report

app = typer.Typer(help="Train and evaluate the triage model.", no_args_is_help=True)
console = Console()
errors = Console(stderr=True, soft_wrap=True)


def bundled_corpus() -> Path:
    return Path(__file__).resolve().parents[1] / "triage_data" / "corpus"


@contextmanager
def progress_bar(label: str, total: int) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr; yields the function that advances it."""
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=errors,
        transient=False,
    ) as progress:
        task = progress.add_task(label, total=total)
        yield lambda done: progress.advance(task, done)


def print_report(title: str, report: Report) -> None:
    from services.triage.training import LABELS  # noqa: PLC0415

    console.print(f"[bold]{escape(title)}[/bold]: {report.count} posts")
    console.print(f"accuracy {report.accuracy:.3f}   macro F1 {report.macro_f1:.3f}")
    table = Table("class", "precision", "recall", "F1", "support", title_justify="left")
    for label, figures in report.per_class.items():
        table.add_row(
            label,
            f"{figures['precision']:.3f}",
            f"{figures['recall']:.3f}",
            f"{figures['f1']:.3f}",
            str(int(figures["support"])),
        )
    console.print(table)
    confusion = Table("true \\ predicted", *LABELS, title="confusion matrix", title_justify="left")
    for label, row in zip(LABELS, report.confusion, strict=True):
        confusion.add_row(label, *(str(n) for n in row))
    console.print(confusion)
    if report.by_language:
        languages = Table("language", "posts", "accuracy", "macro F1", title="by language", title_justify="left")
        for language, figures in report.by_language.items():
            languages.add_row(
                language, str(int(figures["count"])), f"{figures['accuracy']:.3f}", f"{figures['macro_f1']:.3f}"
            )
        console.print(languages)
    console.print(
        f"complaints: severity accuracy {report.severity_accuracy:.3f}, "
        f"category accuracy {report.category_accuracy:.3f}"
    )


def _read(sources: Sequence[Path]) -> list[Example]:
    from services.triage.training import DataError, read_examples  # noqa: PLC0415

    try:
        return read_examples(sources)
    except (DataError, ValueError, OSError) as exc:
        errors.print(f"[red]cannot read the labelled posts[/red]: {escape(str(exc))}")
        raise typer.Exit(2) from exc


def _score_model(model_dir: Path | None, examples: Sequence[Example], threshold: float | None) -> Report:
    """A trained model's verdicts on ``examples``."""
    from services.triage.domain import Post  # noqa: PLC0415
    from services.triage.model import ModelClassifier  # noqa: PLC0415
    from services.triage.training import report, severity_name  # noqa: PLC0415

    classifier = ModelClassifier.load(model_dir)
    if threshold is not None:
        classifier.threshold = threshold
    with progress_bar("classifying", len(examples)) as advance:
        results = classifier.classify([Post(e.text, e.language) for e in examples], progress=advance)
    labels = ["complaint" if r.verdict == 1 else "noise" for r in results]
    return report(examples, labels, [severity_name(r.severity) for r in results], [r.category for r in results])


def _embed(examples: Sequence[Example], recipe: Recipe) -> Embedded:
    from services.triage.embedding_cache import DiskCachedEncoder  # noqa: PLC0415
    from services.triage.evaluation import Embedded  # noqa: PLC0415

    # Rows embedded by an earlier run are read back; torch loads only if some post is new.
    encoder = DiskCachedEncoder(recipe.spec.encoder)
    unique = len(set(recipe.spec.prepare([e.text for e in examples])))
    with progress_bar(f"embedding {unique} posts ({recipe.spec.encoder}, cached ones read back)", unique) as advance:
        return Embedded.build(examples, recipe, encoder, progress=advance)


def _fit_split(embedded: Embedded, recipe: Recipe, train: Sequence[Example], test: Sequence[Example]) -> Report:
    from services.triage.evaluation import fit_and_score  # noqa: PLC0415

    index = {id(e): i for i, e in enumerate(embedded.examples)}
    return fit_and_score(embedded, recipe, [index[id(e)] for e in train], [index[id(e)] for e in test])


def _recipe(encoder: str | None, ngrams: bool | None) -> Recipe:
    from services.triage.features import ENCODERS  # noqa: PLC0415
    from services.triage.training import SHIPPED  # noqa: PLC0415

    if encoder is not None and encoder not in ENCODERS:
        errors.print(f"[red]unknown encoder {escape(encoder)!r}[/red]: choose one of {', '.join(ENCODERS)}")
        raise typer.Exit(2)
    spec = replace(
        SHIPPED.spec,
        encoder=encoder if encoder is not None else SHIPPED.spec.encoder,
        ngrams=ngrams if ngrams is not None else SHIPPED.spec.ngrams,
    )
    return replace(SHIPPED, spec=spec)


def _shown(path: Path) -> str:
    """A source as the model card names it: the bundled corpus by its place in the repository."""
    return "services/triage_data/corpus" if path.resolve() == bundled_corpus().resolve() else str(path)


EncoderOption = Annotated[
    str | None, typer.Option(help="The frozen encoder: e5-small (default), e5-small-c or minilm.")
]
NgramsOption = Annotated[
    bool | None, typer.Option("--ngrams/--no-ngrams", help="Hashed character n-grams beside the embedding.")
]


@app.command()
def train(
    data: Annotated[
        list[Path] | None, typer.Option(help="Labelled JSON-lines files or folders (default: the bundled corpus).")
    ] = None,
    out: Annotated[Path, typer.Option(help="The model directory to write.")] = Path("triage-model"),
    version: Annotated[str, typer.Option(help="The model's version, shown by ModelInfo and in every verdict.")] = "",
    encoder: EncoderOption = None,
    ngrams: NgramsOption = None,
    fine_tune: Annotated[
        bool,
        typer.Option(
            "--fine-tune",
            help="Also fine-tune the encoder's top layers; kept only if it beats the frozen encoder on held-out posts.",
        ),
    ] = False,
    fine_tune_layers: Annotated[int, typer.Option(min=1, max=12, help="How many top layers to fine-tune.")] = 2,
    cv: Annotated[
        int | None, typer.Option("--cv", min=2, max=20, help="Also K-fold cross-validate the recipe into the card.")
    ] = None,
) -> None:
    """Score the recipe on the random and shift splits, then fit the heads on every post and write the model.

    The card keeps both scores: the random split says how the model does on posts like the training
    data, the shift split (whole platforms and industries held out) what to expect on posts unlike it.
    """
    from services.triage.training import DataError, fit_heads, model_card, shift_split, split  # noqa: PLC0415

    sources = data or [bundled_corpus()]
    examples = _read(sources)
    recipe = _recipe(encoder, ngrams)
    version = version or time.strftime("%Y%m%d")
    embedded = _embed(examples, recipe)
    evaluations: dict[str, tuple[list[Example], list[Example], Report]] = {}
    try:
        for name, (fit_on, held_out) in (("random", split(examples)), ("shift", shift_split(examples))):
            if not held_out or not fit_on:
                errors.print(f"{name} split: no posts on one side (no platform or industry fields?); skipped")
                continue
            errors.print(f"{name} split: fitting on {len(fit_on)} posts, scoring {len(held_out)} held out…")
            evaluations[name] = (fit_on, held_out, _fit_split(embedded, recipe, fit_on, held_out))
            print_report(f"{name} split", evaluations[name][2])
        tuned: dict[str, Any] | None = None
        if fine_tune:
            embedded, recipe, tuned = _fine_tune(examples, embedded, recipe, evaluations, fine_tune_layers)
        cross = _cross_validation(embedded, recipe, cv) if cv else None
        errors.print(f"fitting the complaint, severity and category heads on all {len(examples)} posts…")
        everything = list(range(len(examples)))
        heads = fit_heads(
            embedded.features(recipe, everything), examples, version=version, recipe=recipe, grams=embedded.grams
        )
    except (DataError, ValueError) as exc:
        errors.print(f"[red]cannot train[/red]: {escape(str(exc))}")
        raise typer.Exit(2) from exc
    card = model_card(
        examples=examples, evaluations=evaluations, version=version, recipe=recipe, sources=[_shown(s) for s in sources]
    )
    if cross is not None:
        card["cross_validation"] = cross.as_dict()
    replace(heads, card=card).save(out)
    if tuned is not None:
        from services.triage.fine_tune import save_tuned_layers  # noqa: PLC0415

        save_tuned_layers(tuned, out)
    if sources != [bundled_corpus()] and "random" in evaluations:
        _compare_with_shipped(evaluations["random"][1], evaluations["random"][2])
    console.print(f"[green]model written[/green] to {escape(str(out))} (version {escape(version)})")


# A new model this much below the shipped one on the same posts is worth a warning.
WORSE_BY = 0.02
# Fine-tuned layers are kept only when they beat the frozen encoder by this much on held-out posts.
TUNING_MUST_GAIN = 0.005


def _fine_tune(
    examples: Sequence[Example],
    frozen: Embedded,
    recipe: Recipe,
    evaluations: dict[str, tuple[list[Example], list[Example], Report]],
    layers: int,
) -> tuple[Embedded, Recipe, dict[str, Any] | None]:
    """Tune the top layers on the random split's training posts; keep them if its held-out posts say so."""
    from services.triage.evaluation import Embedded  # noqa: PLC0415
    from services.triage.features import TorchEncoder, make_encoder  # noqa: PLC0415
    from services.triage.fine_tune import FineTuneSettings, fine_tune  # noqa: PLC0415

    if "random" not in evaluations:
        errors.print("[red]cannot fine-tune[/red]: the random split left no held-out posts to judge it by")
        raise typer.Exit(2)
    fit_on, held_out, frozen_report = evaluations["random"]
    encoder = make_encoder(recipe.spec.encoder)
    if not isinstance(encoder, TorchEncoder):
        errors.print(f"[red]cannot fine-tune {escape(recipe.spec.encoder)}[/red]: only torch encoders train")
        raise typer.Exit(2)
    settings = FineTuneSettings(layers=layers)
    texts = recipe.spec.prepare([e.text for e in fit_on])
    with progress_bar(f"fine-tuning the top {layers} layers on {len(fit_on)} posts", len(fit_on)) as advance:
        tensors = fine_tune(encoder, texts, [e.label for e in fit_on], settings, progress=advance)
    tuned_recipe = replace(recipe, spec=replace(recipe.spec, tuned=True))
    unique = len(set(recipe.spec.prepare([e.text for e in examples])))
    with progress_bar(f"embedding {unique} posts with the tuned encoder", unique) as advance:
        tuned = Embedded.build(examples, tuned_recipe, encoder, progress=advance)
    tuned_report = _fit_split(tuned, tuned_recipe, fit_on, held_out)
    print_report("random split, fine-tuned encoder", tuned_report)
    console.print(
        f"held-out macro F1: frozen encoder {frozen_report.macro_f1:.3f}, fine-tuned {tuned_report.macro_f1:.3f}"
    )
    if tuned_report.macro_f1 < frozen_report.macro_f1 + TUNING_MUST_GAIN:
        errors.print(
            "[yellow]fine-tuning did not help on the held-out posts: keeping the frozen encoder[/yellow] "
            "(more labelled posts, or more --fine-tune-layers, may change that)"
        )
        return frozen, recipe, None
    evaluations["random (frozen encoder)"] = evaluations["random"]
    evaluations["random"] = (fit_on, held_out, tuned_report)
    # The shift split was scored with the frozen encoder; tuning on it again would double the cost.
    if "shift" in evaluations:
        evaluations["shift (frozen encoder)"] = evaluations.pop("shift")
    console.print("[green]keeping the fine-tuned encoder[/green]")
    return tuned, tuned_recipe, tensors


def _cross_validation(embedded: Embedded, recipe: Recipe, k: int) -> CrossValidation:
    from services.triage.evaluation import cross_validate  # noqa: PLC0415

    with progress_bar(f"{k}-fold cross-validation", k) as advance:
        result = cross_validate(embedded, recipe, k, progress=advance)
    f1, sd = result.mean_sd(lambda r: r.macro_f1)
    console.print(f"{k}-fold cross-validation: macro F1 {f1:.3f} ± {sd:.3f}")
    return result


def _compare_with_shipped(held_out: Sequence[Example], scored: Report) -> None:
    errors.print("scoring the shipped model on the same held-out posts, for comparison…")
    shipped = _score_model(None, held_out, None)
    console.print(f"held-out macro F1: this recipe {scored.macro_f1:.3f}, the shipped model {shipped.macro_f1:.3f}")
    if scored.macro_f1 < shipped.macro_f1 - WORSE_BY:
        errors.print(
            f"[yellow]warning[/yellow]: the new model scores {shipped.macro_f1 - scored.macro_f1:.3f} below the "
            "shipped model on the same held-out posts; add more labelled posts, or keep the shipped model"
        )


@app.command()
def evaluate(
    data: Annotated[Path, typer.Argument(help="Labelled JSON lines (a file or a folder) to evaluate on.")],
    model: Annotated[Path | None, typer.Option(help="A model directory (default: the bundled model).")] = None,
    threshold: Annotated[float | None, typer.Option(help="Complaint threshold (default: the model's).")] = None,
    split_name: Annotated[
        str | None,
        typer.Option("--split", help="Fit the recipe on one side of a split and score the other: random or shift."),
    ] = None,
    held_out: Annotated[bool, typer.Option("--held-out", help="The same as --split random.")] = False,
    cv: Annotated[
        int | None, typer.Option("--cv", min=2, max=20, help="K-fold cross-validation of training on DATA.")
    ] = None,
    encoder: EncoderOption = None,
    ngrams: NgramsOption = None,
) -> None:
    """Accuracy, macro F1, per-class precision and recall, the confusion matrix, per language.

    Without --split or --cv, the model is scored on every post of DATA. With --split or --cv the
    training recipe is scored instead: fitted on some posts, scored on the others (mean ± sd over
    the K folds for --cv; folds never share a post).
    """
    from services.triage.training import shift_split, split  # noqa: PLC0415

    examples = _read([data])
    if held_out:
        split_name = "random"
    if split_name not in {None, "random", "shift"}:
        errors.print(f"[red]unknown split {escape(str(split_name))!r}[/red]: choose random or shift")
        raise typer.Exit(2)
    if cv is None and split_name is None:
        print_report(str(data), _score_model(model, examples, threshold))
        return
    recipe = _recipe(encoder, ngrams)
    embedded = _embed(examples, recipe)
    if split_name is not None:
        fit_on, scored = split(examples) if split_name == "random" else shift_split(examples)
        if not fit_on or not scored:
            errors.print(
                f"[red]the {split_name} split leaves no posts on one side[/red] (platform and industry fields?)"
            )
            raise typer.Exit(2)
        print_report(
            f"{data}, {split_name} split (fitted on {len(fit_on)})", _fit_split(embedded, recipe, fit_on, scored)
        )
    if cv is not None:
        _print_cross_validation(str(data), embedded, recipe, cv)


def _print_cross_validation(title: str, embedded: Embedded, recipe: Recipe, k: int) -> None:
    from services.triage.evaluation import cross_validate  # noqa: PLC0415

    if len(embedded.examples) < 2 * k:
        errors.print(f"[red]{len(embedded.examples)} posts are too few for {k} folds[/red]")
        raise typer.Exit(2)
    try:
        with progress_bar(f"{k}-fold cross-validation", k) as advance:
            result = cross_validate(embedded, recipe, k, progress=advance)
    except ValueError as exc:
        errors.print(f"[red]cannot cross-validate[/red]: {escape(str(exc))}")
        raise typer.Exit(2) from exc
    f1, sd = result.mean_sd(lambda r: r.macro_f1)
    console.print(f"[bold]{escape(title)}[/bold]: {k}-fold cross-validation, {len(embedded.examples)} posts")
    console.print(
        f"macro F1 {f1:.3f} ± {sd:.3f}   (folds: " + ", ".join(f"{r.macro_f1:.3f}" for r in result.reports) + ")"
    )
    for label in ("precision", "recall"):
        mean, spread = result.mean_sd(lambda r, name=label: r.per_class["complaint"][name])  # type: ignore[misc]
        console.print(f"complaint {label} {mean:.3f} ± {spread:.3f}")
    table = Table("language", "macro F1", "± sd", title="by language", title_justify="left")
    for language, figures in result.as_dict()["by_language"].items():  # type: ignore[attr-defined]
        table.add_row(language, f"{figures['macro_f1']:.3f}", f"{figures['sd']:.3f}")
    console.print(table)
