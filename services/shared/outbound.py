"""Outbound HTTP to user-configured URLs, with an SSRF guard on every connection.

The guard sits in the connection layer, not in front of the request. Each TCP connection,
including every redirect hop, resolves the host, refuses it if *any* address is loopback,
private, link-local, metadata, carrier-grade NAT, multicast or reserved (unless explicitly
allowed), and then connects to the address it checked. A DNS answer that changes between the
check and the connect (rebinding) therefore cannot reach the cluster. Only http and https are
spoken, redirects are bounded, and bodies are capped in size and time before anyone parses them.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

from services.shared import metric_catalogue as m
from services.shared.clock import Clock, system_clock
from services.shared.errors import PermanentError, TransientError
from services.shared.metrics import Metrics

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Names that mean "this machine" or "the cloud metadata service" whatever DNS says.
BLOCKED_NAMES = ("localhost", "localhost.localdomain", "metadata", "metadata.google.internal", "instance-data")
BLOCKED_SUFFIXES = (".localhost", ".internal", ".local", ".svc", ".cluster.local", ".localdomain")
# Beyond ipaddress's own flags: carrier-grade NAT, and the AWS IPv6 metadata address.
EXTRA_BLOCKED = (ipaddress.ip_network("100.64.0.0/10"), ipaddress.ip_network("fd00:ec2::/32"))
DEFAULT_USER_AGENT = "Clamor/0.1 (+https://github.com/clamor-mesh/clamor)"


class OutboundError(TransientError):
    """The request failed in a way worth retrying: network, timeout, 5xx, 429 (``retry_after_s``: the
    ``Retry-After`` the server sent, when it sent one)."""


class BlockedAddressError(PermanentError):
    """The URL leads somewhere the guard refuses (SSRF): the message says which address and why."""


class ResponseTooLargeError(PermanentError):
    """The body exceeded the configured cap; nothing of it was parsed."""


class HttpStatusError(PermanentError):
    """A 4xx answer other than 429: retrying the same request will not help."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class OutboundPolicy:
    """What may be reached. ``allow_hosts`` holds host names, IP addresses or CIDR blocks."""

    allow_hosts: tuple[str, ...] = ()

    def _allowed_networks(self) -> list[IPNetwork]:
        networks = []
        for entry in self.allow_hosts:
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                continue
        return networks

    def host_allowed(self, host: str) -> bool:
        return host.lower().rstrip(".") in {h.lower().rstrip(".") for h in self.allow_hosts}

    def check_name(self, host: str) -> None:
        """Refuse local, metadata and cluster names before they are even resolved."""
        if self.host_allowed(host):
            return
        name = host.lower().rstrip(".")
        if name in BLOCKED_NAMES or name.endswith(BLOCKED_SUFFIXES):
            raise BlockedAddressError(
                f"refusing {host}: a local, metadata or cluster host name (allow it with allow_hosts)"
            )

    def check(self, host: str, addresses: Iterable[IPAddress]) -> None:
        """Raise BlockedAddressError unless every address is public or explicitly allowed."""
        self.check_name(host)
        if self.host_allowed(host):
            return
        allowed = self._allowed_networks()
        for address in addresses:
            if any(address in network for network in allowed):
                continue
            reason = blocked_reason(address)
            if reason:
                raise BlockedAddressError(f"refusing {host}: it resolves to {address}, a {reason} address")


