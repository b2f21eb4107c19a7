"""Feedback over real gRPC becomes training data, and `clamor triage train` learns from it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from typer.testing import CliRunner

from clamor.v1 import triage_pb2, triage_service_pb2, triage_service_pb2_grpc
from services.cli.app import app
from services.cli.triage import bundled_corpus
from services.shared.jsonl import IdempotentJsonlFile
from services.triage.domain import RuleClassifier
from services.triage.model import CARD, HEADS, ModelHeads
from services.triage.server import TriageServicer
from services.triage.training import Example, read_examples

if TYPE_CHECKING:
    from clamor.v1.triage_service_pb2_grpc import TriageServiceAsyncStub


@dataclass
class Triage:
    stub: TriageServiceAsyncStub
    feedback: Path


@asynccontextmanager
async def serve_triage(path: Path) -> AsyncIterator[Triage]:
    """TriageService on a free loopback port, with the rules and its feedback file at ``path``."""
    server = grpc.aio.server()
    servicer = TriageServicer(RuleClassifier(), feedback=IdempotentJsonlFile(path))
    triage_service_pb2_grpc.add_TriageServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield Triage(triage_service_pb2_grpc.TriageServiceStub(channel), path)
    finally:
        await channel.close()
        await server.stop(0)


@pytest.fixture
async def triage(tmp_path: Path) -> AsyncIterator[Triage]:
    async with serve_triage(tmp_path / "feedback.jsonl") as served:
        yield served


def lines_of(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


LAWYER = triage_service_pb2.FeedbackRequest(
    mention_id="m-1",
    text="Third double charge this year, I'm calling my lawyer",
    language="en",
    verdict=triage_pb2.VERDICT_COMPLAINT,
    severity=triage_pb2.SEVERITY_HIGH,
    category="billing",
    actor="care-team alice",
    request_id="fb-1",
)
NOT_A_COMPLAINT = triage_service_pb2.FeedbackRequest(
    mention_id="m-2",
    text="新店开业，欢迎大家周末来试吃",
    language="zh",
    verdict=triage_pb2.VERDICT_NOISE,
    actor="crm",
    request_id="fb-2",
)


async def test_feedback_stores_one_line_in_the_training_format(triage: Triage) -> None:
    response = await triage.stub.Feedback(LAWYER, timeout=5)
    assert response.stored
    [record] = lines_of(triage.feedback)
    assert {k: record[k] for k in ("label", "severity", "category", "text", "language")} == {
        "label": "complaint",
        "severity": "HIGH",
        "category": "billing",
        "text": LAWYER.text,
        "language": "en",
    }
    assert read_examples([triage.feedback]) == [
        Example(
            id="fb-1",
            text=LAWYER.text,
            label="complaint",
            severity="HIGH",
            category="billing",
            language="en",
            style="feedback",
        )
    ]


async def test_noise_feedback_is_stored_without_severity_or_category(triage: Triage) -> None:
    assert (await triage.stub.Feedback(NOT_A_COMPLAINT, timeout=5)).stored
    [record] = lines_of(triage.feedback)
    assert (record["label"], record["severity"], record["category"]) == ("noise", None, "none")
    [example] = read_examples([triage.feedback])
    assert (example.label, example.severity, example.language) == ("noise", "", "zh")


async def test_the_same_request_id_twice_is_stored_once(triage: Triage) -> None:
    first = await triage.stub.Feedback(LAWYER, timeout=5)
    second = await triage.stub.Feedback(LAWYER, timeout=5)
    assert (first.stored, second.stored) == (True, False)
    assert len(lines_of(triage.feedback)) == 1


async def test_feedback_without_request_id_is_kept_once_per_mention(triage: Triage) -> None:
    request = triage_service_pb2.FeedbackRequest()
    request.CopyFrom(LAWYER)
    request.ClearField("request_id")
    stored = [(await triage.stub.Feedback(request, timeout=5)).stored for _ in range(2)]
    assert stored == [True, False]
    assert [record["id"] for record in lines_of(triage.feedback)] == ["feedback:m-1"]


@pytest.mark.parametrize(
    "request_",
    [
        pytest.param(triage_service_pb2.FeedbackRequest(text="", verdict=triage_pb2.VERDICT_NOISE), id="empty-text"),
        pytest.param(triage_service_pb2.FeedbackRequest(text=" \n ", verdict=triage_pb2.VERDICT_NOISE), id="blank"),
        pytest.param(triage_service_pb2.FeedbackRequest(text="Late again"), id="unspecified-verdict"),
    ],
)
async def test_feedback_that_cannot_train_is_invalid(
    triage: Triage, request_: triage_service_pb2.FeedbackRequest
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await triage.stub.Feedback(request_, timeout=5)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert lines_of(triage.feedback) == []


async def test_model_info_names_the_loaded_classifier(triage: Triage) -> None:
    info = await triage.stub.ModelInfo(triage_service_pb2.ModelInfoRequest(), timeout=5)
    assert (info.name, info.version, info.threshold) == ("rules", "1", 0.5)
    assert list(info.languages) == ["en", "zh", "ja", "ru"]
    assert info.held_out_macro_f1 == 0.0


# --- training on the corpus and the feedback ----------------------------------------------

CATEGORIES = (
    "billing",
    "delivery",
    "product_quality",
    "service",
    "account_access",
    "technical_outage",
    "safety",
    "legal_privacy",
)
PER_CATEGORY = 5
NOISE_PER_LANGUAGE = 10


def corpus_sample(path: Path) -> Path:
    """About 80 corpus lines: five complaints of each of eight categories and ten noise posts per language."""
    complaints: dict[str, list[str]] = {category: [] for category in CATEGORIES}
    noise: dict[str, list[str]] = {language: [] for language in ("en", "zh", "ja", "ru")}
    for file in sorted(bundled_corpus().glob("*.jsonl")):
        for line in file.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            chosen = complaints.get(row["category"]) if row["label"] == "complaint" else noise.get(row["language"])
            if chosen is not None and len(chosen) < (
                PER_CATEGORY if row["label"] == "complaint" else NOISE_PER_LANGUAGE
            ):
                chosen.append(line)
    lines = [line for group in (*complaints.values(), *noise.values()) for line in group]
    assert len(lines) == len(CATEGORIES) * PER_CATEGORY + 4 * NOISE_PER_LANGUAGE
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


async def give_feedback(path: Path, requests: list[triage_service_pb2.FeedbackRequest]) -> None:
    async with serve_triage(path) as served:
        for request in requests:
            await served.stub.Feedback(request, timeout=5)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    """A model trained by `clamor triage train` on a corpus sample and the feedback given over gRPC.

    Module-scoped, so the encoder loads for one training run, not one per test.
    """
    folder = tmp_path_factory.mktemp("train")
    feedback = folder / "feedback.jsonl"
    asyncio.run(give_feedback(feedback, [LAWYER, LAWYER, NOT_A_COMPLAINT]))
    sources = [corpus_sample(folder / "sample.jsonl"), feedback]
    out = folder / "model"
    args = ["triage", "train", "--data", str(sources[0]), "--data", str(sources[1]), "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--version", "t1"])
    assert result.exit_code == 0, result.output
    assert "model written" in result.stdout
    return out, sources


def test_train_writes_the_heads_and_the_model_card(trained: tuple[Path, list[Path]]) -> None:
    out, _ = trained
    assert (out / HEADS).is_file()
    assert (out / CARD).is_file()
    heads = ModelHeads.load(out)
    assert heads.version == "t1"
    assert set(heads.complaint.classes) == {"complaint", "noise"}


def test_the_model_card_lists_the_feedback_and_accounts_for_every_example(trained: tuple[Path, list[Path]]) -> None:
    out, sources = trained
    card = json.loads((out / CARD).read_text(encoding="utf-8"))
    assert card["data"]["sources"] == [str(source) for source in sources]
    examples = read_examples(sources)
    assert len(examples) == len(CATEGORIES) * PER_CATEGORY + 4 * NOISE_PER_LANGUAGE + 2
    assert card["data"]["trained_on"]["total"] == len(examples)
    random = card["evaluation"]["random"]
    assert random["train"]["total"] + random["test"]["total"] == len(examples)
    # ModelInfo reports the most honest figure there is: the shift split's when the sample has posts
    # of held-out platforms or industries on both sides, else the random split's.
    honest = card["evaluation"].get("shift", random)
    assert card["held_out"]["count"] == honest["test"]["total"]


def test_evaluate_reports_macro_f1_of_a_trained_model(trained: tuple[Path, list[Path]]) -> None:
    out, sources = trained
    result = CliRunner().invoke(app, ["triage", "evaluate", str(sources[0]), "--model", str(out)])
    assert result.exit_code == 0, result.output
    assert "macro F1" in result.stdout
    assert f"{sources[0]}: {len(CATEGORIES) * PER_CATEGORY + 4 * NOISE_PER_LANGUAGE} posts" in result.stdout
