"""https:// media, only behind --allow-media-urls, with an SSRF guard.

The host is resolved once; every address it resolves to must be public (not private, loopback,
link-local, multicast, reserved or unspecified, IPv4-mapped forms included), and the connection
goes to that vetted address (TLS still checks the certificate against the host name), so a DNS
answer that changes between the check and the connection cannot point it inward. Redirects are
not followed. The body is bounded by max_media_bytes and the whole fetch by a deadline.
"""
from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import time
from typing import Callable, Sequence
from urllib.parse import urlsplit

from reranker.errors import ForbiddenPath, MediaError, PayloadTooLarge

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Sequence[str]]
CHUNK = 64 * 1024


def resolve_host(host: str, port: int) -> list[str]:
    """Every address the host resolves to (IPv4 and IPv6)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def is_public(address: IPAddress) -> bool:
    """True for a globally routable unicast address; IPv4-mapped IPv6 is judged as its IPv4."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return not (
        address.is_private or address.is_loopback or address.is_link_local or address.is_multicast
        or address.is_reserved or address.is_unspecified or not address.is_global
    )


class UrlFetcher:
    """Fetches one https:// URL into bytes under the guard and the limits."""

    def __init__(
        self,
        max_bytes: int,
        timeout_s: float = 10.0,
        resolve: Resolver = resolve_host,
        address_allowed: Callable[[IPAddress], bool] = is_public,
        tls: ssl.SSLContext | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_bytes = max_bytes
        self._timeout_s = timeout_s
        self._resolve = resolve
        self._allowed = address_allowed
        self._tls = tls or ssl.create_default_context()
        self._monotonic = monotonic

    def fetch(self, url: str, what: str) -> bytes:
        parts = urlsplit(url)
        if parts.scheme.lower() != "https":
            raise MediaError(f"{what}: only https:// URLs are fetched, got {parts.scheme!r}")
        if parts.username or parts.password:
            raise MediaError(f"{what}: URLs with credentials are refused")
        host = parts.hostname
        if not host:
            raise MediaError(f"{what}: URL {url!r} has no host")
        try:
            port = parts.port or 443
        except ValueError:
            raise MediaError(f"{what}: URL {url!r} has an invalid port") from None
        address = self._vetted_address(host, port, what)
        deadline = self._monotonic() + self._timeout_s
        connection = _PinnedHTTPSConnection(host, address, port, self._timeout_s, self._tls)
        try:
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            connection.request("GET", path, headers={"Accept": "image/*, video/*", "User-Agent": "reranker"})
            response = connection.getresponse()
            return self._read(response, url, what, deadline)
        except (OSError, http.client.HTTPException) as exc:
            raise MediaError(f"{what}: fetching {url!r} failed ({type(exc).__name__}: {exc})") from None
        finally:
            connection.close()

    def _vetted_address(self, host: str, port: int, what: str) -> str:
        try:
            addresses = [ipaddress.ip_address(a.split("%")[0]) for a in self._resolve(host, port)]
        except (OSError, ValueError) as exc:
            raise MediaError(f"{what}: cannot resolve host {host!r} ({exc})") from None
        if not addresses:
            raise MediaError(f"{what}: host {host!r} resolves to no address")
        refused = [a for a in addresses if not self._allowed(a)]
        if refused:
            raise ForbiddenPath(
                f"{what}: host {host!r} resolves to {refused[0]}, which is not a public address "
                "(private, loopback, link-local, multicast and reserved addresses are refused)"
            )
        return str(addresses[0])

    def _read(self, response: http.client.HTTPResponse, url: str, what: str, deadline: float) -> bytes:
        if response.status != 200:
            hint = " (redirects are not followed)" if 300 <= response.status < 400 else ""
            raise MediaError(f"{what}: {url!r} answered HTTP {response.status}{hint}")
        declared = response.getheader("Content-Length")
        if declared and declared.isdigit() and int(declared) > self._max_bytes:
            raise PayloadTooLarge(f"{what}: {url!r} declares {declared} bytes, over max_media_bytes={self._max_bytes}")
        chunks: list[bytes] = []
        size = 0
        while True:
            if self._monotonic() > deadline:
                raise MediaError(f"{what}: fetching {url!r} took longer than {self._timeout_s} s")
            chunk = response.read(CHUNK)
            if not chunk:
                break
            size += len(chunk)
            if size > self._max_bytes:
                raise PayloadTooLarge(f"{what}: {url!r} sent more than max_media_bytes={self._max_bytes} bytes")
            chunks.append(chunk)
        return b"".join(chunks)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to a vetted address; SNI and certificate checks use the URL's host name."""

    def __init__(self, host: str, address: str, port: int, timeout: float, context: ssl.SSLContext) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._address = address
        self._tls_context = context

    def connect(self) -> None:
        raw = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._tls_context.wrap_socket(raw, server_hostname=self.host)
