"""The reputation service's durable consumer on TRIAGED: every triaged post, counted in stream order."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from clamor.v1 import triage_pb2
from services.shared import subjects

if TYPE_CHECKING:
    from google.protobuf.message import Message

    from services.reputation.counters import TrendsCounter
    from services.shared.pull_consumer import BatchHandler


def counting_consumer(
    counter: TrendsCounter,
) -> tuple[subjects.ConsumerSpec, type[Message], BatchHandler[Any], int]:
    """(durable, payload type, batch handler, batch size): one batch per fetch, counted in stream order.

    Posts past a gap (posts another replica holds, or ones handed back) are handed back until the
    gap is counted (see counters.py); ``max_ack_pending`` bounds how many can be out at once.
    """
    return (subjects.REPUTATION_CONSUMER, triage_pb2.TriagedMention, counter.handle, subjects.REPUTATION_BATCH)
