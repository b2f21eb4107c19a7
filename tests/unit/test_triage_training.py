"""Training data and evaluation: file:line errors, the id-hash split, the report's figures, the heads' guard."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from scipy.sparse import csr_matrix

from services.triage.training import DataError, Example, fit_heads, read_examples, report, split

if TYPE_CHECKING:
    from pathlib import Path


def write_lines(path: Path, rows: list[dict[str, Any] | str]) -> Path:
    """One line per row: dicts as JSON, strings as they are (blank or broken lines)."""
    lines = [json.dumps(row, ensure_ascii=False) if isinstance(row, dict) else row for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


COMPLAINT = {"id": "c1", "text": "Charged twice again", "label": "complaint", "severity": "HIGH", "category": "billing"}
NOISE = {"id": "n1", "text": "Nice weather today", "label": "noise", "severity": None, "category": "none"}


# --- read_examples ------------------------------------------------------------------------


def test_read_examples_keeps_every_field_of_a_labelled_line(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "a.jsonl", [{**COMPLAINT, "language": "en"}, NOISE])
    assert read_examples([path]) == [
        Example(
            id="c1", text="Charged twice again", label="complaint", severity="HIGH", category="billing", language="en"
        ),
        Example(id="n1", text="Nice weather today", label="noise", severity="", category="none", language=""),
    ]


def test_read_examples_names_file_and_line_of_a_bad_label(tmp_path: Path) -> None:
    # The blank line still counts: the number is the line an editor shows.
    path = write_lines(tmp_path / "bad.jsonl", [COMPLAINT, "", {**NOISE, "label": "spam"}])
    with pytest.raises(DataError, match=r"bad\.jsonl:3: label must be complaint or noise, not 'spam'"):
        read_examples([path])


@pytest.mark.parametrize(
    "row",
    [
        pytest.param({"label": "noise"}, id="no-text"),
        pytest.param({"text": "   ", "label": "noise"}, id="blank-text"),
        pytest.param({"text": None, "label": "complaint"}, id="null-text"),
        pytest.param(["not", "an", "object"], id="not-an-object"),
    ],
)
def test_read_examples_names_file_and_line_of_a_missing_text(tmp_path: Path, row: Any) -> None:
    path = tmp_path / "texts.jsonl"
    path.write_text(json.dumps(NOISE) + "\n" + json.dumps(row) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"texts\.jsonl:2: expected an object with a non-empty text"):
        read_examples([path])


def test_read_examples_names_file_and_line_of_a_bad_severity(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "severity.jsonl", [NOISE, NOISE, NOISE, {**COMPLAINT, "severity": "high"}])
    with pytest.raises(DataError, match=r"severity\.jsonl:4: severity must be one of LOW, MEDIUM, HIGH, CRITICAL"):
        read_examples([path])


def test_read_examples_names_file_and_line_of_a_line_that_is_not_json(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "broken.jsonl", [NOISE, '{"text": "cut off'])
    with pytest.raises(DataError, match=r"broken\.jsonl:2"):
        read_examples([path])


def test_read_examples_reads_a_folder_file_by_file_in_name_order(tmp_path: Path) -> None:
    folder = tmp_path / "corpus"
    folder.mkdir()
    write_lines(folder / "b.jsonl", [{**NOISE, "id": "b1"}, {**COMPLAINT, "id": "b2"}])
    write_lines(folder / "a.jsonl", [{**COMPLAINT, "id": "a1"}])
    (folder / "notes.txt").write_text("not training data\n", encoding="utf-8")
    assert [e.id for e in read_examples([folder])] == ["a1", "b1", "b2"]


def test_read_examples_in_a_folder_names_the_file_that_holds_the_error(tmp_path: Path) -> None:
    folder = tmp_path / "corpus"
    folder.mkdir()
    write_lines(folder / "a.jsonl", [COMPLAINT, NOISE])
    write_lines(folder / "b.jsonl", [NOISE, {**NOISE, "label": "maybe"}])
    with pytest.raises(DataError, match=r"corpus[/\\]b\.jsonl:2: label"):
        read_examples([folder])


def test_read_examples_gives_a_line_without_id_the_same_id_on_every_read(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "no-id.jsonl", [{"text": "Order never arrived", "label": "complaint"}])
    first, second = read_examples([path]), read_examples([path])
    assert first[0].id == second[0].id
    assert len(first[0].id) == 16


# --- split --------------------------------------------------------------------------------


def synthetic(count: int) -> list[Example]:
    return [Example(id=f"post-{n:05d}", text=f"post number {n}", label="noise") for n in range(count)]


def test_split_is_disjoint_and_covers_every_example() -> None:
    examples = synthetic(1_000)
    training, test = split(examples)
    assert not {e.id for e in training} & {e.id for e in test}
    assert len(training) + len(test) == len(examples)


def test_split_holds_out_roughly_one_in_five() -> None:
    _, test = split(synthetic(1_000))
    assert 160 <= len(test) <= 240


def test_split_is_the_same_on_every_run_and_in_any_order() -> None:
    examples = synthetic(1_000)
    _, test = split(examples)
    _, again = split(examples)
    _, reversed_test = split(examples[::-1])
    assert [e.id for e in test] == [e.id for e in again]
    assert {e.id for e in reversed_test} == {e.id for e in test}


def test_split_never_moves_a_held_out_post_when_posts_are_added() -> None:
    _, before = split(synthetic(500))
    _, after = split(synthetic(1_000))
    assert {e.id for e in before} <= {e.id for e in after}
    assert {e.id for e in after if int(e.id.removeprefix("post-")) < 500} == {e.id for e in before}


# --- report -------------------------------------------------------------------------------

# (example, predicted label, predicted severity, predicted category)
HAND_MADE: list[tuple[Example, str, str, str]] = [
    (Example("1", "t1", "complaint", "HIGH", "billing", "en"), "complaint", "HIGH", "billing"),
    (Example("2", "t2", "complaint", "LOW", "delivery", "en"), "noise", "MEDIUM", "delivery"),
    (Example("3", "t3", "noise", "", "none", "en"), "noise", "LOW", "billing"),
    (Example("4", "t4", "noise", "", "none", "en"), "complaint", "LOW", "billing"),
    (Example("5", "t5", "complaint", "MEDIUM", "service", "zh"), "complaint", "LOW", "service"),
    (Example("6", "t6", "noise", "", "none", "zh"), "noise", "LOW", "other"),
    (Example("7", "t7", "complaint", "", "", "ja"), "complaint", "CRITICAL", "safety"),
    (Example("8", "t8", "noise", "", "none", "ja"), "noise", "LOW", "other"),
    (Example("9", "t9", "noise", "", "none", "ru"), "noise", "LOW", "other"),
    (Example("10", "t10", "complaint", "MEDIUM", "product_quality", "ru"), "noise", "MEDIUM", "billing"),
]


@pytest.fixture(scope="module")
def hand_report() -> dict[str, Any]:
    examples, labels, severities, categories = (list(column) for column in zip(*HAND_MADE, strict=True))
    return report(examples, labels, severities, categories).as_dict()


def test_report_gives_accuracy_and_macro_f1(hand_report: dict[str, Any]) -> None:
    assert hand_report["count"] == 10
    assert hand_report["accuracy"] == 0.7
    # complaint F1 2/3, noise F1 8/11
    assert hand_report["macro_f1"] == round((2 / 3 + 8 / 11) / 2, 4)


def test_report_gives_precision_recall_and_support_per_class(hand_report: dict[str, Any]) -> None:
    assert hand_report["per_class"] == {
        "complaint": {"precision": 0.75, "recall": 0.6, "f1": 0.6667, "support": 5},
        "noise": {"precision": 0.6667, "recall": 0.8, "f1": 0.7273, "support": 5},
    }


def test_report_gives_the_confusion_matrix_rows_true_columns_predicted(hand_report: dict[str, Any]) -> None:
    assert hand_report["confusion"] == {"labels": ["complaint", "noise"], "rows_true_cols_predicted": [[3, 2], [1, 4]]}


def test_report_gives_figures_by_language(hand_report: dict[str, Any]) -> None:
    assert hand_report["by_language"] == {
        "en": {"count": 4, "accuracy": 0.5, "macro_f1": 0.5},
        "ja": {"count": 2, "accuracy": 1.0, "macro_f1": 1.0},
        "ru": {"count": 2, "accuracy": 0.5, "macro_f1": 0.3333},
        "zh": {"count": 2, "accuracy": 1.0, "macro_f1": 1.0},
    }


def test_report_scores_severity_and_category_on_labelled_complaints_only(hand_report: dict[str, Any]) -> None:
    # Severity: 1 right, 2 wrong, 5 wrong, 10 right; category: 1, 2, 5 right, 10 wrong; 7 has neither.
    assert hand_report["severity_accuracy"] == 0.5
    assert hand_report["category_accuracy"] == 0.75


# --- fit_heads ----------------------------------------------------------------------------


def features(rows: int) -> csr_matrix:
    return csr_matrix(np.random.default_rng(7).random((rows, 12)))


SEVERITIES = ("LOW", "MEDIUM", "HIGH", "CRITICAL")
CATEGORIES = ("billing", "delivery", "service")


def complaints(count: int, *, severities: tuple[str, ...] = SEVERITIES) -> list[Example]:
    return [
        Example(f"c{n}", f"complaint {n}", "complaint", severities[n % len(severities)], CATEGORIES[n % 3])
        for n in range(count)
    ]


def noise(count: int) -> list[Example]:
    return [Example(f"n{n}", f"noise {n}", "noise", "", "none") for n in range(count)]


@pytest.mark.parametrize(
    "examples",
    [pytest.param(complaints(8), id="complaints-only"), pytest.param(noise(8), id="noise-only")],
)
def test_fit_heads_refuses_data_without_both_labels(examples: list[Example]) -> None:
    with pytest.raises(DataError, match="complaints and noise"):
        fit_heads(features(len(examples)), examples, version="t")


def test_fit_heads_refuses_complaints_without_severity_and_category() -> None:
    bare = [Example(f"c{n}", f"complaint {n}", "complaint") for n in range(4)]
    examples = bare + noise(4)
    with pytest.raises(DataError, match="two severities and two categories"):
        fit_heads(features(len(examples)), examples, version="t")


def test_fit_heads_fits_three_heads_on_both_labels() -> None:
    examples = complaints(8) + noise(8)
    heads = fit_heads(features(len(examples)), examples, version="t9", threshold=0.4)
    assert heads.complaint.classes == ("complaint", "noise")
    assert set(heads.severity.classes) == set(SEVERITIES)
    assert set(heads.category.classes) == set(CATEGORIES)
    assert (heads.version, heads.threshold) == ("t9", 0.4)


def test_fit_heads_refuses_complaints_that_all_have_one_severity() -> None:
    examples = complaints(6, severities=("HIGH",)) + noise(6)
    with pytest.raises(DataError):
        fit_heads(features(len(examples)), examples, version="t")
