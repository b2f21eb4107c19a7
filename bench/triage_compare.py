"""Which encoder and features transfer: macro F1 on the random and the shift split, per language, speed and memory.

    python bench/triage_compare.py                                  # every encoder, features and split
    python bench/triage_compare.py --encoders e5-small --c 1 4 16   # a regularisation sweep for one encoder

Each row fits the complaint head on a split's training posts and scores its held-out posts:
- random: one post in five, by a hash of its id (posts like the ones we trained on);
- shift: whole platforms and industries held out (services/triage/training.py ``SHIFT_*``): what
  happens on posts unlike ours, the number every choice is made by (docs/triage-model.md).
Embeddings are cached under ``.cache/triage-embeddings`` by encoder and text
(services/triage/embedding_cache.py). Speed (posts/s on
``--threads``) and peak RSS are measured for each encoder in a fresh process on the same 600 posts.
The last line names the best row by shift-split macro F1.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score, roc_auc_score

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from services.triage.embedding_cache import cached_embeddings  # noqa: E402
from services.triage.evaluation import CachedEncoder, Embedded, fit_and_score  # noqa: E402
from services.triage.features import ENCODERS, FeatureSpec, lexical, make_encoder  # noqa: E402
from services.triage.training import SHIPPED, Example, read_examples, shift_split, split  # noqa: E402

CACHE = ROOT / ".cache" / "triage-embeddings"


# The English X posts were written apart from the rest of the corpus: a model that never saw a post of
# theirs is scored on them, the nearest thing here to real posts by other people.
UNSEEN_WRITERS = ("xen-", "xln-")


def writer_split(examples: list[Example]) -> tuple[list[Example], list[Example]]:
    held = [e for e in examples if e.id.startswith(UNSEEN_WRITERS)]
    return [e for e in examples if not e.id.startswith(UNSEEN_WRITERS)], held


def score(
    spec: FeatureSpec,
    *,
    train: list[int],
    test: list[int],
    grams: object,
    emb: np.ndarray | None,
    labels: np.ndarray,
    c: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Predicted labels and complaint probabilities for ``test`` from a head fitted on ``train``."""
    features = spec.join(grams, emb)
    head = LogisticRegression(C=c, max_iter=4000)
    head.fit(features[train], labels[train])
    probability = head.predict_proba(features[test])[:, list(head.classes_).index("complaint")]
    return np.where(probability >= 0.5, "complaint", "noise"), probability


def _measure(name: str, texts: list[str], threads: int, queue: multiprocessing.Queue[tuple[float, float]]) -> None:
    encoder = make_encoder(name, threads=threads)
    encoder.encode(texts[:32])
    started = time.perf_counter()
    encoder.encode(texts)
    queue.put((len(texts) / (time.perf_counter() - started), peak_rss_mb()))


