"""provision: creating streams, buckets and consumers waits out a cluster that is electing a leader."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.errors import ServerError, ServiceUnavailableError

from services.shared import jetstream
from services.shared.errors import TransientError
from services.shared.jetstream import provision


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jetstream, "PROVISION_WAITS_S", (0.0,))


def failing(*errors: BaseException) -> tuple[Callable[[], Awaitable[str]], list[int]]:
    """A call that raises ``errors`` in turn, then answers "done"; and the count of calls made."""
    calls: list[int] = []

    async def call() -> str:
        calls.append(1)
        if len(calls) <= len(errors):
            raise errors[len(calls) - 1]
        return "done"

    return call, calls


async def test_an_election_is_waited_out() -> None:
    unavailable = ServiceUnavailableError(code=503, description="JetStream system temporarily unavailable")
    call, calls = failing(NatsTimeoutError(), NoRespondersError(), unavailable)
    assert await provision("stream MENTIONS", call) == "done"
    assert len(calls) == 4


async def test_a_refusal_is_raised_at_once() -> None:
    call, calls = failing(ServerError(code=500, description="replicas > 1 not supported in non-clustered mode"))
    with pytest.raises(ServerError):
        await provision("stream MENTIONS", call)
    assert len(calls) == 1


async def test_no_answer_at_all_ends_in_a_transient_error_naming_what() -> None:
    call, calls = failing(*[NatsTimeoutError()] * jetstream.PROVISION_ATTEMPTS)
    with pytest.raises(TransientError, match="stream MENTIONS: no answer from JetStream"):
        await provision("stream MENTIONS", call)
    assert len(calls) == jetstream.PROVISION_ATTEMPTS
