"""RuleClassifier speed on one core: posts per second over the bundled sample.

python bench/classify_rules.py
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from services.triage.domain import Post, RuleClassifier

SAMPLE = Path(__file__).resolve().parents[1] / "services" / "cli_data" / "sample_posts.jsonl"
ROUNDS = 20


def main() -> None:
    rows = [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines()]
    posts = [Post(r["text"], r["language"], r["author"]["followers"]) for r in rows]
    classifier = RuleClassifier()
    classifier.classify(posts)  # warm the regex caches
    started = time.perf_counter()
    for _ in range(ROUNDS):
        classifier.classify(posts)
    elapsed = time.perf_counter() - started
    agree = sum(
        (r.verdict == 1) == (row["label"] == "complaint")
        for r, row in zip(classifier.classify(posts), rows, strict=True)
    )
    print(f"agreement with the sample's labels: {agree}/{len(rows)} ({agree / len(rows):.1%})")
    print(f"RuleClassifier: {len(posts) * ROUNDS / elapsed:,.0f} posts/s on one core")


if __name__ == "__main__":
    main()
