"""Fine-tuning the encoder's top layers on a user's labelled posts, on the CPU, within minutes.

The frozen encoder with trained heads is the default because it transfers: a few thousand posts of
one shop's traffic are easy to overfit. Fine-tuning is offered for users whose posts differ from ours
(a register, a jargon), and kept only when it beats the frozen encoder on posts it did not train on
(``clamor triage train --fine-tune`` decides on the random held-out split and says which it kept).

What is trained: the top ``layers`` transformer layers, through a complaint/noise linear head on the
mean-pooled output (cross-entropy). The lower layers and the word-embedding table stay frozen and
run without gradients, so a step costs one forward pass plus the top layers' backward. Only the tuned
layers are saved (``encoder-tuned.safetensors`` in the model directory, about 7 MB per layer), and
loaded over the base encoder by :func:`apply_tuned_layers`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path

    from services.triage.features import TorchEncoder

TUNED_FILE = "encoder-tuned.safetensors"


@dataclass(frozen=True)
class FineTuneSettings:
    layers: int = 2
    epochs: int = 1
    learning_rate: float = 3e-5
    batch_size: int = 16
    # Shorter than serving's 128: most posts fit, and the backward pass costs what the sequence costs.
    max_tokens: int = 96
    seed: int = 7


def _top_layers(encoder: TorchEncoder, count: int) -> list[Any]:
    layers = list(encoder.model.encoder.layer)
    return layers[len(layers) - count :]


def fine_tune(
    encoder: TorchEncoder,
    texts: Sequence[str],
    labels: Sequence[str],
    settings: FineTuneSettings = FineTuneSettings(),
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Train the encoder's top layers in place on prepared ``texts``; returns the tuned tensors by name."""
    import torch  # noqa: PLC0415

    torch.manual_seed(settings.seed)
    model = encoder.model
    trainable = _top_layers(encoder, settings.layers)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    for layer in trainable:
        for parameter in layer.parameters():
            parameter.requires_grad_(True)
    head = torch.nn.Linear(model.config.hidden_size, 2)
    optimiser = torch.optim.AdamW(
        [*(p for layer in trainable for p in layer.parameters()), *head.parameters()], lr=settings.learning_rate
    )
    targets = torch.tensor([1 if label == "complaint" else 0 for label in labels])
    order = list(range(len(texts)))
    shuffle = random.Random(settings.seed)
    model.train()
    try:
        for _ in range(settings.epochs):
            shuffle.shuffle(order)
            for start in range(0, len(order), settings.batch_size):
                chunk = order[start : start + settings.batch_size]
                batch = encoder.tokenize([texts[i] for i in chunk], max_tokens=settings.max_tokens)
                pooled = encoder.pooled(batch)
                loss = torch.nn.functional.cross_entropy(head(pooled), targets[chunk])
                optimiser.zero_grad()
                loss.backward()  # type: ignore[no-untyped-call]
                optimiser.step()
                if progress is not None:
                    progress(len(chunk))
    finally:
        model.eval()
        for parameter in model.parameters():
            parameter.requires_grad_(False)
    prefix = len(list(model.encoder.layer)) - settings.layers
    return {
        f"encoder.layer.{prefix + offset}.{name}": tensor.detach().clone().contiguous()
        for offset, layer in enumerate(trainable)
        for name, tensor in layer.state_dict().items()
    }


def save_tuned_layers(tensors: dict[str, Any], folder: Path) -> None:
    from safetensors.torch import save_file  # noqa: PLC0415

    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / TUNED_FILE))


def apply_tuned_layers(encoder: TorchEncoder, file: Path) -> None:
    """Load tuned layers saved by :func:`save_tuned_layers` over the base encoder."""
    from safetensors.torch import load_file  # noqa: PLC0415

    tensors = load_file(str(file))
    _, unexpected = encoder.model.load_state_dict(tensors, strict=False)
    if unexpected:
        raise ValueError(f"{file}: tensors this encoder does not have: {', '.join(unexpected[:5])}")
