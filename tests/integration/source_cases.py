"""What every polled source does with a refusal or a broken answer, written once for all of them.

A test module subclasses the cases that apply as a ``Test…`` class, saying which path its source
polls and how to build that source for a local server; pytest runs the inherited tests there.
Also here: the client and the fixed-answer handler every source test needs.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar

import pytest
from aiohttp import web

from services.listener.errors import SourceFormatError
from services.listener.sources.base import Poll, Source, SourceState
from services.shared.clock import Clock, system_clock
from services.shared.outbound import FetchLimits, OutboundClient, OutboundError, OutboundPolicy
from tests.http_server import Handler, LocalHttpServer, serve

JSON_TYPE = "application/json"


def outbound(
    *, allow: tuple[str, ...] = ("127.0.0.1",), limits: FetchLimits | None = None, clock: Clock = system_clock
) -> OutboundClient:
    """A client allowed to reach the local servers, which the SSRF guard otherwise refuses."""
    return OutboundClient(OutboundPolicy(allow_hosts=allow), limits=limits, clock=clock)


def answering(
    body: bytes, *, status: int = 200, content_type: str = JSON_TYPE, headers: Mapping[str, str] | None = None
) -> Handler:
    """A handler that gives the same answer to every request."""

    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(body=body, status=status, content_type=content_type, headers=headers)

    return handler


@dataclass(frozen=True)
class SpentBudget:
    """More posts than one page holds, served with headers that say the rate-limit budget is spent."""

    handler: Handler
    # The wait those headers ask for.
    wait_s: float
    # The first page's post ids, oldest first.
    first_page: list[str]


class SourceCases(abc.ABC):
    """Any polled source, refused with 429: the error carries the wait the platform asked for."""

    # The path the source polls, answered by the handler each case gives.
    path: ClassVar[str]
    # How it asks: APIs that take their credentials in a form (VK) POST.
    method: ClassVar[str] = "GET"
    since: ClassVar[datetime] = datetime(2026, 3, 1, tzinfo=UTC)

    @abc.abstractmethod
    def source(self, server: LocalHttpServer) -> Source:
        """The source under test, configured to poll ``server``."""

    async def poll_answered_by(self, handler: Handler) -> tuple[Poll, LocalHttpServer]:
        """A first poll of a source whose every request ``handler`` answers."""
        async with serve({(self.method, self.path): handler}) as server, outbound() as http:
            poll = await self.source(server).poll(http, SourceState(), since=self.since)
        return poll, server

    async def test_429_with_retry_after_raises_outbound_error_carrying_the_wait(self) -> None:
        refusal = answering(b'{"error": "Too Many Requests"}', status=429, headers={"Retry-After": "42"})

        with pytest.raises(OutboundError) as raised:
            await self.poll_answered_by(refusal)

        assert raised.value.retry_after_s == 42.0


class JsonSourceCases(SourceCases):
    """A source that reads JSON, answered with something else or with JSON cut short."""

    # How the source names itself in its errors.
    what: ClassVar[str]

    async def test_body_that_is_not_json_is_a_source_format_error_naming_the_source(self) -> None:
        expected = re.escape(f"{self.what}: invalid JSON at line 1, column 1")

        with pytest.raises(SourceFormatError, match=f"^{expected}"):
            await self.poll_answered_by(answering(b"<!DOCTYPE html><p>Down for maintenance</p>"))

    async def test_truncated_json_is_a_source_format_error_saying_where_it_stops(self) -> None:
        truncated = b'{"data": [{"id": "1", "text": "cut off in the mid'

        with pytest.raises(SourceFormatError, match=r"invalid JSON at line 1, column 31 \(character 30\)"):
            await self.poll_answered_by(answering(truncated))


class PagedSourceCases(JsonSourceCases):
    """A source that reads several pages a poll, told that its rate-limit budget is spent."""

    @abc.abstractmethod
    def spent_budget(self) -> SpentBudget:
        """A burst of posts in pages, in the platform's own rate-limit headers."""

    async def test_spent_budget_sets_the_wait_and_requests_no_further_page(self) -> None:
        spent = self.spent_budget()

        poll, server = await self.poll_answered_by(spent.handler)

        assert poll.wait_s == spent.wait_s
        assert len(server.requests) == 1
        assert [post.native_id for post in poll.posts] == spent.first_page
