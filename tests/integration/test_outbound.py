"""The SSRF guard: every way of writing a local or metadata address is refused; allowed hosts work."""

from __future__ import annotations

import pytest
from aiohttp import web

from services.shared.outbound import (
    BlockedAddressError,
    FetchLimits,
    OutboundClient,
    OutboundPolicy,
    ResponseTooLargeError,
)
from tests.http_server import serve


async def hello(_: web.Request) -> web.Response:
    return web.Response(text="hello")


REFUSED = [
    pytest.param("http://127.0.0.1:{port}/", id="loopback"),
    pytest.param("http://127.1:{port}/", id="loopback-short-form"),
    pytest.param("http://2130706433:{port}/", id="loopback-decimal"),
    pytest.param("http://0x7f000001:{port}/", id="loopback-hex"),
    pytest.param("http://0177.0.0.1:{port}/", id="loopback-octal"),
    pytest.param("http://[::1]:{port}/", id="ipv6-loopback"),
    pytest.param("http://[::ffff:127.0.0.1]:{port}/", id="ipv6-mapped-loopback"),
    pytest.param("http://[::ffff:7f00:1]:{port}/", id="ipv6-mapped-loopback-hex"),
    pytest.param("http://0.0.0.0:{port}/", id="unspecified"),
    pytest.param("http://169.254.169.254/latest/meta-data/", id="cloud-metadata"),
    pytest.param("http://[fd00:ec2::254]/latest/meta-data/", id="cloud-metadata-ipv6"),
    pytest.param("http://metadata.google.internal/computeMetadata/v1/", id="metadata-name"),
    pytest.param("http://localhost:{port}/", id="localhost"),
    pytest.param("http://app.localhost:{port}/", id="localhost-subdomain"),
    pytest.param("http://10.0.0.1/", id="private-10"),
    pytest.param("http://172.16.5.4/", id="private-172"),
    pytest.param("http://192.168.1.1/", id="private-192"),
    pytest.param("http://100.64.0.1/", id="carrier-grade-nat"),
    pytest.param("http://[fc00::1]/", id="ipv6-unique-local"),
    pytest.param("http://[fe80::1]/", id="ipv6-link-local"),
    pytest.param("http://kubernetes.default.svc.cluster.local/", id="cluster-name"),
    pytest.param("file:///etc/passwd", id="file-scheme"),
    pytest.param("gopher://127.0.0.1:70/", id="gopher-scheme"),
    pytest.param("ftp://example.com/feed.xml", id="ftp-scheme"),
]


@pytest.mark.parametrize("template", REFUSED)
async def test_local_and_metadata_addresses_are_refused(template: str) -> None:
    async with serve({("GET", "/"): hello}) as server, OutboundClient(OutboundPolicy()) as client:
        with pytest.raises(BlockedAddressError):
            await client.get(template.format(port=server.port))
        assert server.requests == []


async def test_an_explicitly_allowed_host_is_reached() -> None:
    async with serve({("GET", "/"): hello}) as server, OutboundClient(OutboundPolicy(("127.0.0.1",))) as client:
        response = await client.get(server.url("/"))
    assert (response.status, response.body) == (200, b"hello")


async def test_an_allowed_cidr_is_reached() -> None:
    async with serve({("GET", "/"): hello}) as server, OutboundClient(OutboundPolicy(("127.0.0.0/8",))) as client:
        response = await client.get(server.url("/"))
    assert response.status == 200


async def test_a_redirect_into_a_refused_address_is_refused() -> None:
    async def bounce(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"http://127.0.0.1:{request.url.port}/")

    async with (
        serve({("GET", "/"): hello, ("GET", "/bounce"): bounce}) as server,
        OutboundClient(OutboundPolicy(("localhost",))) as client,
    ):
        with pytest.raises(BlockedAddressError, match=r"127\.0\.0\.1"):
            await client.get(f"http://localhost:{server.port}/bounce")
    assert [r.path for r in server.requests] == ["/bounce"]


async def test_a_body_over_the_cap_is_not_read_to_the_end() -> None:
    async def big(_: web.Request) -> web.StreamResponse:
        return web.Response(body=b"x" * 50_000)

    policy = OutboundPolicy(("127.0.0.1",))
    async with (
        serve({("GET", "/big"): big}) as server,
        OutboundClient(policy, limits=FetchLimits(max_bytes=10_000)) as c,
    ):
        with pytest.raises(ResponseTooLargeError, match="10000-byte cap"):
            await c.get(server.url("/big"))


async def test_a_chunked_body_over_the_cap_is_cut_off() -> None:
    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for _ in range(50):
            await response.write(b"y" * 1000)
        await response.write_eof()
        return response

    policy = OutboundPolicy(("127.0.0.1",))
    async with (
        serve({("GET", "/s"): stream}) as server,
        OutboundClient(policy, limits=FetchLimits(max_bytes=10_000)) as c,
    ):
        with pytest.raises(ResponseTooLargeError, match="stopped reading"):
            await c.get(server.url("/s"))
