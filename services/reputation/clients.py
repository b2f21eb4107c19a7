"""Every outbound read the reputation service makes beyond its own buckets: the router's mention → case index."""

from __future__ import annotations

from typing import TYPE_CHECKING

from google.protobuf.message import DecodeError
from nats.errors import Error as NatsLibraryError
from nats.js.errors import KeyNotFoundError

from clamor.v1 import mention_case_pb2
from services.reputation.errors import IndexUnavailableError
from services.shared import subjects
from services.shared.jetstream import ensure_bucket

if TYPE_CHECKING:
    from nats.js import JetStreamContext
    from nats.js.kv import KeyValue


class MentionCases:
    """Which case holds a post, as the router recorded when it placed it (``router_mention_cases``).

    The router writes the record for a post it grouped into another customer's case too, so a
    sample post always links to the case that really holds it. A post the router never placed (noise,
    or not yet routed) has no record.
    """

    def __init__(self, bucket: KeyValue) -> None:
        self._bucket = bucket

    @classmethod
    async def open(cls, js: JetStreamContext, *, replicas: int) -> MentionCases:
        # Created by whichever service starts first, with the same limits either way.
        bucket = await ensure_bucket(
            js, subjects.MENTION_CASES_BUCKET, replicas=replicas, ttl_s=subjects.TRIAGED.max_age_s
        )
        return cls(bucket)

    async def case_of(self, mention_id: str) -> str | None:
        try:
            entry = await self._bucket.get(subjects.mention_case_key(mention_id))
        except KeyNotFoundError:
            return None
        except (TimeoutError, NatsLibraryError) as exc:
            raise IndexUnavailableError(f"cannot read the case of {mention_id}: {exc}") from exc
        record = mention_case_pb2.MentionCase()
        try:
            record.ParseFromString(entry.value or b"")
        except DecodeError:
            return None
        # A digest collision would name another post: the record says whose it is.
        return record.case_id if record.mention_id == mention_id and record.case_id else None
