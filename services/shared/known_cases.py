"""Whether a case exists: read from the router's ``cases`` bucket by the services that take case ids.

The notifier takes acknowledgements for case ids people type or integrations send; an action on a
case nobody opened must be refused where it is asked for, not published and dropped by the router
later. The router owns the bucket and creates it; this only reads keys (a case id is its own key,
as the router stores it), so it never creates the bucket with limits of its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nats.js.errors import BucketNotFoundError, InvalidKeyError, KeyNotFoundError

from services.shared import subjects
from services.shared.errors import map_exceptions
from services.shared.jetstream import NATS_FAILURES

if TYPE_CHECKING:
    from nats.js import JetStreamContext
    from nats.js.kv import KeyValue


class KnownCases:
    """Asks the router's ``cases`` bucket whether a case id names a case (TransientError if NATS fails)."""

    def __init__(self, js: JetStreamContext) -> None:
        self._js = js
        self._bucket: KeyValue | None = None

    async def exists(self, case_id: str) -> bool:
        with map_exceptions(NATS_FAILURES, f"cannot look up case {case_id!r}"):
            bucket = await self._bind()
            if bucket is None:
                return False
            try:
                await bucket.get(case_id)
            except (KeyNotFoundError, InvalidKeyError):
                # Never stored, erased, or not even a valid key (a CRM's "ZD#4711"): no such case.
                return False
        return True

    async def _bind(self) -> KeyValue | None:
        if self._bucket is None:
            try:
                self._bucket = await self._js.key_value(subjects.CASES_BUCKET)
            except BucketNotFoundError:
                # No router has run yet, so no case exists; bound again on the next question.
                return None
        return self._bucket
