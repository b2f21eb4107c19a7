"""Triage serving speed against the naive baseline, on the same posts in one process.

python bench/triage_throughput.py [--posts 2000] [--threads 2] [--naive-posts 300]

(a) the naive baseline: transformers ``pipeline("text-classification")`` on the same MiniLM encoder
    (with a sequence-classification head on top), called one post at a time;
(b) our serving path: ``ModelClassifier.classify`` on batches (dynamic padding, length-sorted),
    fp32 and int8 dynamic quantization, the risk rules included.
The baseline is timed on ``--naive-posts`` of the posts (it is slow) and reported per second.
Quantization is kept only if it loses less than one point of macro F1 on the held-out split.
The last line is the ratio of (b) to (a).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from services.triage.domain import Post
from services.triage.features import Encoder, encoder_path
from services.triage.model import ModelClassifier, ModelHeads, bundled_model_dir
from services.triage.training import read_examples, report, split

CORPUS = bundled_model_dir().parent / "corpus"


def posts_for(count: int) -> list[Post]:
    examples = read_examples([CORPUS])
    return [Post(examples[i % len(examples)].text, examples[i % len(examples)].language) for i in range(count)]


def naive_rate(posts: list[Post], threads: int) -> float:
    import torch  # noqa: PLC0415
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline  # noqa: PLC0415
    from transformers.utils import logging as transformers_logging  # noqa: PLC0415

    transformers_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    torch.set_num_threads(threads)
    model = AutoModelForSequenceClassification.from_pretrained(encoder_path(), num_labels=2)
    classify = pipeline("text-classification", model=model, tokenizer=AutoTokenizer.from_pretrained(encoder_path()))
    classify(posts[0].text)
    started = time.perf_counter()
    for post in posts:
        classify(post.text, truncation=True, max_length=128)
    return len(posts) / (time.perf_counter() - started)


def served_rate(classifier: ModelClassifier, posts: list[Post], batch: int) -> float:
    classifier.classify(posts[:batch])
    started = time.perf_counter()
    for start in range(0, len(posts), batch):
        classifier.classify(posts[start : start + batch])
    return len(posts) / (time.perf_counter() - started)


def held_out_f1(classifier: ModelClassifier) -> float:
    _, test = split(read_examples([CORPUS]))
    results = classifier.classify([Post(e.text, e.language) for e in test])
    labels = ["complaint" if r.verdict == 1 else "noise" for r in results]
    return report(test, labels, ["" for _ in test], ["" for _ in test]).macro_f1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--posts", type=int, default=2000)
    parser.add_argument("--naive-posts", type=int, default=400)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64, help="the service's default batch_size")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    posts = posts_for(args.posts)
    heads = ModelHeads.load(bundled_model_dir())

    print(f"(a) naive pipeline, one post at a time, {args.naive_posts} of the posts…", file=sys.stderr)
    # Spread over the corpus, so the baseline sees every language in the same shares as (b).
    naive = naive_rate(posts[:: max(1, len(posts) // args.naive_posts)][: args.naive_posts], args.threads)
    print(f"(a) naive pipeline: {naive:,.1f} posts/s")

    rates: dict[str, float] = {}
    scores: dict[str, float] = {}
    for quantize in (False, True):
        label = "int8" if quantize else "fp32"
        classifier = ModelClassifier(heads, encoder=Encoder(quantize=quantize, threads=args.threads))
        print(f"(b) serving path {label}, batches of {args.batch}…", file=sys.stderr)
        rates[label] = served_rate(classifier, posts, args.batch)
        scores[label] = held_out_f1(classifier)
        print(f"(b) serving path {label}: {rates[label]:,.1f} posts/s, held-out macro F1 {scores[label]:.4f}")
    keep = "int8" if scores["fp32"] - scores["int8"] < 0.01 and rates["int8"] > rates["fp32"] else "fp32"
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"kept: {keep} (int8 loses {100 * (scores['fp32'] - scores['int8']):.2f} points of macro F1)")
    print(f"peak RSS of this process (both paths and the baseline loaded): {rss_mb:,.0f} MB")
    print(f"triage: {rates[keep]:,.1f} posts/s served vs {naive:,.1f} naive = {rates[keep] / naive:.1f}x")


if __name__ == "__main__":
    main()
