"""Fixtures for integration tests that reach local servers through the real outbound client."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from services.shared.outbound import OutboundClient
from tests.integration.source_cases import outbound


@pytest.fixture(name="http")
async def outbound_client() -> AsyncIterator[OutboundClient]:
    """An OutboundClient whose SSRF guard lets 127.0.0.1 through: how tests reach their servers."""
    async with outbound() as client:
        yield client
