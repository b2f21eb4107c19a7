"""Every outbound read the reputation service makes beyond its own buckets: the router's mention → case index."""

from __future__ import annotations

from typing import TYPE_CHECKING

from clamor.v1 import mention_case_pb2
from services.shared import subjects
from services.shared.kv_state import KvState, ProtoCodec

if TYPE_CHECKING:
    from nats.js import JetStreamContext


class MentionCases:
    """Which case holds a post, as the router recorded when it placed it (``router_mention_cases``).

    The router writes the record for a post it grouped into another customer's case too, so a
    sample post always links to the case that really holds it. A post the router never placed (noise,
    or not yet routed) has no record.
    """

    def __init__(self, state: KvState[mention_case_pb2.MentionCase]) -> None:
        self._state = state

    @classmethod
    async def open(cls, js: JetStreamContext, *, replicas: int) -> MentionCases:
        # Created by whichever service starts first, with the same limits either way.
        state = await KvState.open(
            js,
            subjects.MENTION_CASES_BUCKET,
            codec=ProtoCodec(mention_case_pb2.MentionCase),
            replicas=replicas,
            ttl_s=subjects.TRIAGED.max_age_s,
            mirror=False,
        )
        return cls(state)

    async def case_of(self, mention_id: str) -> str | None:
        found = await self._state.get(mention_id)
        if found is None:
            return None
        record = found[0]
        # A digest collision would name another post: the record says whose it is.
        return record.case_id if record.mention_id == mention_id and record.case_id else None