def blocked_reason(address: IPAddress) -> str:
    """Why an address may not be reached from a listener, or '' when it may."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour or (address.teredo[1] if address.teredo else None)
        if embedded is not None:
            return blocked_reason(embedded) or ""
    checks = (
        (address.is_loopback, "loopback"),
        (address.is_link_local, "link-local (cloud metadata)"),
        (address.is_private, "private"),
        (address.is_multicast, "multicast"),
        (address.is_unspecified, "unspecified"),
        (address.is_reserved, "reserved"),
        (any(address in network for network in EXTRA_BLOCKED), "carrier-grade NAT or metadata"),
    )
    return next((reason for flagged, reason in checks if flagged), "")


async def resolve(host: str, port: int) -> list[IPAddress]:
    try:
        literal = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    else:
        return [literal]
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise OutboundError(f"cannot resolve {host}: {exc.strerror}") from exc
    return list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))


class GuardedNetworkBackend(httpcore.AsyncNetworkBackend):
    """Resolves, checks, then connects to the checked address; SNI and Host still use the name."""

    def __init__(self, policy: OutboundPolicy, inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self._policy = policy
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's signature
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self._policy.check_name(host)
        addresses = await resolve(host, port)
        self._policy.check(host, addresses)
        last_error: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    str(address), port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last_error = exc
        raise httpcore.ConnectError(f"cannot connect to {host}:{port}: {last_error}")

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's signature
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise BlockedAddressError("unix sockets are never reachable through outbound HTTP")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _GuardedTransport(httpx.AsyncHTTPTransport):
    def __init__(self, policy: OutboundPolicy) -> None:
        super().__init__(trust_env=False, retries=0)
        # httpx builds its pool without a way to pass a network backend: rebuild it with the same
        # TLS context and ours. tests/integration/test_outbound.py fails loudly if httpx changes this.
        ssl_context = self._pool._ssl_context
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context, network_backend=GuardedNetworkBackend(policy), http1=True, http2=False
        )


@dataclass(frozen=True)
class FetchLimits:
    max_bytes: int = 5 * 1024 * 1024
    timeout_s: float = 20.0
    max_redirects: int = 5


@dataclass
class HttpResponse:
    url: str
    status: int
    headers: httpx.Headers
    body: bytes = b""
    elapsed_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    # When the answer came, by the client's clock: Retry-After dates and rate-limit resets count from it.
    received_at: datetime = field(default_factory=system_clock)

    @property
    def not_modified(self) -> bool:
        return self.status == 304

    def text(self) -> str:
        return self.body.decode(_charset(self.headers), errors="replace")


def redact(url: str) -> str:
    """The URL as errors may show it: scheme and host only. Webhook paths and queries hold credentials
    (Slack's path, Teams' ``sig=``, DingTalk's ``access_token``), and errors end up in logs."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid URL>"
    if not parts.scheme or not parts.netloc:
        return "<invalid URL>"
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    suffix = "/…" if (parts.path not in ("", "/") or parts.query) else ""
    return f"{parts.scheme}://{host}{port}{suffix}"


class RedirectRefusedError(PermanentError):
    """A redirect where the request said none may be followed (signed webhooks: 3xx is a failure)."""


def _charset(headers: httpx.Headers) -> str:
    content_type = str(headers.get("content-type", ""))
    for part in content_type.split(";")[1:]:
        key, _, value = part.strip().partition("=")
        if key.lower() == "charset" and value:
            return str(value.strip('"'))
    return "utf-8"


class OutboundClient:
    """The only way Clamor's services talk HTTP to user-configured URLs."""

    def __init__(
        self,
        policy: OutboundPolicy,
        *,
        limits: FetchLimits | None = None,
        user_agent: str = DEFAULT_USER_AGENT,
        clock: Clock = system_clock,
        metrics: Metrics | None = None,
    ) -> None:
        self.policy = policy
        # http.client.request.duration per request; the owner hands in its process's metrics.
        self.metrics = metrics or Metrics()
        # Public: adapters that need the time of a request (X's search window) read the client's clock.
        self.clock = clock
        self.limits = limits or FetchLimits()
        self._client = httpx.AsyncClient(
            transport=_GuardedTransport(policy),
            follow_redirects=True,
            max_redirects=self.limits.max_redirects,
            timeout=httpx.Timeout(self.limits.timeout_s),
            headers={"User-Agent": user_agent},
            trust_env=False,
        )

    async def __aenter__(self) -> OutboundClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str | int] | None = None,
        content: bytes | None = None,
        data: Mapping[str, str] | None = None,
        follow_redirects: bool = True,
    ) -> HttpResponse:
        """Send and read the body within the size and time caps; statuses are the caller's to judge.

        With ``follow_redirects=False`` a 3xx raises :class:`RedirectRefusedError` (signed webhooks).
        """
        scheme = url.split(":", 1)[0].lower()
        if scheme not in ("http", "https"):
            raise BlockedAddressError(f"refusing {redact(url)}: only http and https URLs are fetched")
        attributes: dict[str, str | int] = {m.HTTP_METHOD: method, m.SERVER_ADDRESS: _host(url)}
        started = time.monotonic()
        # The outer try measures (http.client.request.duration); the inner one names the failure.
        try:
            try:
                response = await asyncio.wait_for(
                    self._send(
                        method,
                        url,
                        headers=headers,
                        params=params,
                        content=content,
                        data=data,
                        started=started,
                        follow_redirects=follow_redirects,
                    ),
                    timeout=self.limits.timeout_s,
                )
            except TimeoutError as exc:
                raise OutboundError(
                    f"{method} {redact(url)}: no complete answer within {self.limits.timeout_s:.0f}s"
                ) from exc
            except httpx.TooManyRedirects as exc:
                raise OutboundError(f"{method} {redact(url)}: more than {self.limits.max_redirects} redirects") from exc
            except httpx.InvalidURL as exc:
                # e.g. octal or otherwise ambiguous IPv4 forms, which resolvers disagree about.
                raise BlockedAddressError(f"refusing {redact(url)}: not a valid URL ({exc})") from exc
            except httpx.UnsupportedProtocol as exc:
                raise BlockedAddressError(
                    f"{method} {redact(url)}: redirected to a scheme other than http or https"
                ) from exc
            except httpx.HTTPError as exc:
                raise OutboundError(f"{method} {redact(url)}: {type(exc).__name__}: {exc}") from exc
        except Exception as exc:
            attributes[m.ERROR_TYPE] = type(exc).__name__
            raise
        else:
            attributes[m.HTTP_STATUS] = response.status
            return response
        finally:
            self.metrics.record("http.client.request.duration", time.monotonic() - started, attributes)

    async def get(
        self, url: str, *, headers: Mapping[str, str] | None = None, params: Mapping[str, str | int] | None = None
    ) -> HttpResponse:
        return await self.request("GET", url, headers=headers, params=params)

    async def _send(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None,
        params: Mapping[str, str | int] | None,
        content: bytes | None,
        data: Mapping[str, str] | None,
        started: float,
        follow_redirects: bool,
    ) -> HttpResponse:
        request = self._client.build_request(method, url, headers=headers, params=params, content=content, data=data)
        response = await self._client.send(request, stream=True, follow_redirects=follow_redirects)
        if not follow_redirects and response.is_redirect:
            await response.aclose()
            raise RedirectRefusedError(f"{method} {redact(url)}: answered {response.status_code} with a redirect")
        try:
            declared = int(response.headers.get("content-length") or 0)
            if declared > self.limits.max_bytes:
                raise ResponseTooLargeError(
                    f"{method} {redact(url)}: body of {declared} bytes exceeds the {self.limits.max_bytes}-byte cap"
                )
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > self.limits.max_bytes:
                    raise ResponseTooLargeError(
                        f"{method} {redact(url)}: body exceeds the {self.limits.max_bytes}-byte cap; stopped reading"
                    )
                chunks.append(chunk)
        finally:
            await response.aclose()
        return HttpResponse(
            url=str(response.url),
            status=response.status_code,
            headers=response.headers,
            body=b"".join(chunks),
            elapsed_s=time.monotonic() - started,
            received_at=self.clock(),
        )


def _host(url: str) -> str:
    try:
        return urlsplit(url).hostname or ""
    except ValueError:
        return ""


def raise_for_status(response: HttpResponse, *, what: str, retry_after_s: float | None = None) -> None:
    """Turn an error status into the right error class: 429 and 5xx are transient, other 4xx permanent."""
    status = response.status
    if status < 400 or status == 304:
        return
    snippet = response.body[:200].decode("utf-8", errors="replace").replace("\n", " ")
    if status == 429 or status >= 500:
        raise OutboundError(f"{what}: HTTP {status}: {snippet}", retry_after_s=retry_after_s)
    raise HttpStatusError(f"{what}: HTTP {status}: {snippet}", status=status)
