"""https:// media behind --allow-media-urls: the SSRF guard refuses inward addresses before any
connection, and the fetch is bounded in size and time. No test needs the internet: inward
addresses are refused before connecting, and the fetching path runs against a local TLS server
that only a test-only address rule lets through."""
from __future__ import annotations

import datetime
import ipaddress
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest

from reranker.errors import ForbiddenPath, MediaError, PayloadTooLarge
from reranker.media import MediaResolver
from reranker.media.urls import UrlFetcher, is_public
from reranker.settings import Limits
from tests.conftest import IMAGES

PNG = (IMAGES / "chelsea.jpg").read_bytes()


class _Handler(BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        type(self).hits.append(self.path)
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "https://127.0.0.1/")
            self.end_headers()
            return
        body = PNG * (40 if self.path == "/big" else 1)
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        if self.path != "/big":
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that refused our certificate is what some tests expect


def _self_signed(folder: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "media.test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("media.test")]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """An HTTPS server on 127.0.0.1 with a certificate for 'media.test'."""
    cert, key = _self_signed(tmp_path_factory.mktemp("tls"))
    server = _QuietServer(("127.0.0.1", 0), _Handler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], cert
    server.shutdown()
    server.server_close()


INWARD = ["127.0.0.1", "10.1.2.3", "172.16.0.5", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0",
          "224.0.0.1", "240.0.0.1", "::1", "fe80::1", "fd00::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "ff02::1"]


@pytest.mark.parametrize("address", INWARD)
def test_inward_addresses_are_not_public(address: str) -> None:
    assert not is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:4700::6810:85e5", "8.8.8.8"])
def test_public_addresses_are_public(address: str) -> None:
    assert is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", INWARD)
def test_a_host_resolving_inward_is_refused_before_connecting(address: str) -> None:
    fetcher = UrlFetcher(max_bytes=10_000, resolve=lambda host, port: [address])
    with pytest.raises(ForbiddenPath, match="not a public address"):
        fetcher.fetch("https://images.example.com/cat.jpg", "documents[0].image")


def test_one_inward_address_among_public_ones_is_refused() -> None:
    fetcher = UrlFetcher(max_bytes=10_000, resolve=lambda host, port: ["93.184.216.34", "10.0.0.7"])
    with pytest.raises(ForbiddenPath, match="10.0.0.7"):
        fetcher.fetch("https://rebind.example.com/a.png", "query.image")


def test_a_real_local_server_is_refused_and_never_contacted(tls_server: tuple[int, Path]) -> None:
    """The real resolver, a real listening server on 127.0.0.1: refused, and the server saw nothing."""
    port, _ = tls_server
    _Handler.hits.clear()
    fetcher = UrlFetcher(max_bytes=10_000_000)
    for url in (f"https://127.0.0.1:{port}/cat.jpg", f"https://localhost:{port}/cat.jpg",
                f"https://[::ffff:127.0.0.1]:{port}/cat.jpg"):
        with pytest.raises(ForbiddenPath):
            fetcher.fetch(url, "documents[0].image")
    assert _Handler.hits == []


@pytest.mark.parametrize("url, words", [
    ("http://example.com/a.png", "only https"),
    ("ftp://example.com/a.png", "only https"),
    ("https://user:pw@example.com/a.png", "credentials"),
    ("https:///a.png", "no host"),
])
def test_malformed_urls_are_refused(url: str, words: str) -> None:
    with pytest.raises(MediaError, match=words):
        UrlFetcher(max_bytes=100, resolve=lambda h, p: ["93.184.216.34"]).fetch(url, "x")


def _through_guard(cert: Path, max_bytes: int = 10_000_000, timeout_s: float = 10.0) -> UrlFetcher:
    """A fetcher whose test-only address rule admits 127.0.0.1 and whose TLS trusts the test cert."""
    return UrlFetcher(max_bytes=max_bytes, timeout_s=timeout_s, resolve=lambda host, port: ["127.0.0.1"],
                      address_allowed=lambda a: str(a) == "127.0.0.1", tls=ssl.create_default_context(cafile=cert))


def test_fetches_over_tls_to_the_vetted_address(tls_server: tuple[int, Path]) -> None:
    port, cert = tls_server
    assert _through_guard(cert).fetch(f"https://media.test:{port}/cat.jpg", "x") == PNG


def test_certificate_is_checked_against_the_host_name(tls_server: tuple[int, Path]) -> None:
    port, cert = tls_server
    with pytest.raises(MediaError, match="fetching"):
        _through_guard(cert).fetch(f"https://other.test:{port}/cat.jpg", "x")


def test_size_limit_declared_and_streamed(tls_server: tuple[int, Path]) -> None:
    port, cert = tls_server
    with pytest.raises(PayloadTooLarge, match="declares"):
        _through_guard(cert, max_bytes=100).fetch(f"https://media.test:{port}/cat.jpg", "x")
    with pytest.raises(PayloadTooLarge, match="more than"):
        _through_guard(cert, max_bytes=len(PNG) * 2).fetch(f"https://media.test:{port}/big", "x")


def test_redirects_are_not_followed(tls_server: tuple[int, Path]) -> None:
    port, cert = tls_server
    with pytest.raises(MediaError, match="redirects are not followed"):
        _through_guard(cert).fetch(f"https://media.test:{port}/redirect", "x")


def test_resolver_uses_urls_only_with_a_fetcher(tls_server: tuple[int, Path]) -> None:
    port, cert = tls_server
    limits = Limits()
    with pytest.raises(MediaError, match="--allow-media-urls"):
        MediaResolver((), limits).read(f"https://media.test:{port}/cat.jpg", "x")
    assert MediaResolver((), limits, _through_guard(cert)).read(f"https://media.test:{port}/cat.jpg", "x") == PNG


def test_the_flag_and_its_variable() -> None:
    from reranker.settings import settings_from

    assert settings_from([], {}).allow_media_urls is False
    assert settings_from(["--allow-media-urls"], {}).allow_media_urls is True
    assert settings_from([], {"RERANKER_ALLOW_MEDIA_URLS": "1"}).allow_media_urls is True
