"""Check labelled corpus files against docs/annotation.md: fields, allowed values, unique ids, no repeats.

    python scripts/check_corpus.py services/triage_data/corpus            # every file
    python scripts/check_corpus.py services/triage_data/corpus/xen_*.jsonl --summary

Exits 1 and names file and line for every problem. ``--summary`` prints the label, style, platform,
industry and language counts, and the share of posts carrying an @handle or a link per label.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import unicodedata
from collections import Counter
from pathlib import Path

LABELS = {"complaint", "noise"}
SEVERITIES = {"LOW", "MEDIUM", "HIGH", "CRITICAL"}
CATEGORIES = {
    "billing",
    "delivery",
    "product_quality",
    "service",
    "account_access",
    "technical_outage",
    "safety",
    "legal_privacy",
    "other",
}
LANGUAGES = {"en", "zh", "ja", "ru"}
PLATFORMS = {
    "x",
    "bluesky",
    "mastodon",
    "threads",
    "reddit",
    "hackernews",
    "forum",
    "review",
    "appstore",
    "blog",
    "weibo",
    "xiaohongshu",
    "tieba",
    "zhihu",
    "bilibili",
    "douyin",
    "dianping",
    "2ch",
    "chiebukuro",
    "note",
    "line",
    "kakaku",
    "vk",
    "pikabu",
    "otzovik",
    "habr",
    "telegram",
    "v1",
}
COMPLAINT_STYLES = {
    "direct",
    "rant",
    "polite",
    "problem_question",
    "help_request",
    "with_link",
    "mixed_praise",
    "sarcasm",
    "terse",
    "follow_up",
    "risk",
    "review_complaint",
}
NOISE_STYLES = {
    "conversation",
    "neutral_question",
    "praise",
    "thanks_resolved",
    "news",
    "ad",
    "job_post",
    "off_topic_negative",
    "brand_reply",
    "joke",
    "opinion",
    "recommendation_request",
    "spam",
    "review_positive",
}
INDUSTRIES = {
    "telecom",
    "banking_fintech",
    "airline_travel",
    "ecommerce_retail",
    "food_restaurants",
    "grocery_packaged_food",
    "utilities_energy",
    "insurance",
    "software_saas",
    "consumer_electronics",
    "gaming_streaming",
    "automotive_mobility",
    "couriers_logistics",
    "healthcare_pharmacy",
    "government_public",
    "hotels_hospitality",
    "cosmetics_fashion",
    "education",
    "none",
}
FIELDS = ("id", "text", "label", "severity", "category", "language", "platform", "style", "industry")

_SHAPE = re.compile(r"@\w+|https?://\S+|\d+|[^\w]+", re.UNICODE)


def shape(text: str) -> str:
    """A post with handles, links, digits and punctuation removed: two posts of one shape are a repeat."""
    return _SHAPE.sub("", unicodedata.normalize("NFKC", text).lower())


def problems_in(row: object, seen_ids: set[str], seen_shapes: dict[str, str], where: str) -> list[str]:
    if not isinstance(row, dict):
        return [f"{where}: not an object"]
    found = [f"{where}: missing {name}" for name in FIELDS if name not in row]
    if found:
        return found
    text, label = row["text"], row["label"]
    checks = [
        (isinstance(text, str) and text.strip() != "", "text must be a non-empty string"),
        (label in LABELS, f"label {label!r}"),
        (row["language"] in LANGUAGES, f"language {row['language']!r}"),
        (row["platform"] in PLATFORMS, f"platform {row['platform']!r}"),
        (row["industry"] in INDUSTRIES, f"industry {row['industry']!r}"),
    ]
    if label == "complaint":
        checks += [
            (row["severity"] in SEVERITIES, f"severity {row['severity']!r} for a complaint"),
            (row["category"] in CATEGORIES, f"category {row['category']!r} for a complaint"),
            (row["style"] in COMPLAINT_STYLES, f"style {row['style']!r} is not a complaint style"),
        ]
    else:
        checks += [
            (row["severity"] is None, "noise has severity null"),
            (row["category"] == "none", "noise has category none"),
            (row["style"] in NOISE_STYLES, f"style {row['style']!r} is not a noise style"),
        ]
    found = [f"{where}: {message}" for ok, message in checks if not ok]
    if row["id"] in seen_ids:
        found.append(f"{where}: id {row['id']!r} used twice")
    seen_ids.add(str(row["id"]))
    if isinstance(text, str):
        key = shape(text)
        if key and key in seen_shapes:
            found.append(f"{where}: repeats {seen_shapes[key]} (same words once handles, links and digits go)")
        seen_shapes.setdefault(key, where)
    return found


def summary(rows: list[dict[str, object]]) -> None:
    for name in ("label", "language", "platform", "style", "industry"):
        counts = Counter(str(r[name]) for r in rows)
        print(f"{name}: " + ", ".join(f"{k} {v}" for k, v in counts.most_common()))
    for label in sorted(LABELS):
        texts = [str(r["text"]) for r in rows if r["label"] == label]
        if texts:
            handle = sum("@" in t for t in texts) / len(texts)
            link = sum("http" in t for t in texts) / len(texts)
            print(f"{label}: {len(texts)} posts, {handle:.0%} with an @handle, {link:.0%} with a link")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path)
    parser.add_argument("--summary", action="store_true")
    args = parser.parse_args()
    files = [f for p in args.paths for f in (sorted(p.glob("*.jsonl")) if p.is_dir() else [p])]
    seen_ids: set[str] = set()
    seen_shapes: dict[str, str] = {}
    rows: list[dict[str, object]] = []
    problems: list[str] = []
    for file in files:
        for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            where = f"{file}:{number}"
            try:
                row = json.loads(line)
            except ValueError as exc:
                problems.append(f"{where}: not JSON ({exc})")
                continue
            found = problems_in(row, seen_ids, seen_shapes, where)
            problems += found
            if not found:
                rows.append(row)
    for problem in problems:
        print(problem, file=sys.stderr)
    if args.summary:
        summary(rows)
    print(f"{len(rows)} posts fine, {len(problems)} problem(s) in {len(files)} file(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
