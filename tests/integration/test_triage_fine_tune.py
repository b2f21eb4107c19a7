"""Fine-tuning the encoder's top layers: they change, only they are saved, and they load back exactly."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest

from services.triage.features import TorchEncoder, make_encoder
from services.triage.fine_tune import TUNED_FILE, FineTuneSettings, fine_tune, save_tuned_layers

if TYPE_CHECKING:
    from pathlib import Path

# Written for this test: a handful of each label is enough to move the weights.
TEXTS = [
    "@user my refund never arrived, third week now",
    "@user haha same, see you saturday",
    "the app logs me out every hour since the update",
    "do you ship to Porto?",
    "charged twice and support will not answer",
    "lovely weather for a walk today",
    "快递三天没动了，客服也不回",
    "周末一起去吃火锅吧",
]
LABELS = ["complaint", "noise"] * 4


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory) -> tuple[TorchEncoder, dict[str, object], Path, np.ndarray]:
    encoder = make_encoder("e5-small", threads=2)
    assert isinstance(encoder, TorchEncoder)
    before = encoder.encode(TEXTS)
    tensors = fine_tune(encoder, TEXTS, LABELS, FineTuneSettings(layers=1, epochs=2, learning_rate=1e-3, batch_size=4))
    folder = tmp_path_factory.mktemp("tuned")
    save_tuned_layers(tensors, folder)
    return encoder, tensors, folder, before


def test_fine_tuning_moves_the_embeddings(tuned: tuple[TorchEncoder, dict[str, object], Path, np.ndarray]) -> None:
    encoder, _, _, before = tuned
    after = encoder.encode(TEXTS)
    assert not np.allclose(before, after, atol=1e-4)
    assert np.allclose(np.linalg.norm(after, axis=1), 1.0, atol=1e-4)


def test_only_the_top_layers_are_saved(tuned: tuple[TorchEncoder, dict[str, object], Path, np.ndarray]) -> None:
    _, tensors, folder, _ = tuned
    top = len(list(tuned[0].model.encoder.layer)) - 1
    assert tensors
    assert all(name.startswith(f"encoder.layer.{top}.") for name in tensors)
    assert (folder / TUNED_FILE).stat().st_size < 10_000_000


def test_tuned_layers_load_over_a_fresh_encoder_and_embed_the_same(
    tuned: tuple[TorchEncoder, dict[str, object], Path, np.ndarray],
) -> None:
    encoder, _, folder, before = tuned
    reloaded = make_encoder("e5-small", threads=2, tuned=folder / TUNED_FILE)
    assert np.allclose(reloaded.encode(TEXTS), encoder.encode(TEXTS), atol=1e-5)
    assert not np.allclose(reloaded.encode(TEXTS), before, atol=1e-4)
