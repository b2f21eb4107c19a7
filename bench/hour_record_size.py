"""Stored size of a typical trend-counter hour record: protobuf now, against the JSON stored before.

A typical busy hour of one watch is counted (``--posts`` complaints, default 120, over five
categories, three languages, three platforms, two configured keywords, realistic post texts, so the
hour keeps its 40 top terms, five authors and five samples of up to 280 characters) and stored three
ways: as ``HOUR_COUNTS_CODEC`` stores it (``HourCountsRecord``, binary), as ``HourCounts.to_json``
of earlier versions stored it (JSON), and as protobuf's JSON mapping of the new contract.

    python bench/hour_record_size.py --posts 120
"""

from __future__ import annotations

import argparse
import json
import random
from collections import Counter
from dataclasses import asdict
from datetime import UTC, datetime, timedelta

from google.protobuf import json_format

from clamor.v1 import mention_pb2, triage_pb2
from services.reputation.domain import MAX_TERMS, HourCounts
from services.reputation.records import HOUR_COUNTS_CODEC, hour_counts_to_proto

HOUR = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
CATEGORIES = ("billing", "delivery", "quality", "support", "app")
_WORDS_TEXT = (
    "charged twice order refund invoice late courier parcel missing broken screen app crash login password "
    "support ticket waiting days answer manager call email subscription cancel fee hidden price box damaged "
    "cold food driver rude wrong item replaced warranty repair store account locked update payment declined"
)
WORDS = _WORDS_TEXT.split()


def typical_hour(posts: int, seed: int = 7) -> HourCounts:
    rng = random.Random(seed)
    record = HourCounts()
    for n in range(posts):
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(12, 40)))
        mention = mention_pb2.Mention(
            id=f"x:18{n:06d}4729",
            platform=rng.choice(("x", "reddit", "trustpilot")),
            text=f"@Acme {text}",
            url=f"https://x.com/user{n}/status/18{n:06d}4729",
            language=rng.choice(("en", "en", "en", "de", "ru")),
            author=mention_pb2.Author(handle=f"user_{n}", followers=int(rng.paretovariate(1.2) * 100)),
        )
        result = triage_pb2.TriageResult(
            verdict=triage_pb2.VERDICT_COMPLAINT,
            category=rng.choice(CATEGORIES),
            severity=rng.choice((triage_pb2.SEVERITY_LOW, triage_pb2.SEVERITY_MEDIUM, triage_pb2.SEVERITY_HIGH)),
            language=mention.language,
        )
        at = HOUR + timedelta(seconds=rng.randrange(3600))
        triaged = triage_pb2.TriagedMention(mention=mention, result=result)
        record.add(n + 1, triaged, at=at, keywords=("refund", "courier"))
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=120)
    args = parser.parse_args()
    record = typical_hour(args.posts)
    # What is stored: the hour's top terms only (both codecs cap them as they write).
    record.terms = dict(Counter(record.terms).most_common(MAX_TERMS))
    binary = HOUR_COUNTS_CODEC.encode(record)
    assert HOUR_COUNTS_CODEC.decode(binary) == record
    # HourCounts.to_json of earlier versions: the dataclass's fields in order, the terms capped.
    before = json.dumps(asdict(record), ensure_ascii=False).encode()
    assert HOUR_COUNTS_CODEC.decode(before) == record
    mapped = json_format.MessageToDict(hour_counts_to_proto(record), preserving_proto_field_name=True)
    contract_json = json.dumps(mapped, ensure_ascii=False).encode()
    print(
        f"hour of {record.total} posts, {len(record.terms)} terms, {len(record.categories)} categories: "
        f"protobuf {len(binary)} B | JSON before {len(before)} B | JSON of the new contract {len(contract_json)} B "
        f"| {100 * (1 - len(binary) / len(before)):.0f} % smaller than before"
    )


if __name__ == "__main__":
    main()
