"""`ssl: true`: every front serves HTTPS and WSS on the shared port, and only that."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.integration.harness import TIMEOUT, Cluster, PushyClient


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (as an IP subjectAltName, so hostname checks pass)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=TIMEOUT,
    )
    return cert, key


@pytest.fixture
def tls_cluster(tmp_path: Path) -> Iterator[tuple[Cluster, ssl.SSLContext]]:
    """A server with ssl on, and a client context that trusts its certificate only."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a self-signed certificate")
    cert, key = _self_signed(tmp_path)
    server = Cluster(tmp_path, ssl=True, sslCert=str(cert), sslKey=str(key))
    trust = ssl.create_default_context(cafile=str(cert))
    yield server, trust
    assert server.stop() == 0, "\n".join(server.log.lines[-30:])


async def test_https_and_wss(tls_cluster: tuple[Cluster, ssl.SSLContext]) -> None:
    cluster, trust = tls_cluster
    base = f"https://127.0.0.1:{cluster.port}"
    cluster.log.wait_for(rf"front \d/2 serving https://127.0.0.1:{cluster.port}", count=2)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=trust)) as http:
        async with http.get(f"{base}{cluster.prefix}/info") as response:
            assert response.status == 200
            info = await response.json()
        assert info["websocket"] is True
        assert info["origins"] == ["*:*"]

        # one client per front: the certificate is loaded by every front, not just one
        clients: dict[int, PushyClient] = {}
        for n in range(200):
            url = (f"wss://127.0.0.1:{cluster.port}{cluster.prefix}/000/"
                   f"t{n:07d}/websocket")
            client = await PushyClient.connect(url, http)  # asserts "o", then pushy:connect
            if client.front in clients:
                await client.close()
            else:
                clients[client.front] = client
            if len(clients) == cluster.fronts:
                break
        assert sorted(clients) == list(range(cluster.fronts))
        try:
            for client in clients.values():
                assert client.socket_id
                await client.subscribe("secure")
                await client.nothing_pending()
        finally:
            for client in clients.values():
                await client.close()


async def test_plain_http_is_refused(tls_cluster: tuple[Cluster, ssl.SSLContext]) -> None:
    cluster, _ = tls_cluster
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.ClientError):
            async with http.get(f"http://127.0.0.1:{cluster.port}{cluster.prefix}/info") as r:
                pytest.fail(f"plain HTTP answered {r.status}: {await r.text()}")


async def test_untrusted_certificate_is_not_silently_accepted(
    tls_cluster: tuple[Cluster, ssl.SSLContext]
) -> None:
    """The client check above means something: without trusting the cert, TLS fails."""
    cluster, _ = tls_cluster
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            async with http.get(f"https://127.0.0.1:{cluster.port}{cluster.prefix}/info") as r:
                pytest.fail(f"an untrusted certificate was accepted: {r.status}")
