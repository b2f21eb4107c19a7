"""Embeddings kept on disk by encoder and text, so training, evaluating and comparing embed each post once.

Embedding the bundled corpus takes minutes on two cores; fitting heads takes seconds. ``clamor triage
train`` and ``evaluate`` and the benchmarks read rows from one file per encoder under
``<model cache>/embeddings`` (``CLAMOR_MODEL_CACHE``, else ``~/.cache/clamor/models``), keyed by a hash
of each prepared text, and embed only the texts not there yet. A fine-tuned encoder is never cached:
its rows depend on the tuning.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from services.triage.e5_weights import default_cache_dir
from services.triage.features import EMBEDDING_DIM, Encoder, make_encoder

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence


def default_cache() -> Path:
    """Beside the converted encoders, so CLAMOR_MODEL_CACHE moves both."""
    return default_cache_dir() / "embeddings"


def _key(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


class DiskCachedEncoder:
    """An encoder that reads rows it has computed before from disk and computes only the others."""

    def __init__(
        self, name: str, *, cache: Path | None = None, threads: int = 0, make: Callable[[], Encoder] | None = None
    ) -> None:
        self.name = name
        self._store = (cache or default_cache()) / f"{name}.npz"
        self._make = make or (lambda: make_encoder(name, threads=threads))
        self._inner: Encoder | None = None

    def encode(self, texts: Sequence[str], *, progress: Callable[[int], None] | None = None) -> np.ndarray:
        keys = [_key(t) for t in texts]
        known: dict[str, np.ndarray] = {}
        if self._store.exists():
            with np.load(self._store) as data:
                wanted = set(keys)
                known = {k: row for k, row in zip(data["keys"].tolist(), data["rows"], strict=True) if k in wanted}
        missing = list(dict.fromkeys(t for k, t in zip(keys, texts, strict=True) if k not in known))
        if progress is not None and len(texts) > len(missing):
            progress(len(texts) - len(missing))
        if missing:
            if self._inner is None:
                self._inner = self._make()
            rows = self._inner.encode(missing, progress=progress)
            fresh = dict(zip((_key(t) for t in missing), rows, strict=True))
            self._save(fresh)
            known.update(fresh)
        if not texts:
            return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
        return np.vstack([known[k] for k in keys]).astype(np.float32)

    def _save(self, fresh: dict[str, np.ndarray]) -> None:
        everything: dict[str, np.ndarray] = {}
        if self._store.exists():
            with np.load(self._store) as data:
                everything = dict(zip(data["keys"].tolist(), data["rows"], strict=True))
        everything.update(fresh)
        self._store.parent.mkdir(parents=True, exist_ok=True)
        partial = self._store.with_name(f".{self._store.stem}.{os.getpid()}.npz")
        np.savez(partial, keys=np.array(list(everything)), rows=np.vstack(list(everything.values())))
        # Two processes saving at once: each writes its own file and the last rename wins; the loser's
        # rows are computed again next time, never mixed up.
        partial.replace(self._store)


def cached_embeddings(encoder_name: str, texts: Sequence[str], *, threads: int = 2) -> np.ndarray:
    """Rows for ``texts`` (already prepared) from the disk cache, computing the missing ones."""
    return DiskCachedEncoder(encoder_name, threads=threads).encode(texts)