def peak_rss_mb() -> float:
    """This process's own peak RSS: VmHWM, not ru_maxrss, which keeps the parent's peak across exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def speed(name: str, texts: list[str], threads: int) -> tuple[float, float]:
    """Posts/s and peak RSS (MB) of one encoder, in a fresh process."""
    context = multiprocessing.get_context("spawn")
    queue: multiprocessing.Queue[tuple[float, float]] = context.Queue()
    process = context.Process(target=_measure, args=(name, texts, threads, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def cascades(
    examples: list[Example],
    texts: list[str],
    cached: dict[str, np.ndarray],
    splits: dict[str, tuple[list[int], list[int]]],
    *,
    lows: list[float],
    floors: list[float],
) -> None:
    """The shipped recipe through ModelClassifier on the shift and writer splits: without and with each
    cascade band, then with each floor of the strong-risk override (1.0: the override off)."""
    recipe = SHIPPED
    name = recipe.spec.encoder if recipe.spec.encoder in cached else next(iter(cached))
    unique = dict(zip(texts, cached[name], strict=True))
    encoder = CountingEncoder(name, list(unique), np.vstack(list(unique.values())))
    embedded = Embedded(examples, texts, lexical(texts), encoder)
    bands = [None, *((low, 1 - low) for low in lows)]
    variants = [(f"cascade {band or 'none'}", replace(recipe, cascade_band=band)) for band in bands]
    variants += [(f"strong-risk override from {floor:g}", replace(recipe, risk_floor=floor)) for floor in floors]
    for split_name in ("shift", "writer"):
        train, test = splits[split_name]
        for label, variant in variants:
            encoder.calls = 0
            scored = fit_and_score(embedded, variant, train, test)
            share = (encoder.calls - len(train)) / len(test)
            print(f"{name} {label}: {split_name} macro F1 {scored.macro_f1:.3f}, {share:.0%} reach the encoder")


class CountingEncoder(CachedEncoder):
    calls = 0

    def encode(self, texts: Sequence[str], *, progress: Callable[[int], None] | None = None) -> np.ndarray:
        self.calls += len(texts)
        return super().encode(texts, progress=progress)


def measure_speed(encoders: list[str], texts: list[str], threads: int) -> None:
    sample = [texts[i] for i in np.random.default_rng(7).choice(len(texts), 600, replace=False)]
    for name in encoders:
        per_second, rss = speed(name, sample, threads)
        print(f"{name}: {per_second:.0f} posts/s on {threads} threads, peak RSS {rss:.0f} MB", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=ROOT / "services" / "triage_data" / "corpus")
    parser.add_argument("--encoders", nargs="+", default=list(ENCODERS), choices=ENCODERS)
    parser.add_argument("--c", nargs="+", type=float, default=[4.0], help="inverse regularisation of the head")
    parser.add_argument("--weights", nargs="+", type=float, default=[1.0], help="embedding weight beside n-grams")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-speed", action="store_true", help="skip the speed and memory measurement")
    parser.add_argument(
        "--risk-floor",
        nargs="*",
        type=float,
        default=[],
        metavar="P",
        help="score the shipped recipe with the strong-risk override applying from P up (1: off)",
    )
    parser.add_argument("--speed-only", action="store_true", help="only the speed and memory measurement")
    parser.add_argument(
        "--cascade",
        nargs="*",
        type=float,
        default=None,
        metavar="LOW",
        help="score the shipped recipe through the serving path with n-gram cascade bands (LOW, 1-LOW)",
    )
    args = parser.parse_args()

    examples: list[Example] = read_examples([args.corpus])
    texts = FeatureSpec().prepare([e.text for e in examples])
    labels = np.array([e.label for e in examples])
    index = {id(e): i for i, e in enumerate(examples)}
    splits = {
        name: ([index[id(e)] for e in a], [index[id(e)] for e in b])
        for name, (a, b) in (
            ("random", split(examples)),
            ("shift", shift_split(examples)),
            ("writer", writer_split(examples)),
        )
    }
    for name, (train, test) in splits.items():
        print(f"{name} split: {len(train)} to train on, {len(test)} held out")
    if args.speed_only:
        measure_speed(args.encoders, texts, args.threads)
        return
    grams = lexical(texts)
    languages = sorted({e.language for e in examples})
    rows: list[tuple[str, dict[str, float]]] = []
    specs: list[FeatureSpec] = [FeatureSpec(encoder="", ngrams=True)]
    for encoder in args.encoders:
        specs.append(FeatureSpec(encoder=encoder, ngrams=False))
        specs += [FeatureSpec(encoder=encoder, ngrams=True, embedding_weight=w) for w in args.weights]
    cached = {name: cached_embeddings(name, texts) for name in args.encoders}
    for spec in specs:
        for c in args.c:
            figures: dict[str, float] = {}
            for name, (train, test) in splits.items():
                predicted, probability = score(
                    spec, train=train, test=test, grams=grams, emb=cached.get(spec.encoder), labels=labels, c=c
                )
                truth = labels[test]
                figures[name] = f1_score(truth, predicted, average="macro")
                if name == "shift":
                    figures["auc"] = roc_auc_score(truth == "complaint", probability)
                    for language in languages:
                        chosen = [k for k, i in enumerate(test) if examples[i].language == language]
                        if chosen:
                            figures[language] = f1_score(truth[chosen], predicted[chosen], average="macro")
            label = (spec.encoder or "-") + (" + n-grams" if spec.ngrams and spec.encoder else "")
            label += "" if spec.encoder else "n-grams"
            if spec.ngrams and spec.encoder and len(args.weights) > 1:
                label += f" (w {spec.embedding_weight:g})"
            rows.append((f"{label}, C {c:g}", figures))
            print(
                f"{rows[-1][0]:<34} random {figures['random']:.3f}  writer {figures['writer']:.3f}  "
                f"shift {figures['shift']:.3f} "
                f"(AUC {figures['auc']:.3f}; " + " ".join(f"{x} {figures.get(x, 0):.3f}" for x in languages) + ")",
                flush=True,
            )
    if args.cascade is not None or args.risk_floor:
        cascades(examples, texts, cached, splits, lows=args.cascade or [], floors=args.risk_floor)
    if not args.no_speed:
        measure_speed(args.encoders, texts, args.threads)
    best = max(rows, key=lambda row: row[1]["shift"])
    print(f"best on the shift split: {best[0]}, macro F1 {best[1]['shift']:.3f} (random {best[1]['random']:.3f})")


if __name__ == "__main__":
    main()
