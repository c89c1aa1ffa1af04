"""https:// with a custom CA bundle, or with verification explicitly off."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pandas as pd
import pytest
import trustme
from prometheus_client import CollectorRegistry

from tests.scripted_server import ScriptedServer, prediction
from tsbatch import ClientConfig, RetryPolicy, TLSConfig, TorchServeClient, TorchServeConnectionError


@pytest.fixture(scope="module")
def authority() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def server_context(authority: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(context)
    return context


def predict_over_tls(server_context: ssl.SSLContext, tls: TLSConfig) -> str:
    async def scenario() -> str:
        async with ScriptedServer([prediction("net")], ssl_context=server_context) as server:
            config = ClientConfig(
                url=server.url, management_url=server.url, tls=tls, retry=RetryPolicy(attempts=1)
            )
            async with TorchServeClient(config=config, registry=CollectorRegistry()) as client:
                return (await client.predict("a web server")).prediction.label

    return asyncio.run(scenario())


def test_a_custom_ca_bundle_is_trusted(
    authority: trustme.CA, server_context: ssl.SSLContext, tmp_path: Path
) -> None:
    bundle = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(bundle))
    assert predict_over_tls(server_context, TLSConfig(ca_bundle=bundle)) == "net"


def test_an_unknown_certificate_is_refused(server_context: ssl.SSLContext) -> None:
    with pytest.raises(TorchServeConnectionError, match="certificate is not trusted") as caught:
        predict_over_tls(server_context, TLSConfig())
    assert caught.value.kind == "tls"


def test_an_untrusted_certificate_stops_a_run_at_once_and_opens_no_breaker(
    server_context: ssl.SSLContext,
) -> None:
    frame = pd.DataFrame({"text": [f"text {i}" for i in range(200)]})

    async def scenario() -> tuple[ScriptedServer, str]:
        async with ScriptedServer([prediction("net")], ssl_context=server_context) as server:
            config = ClientConfig(url=server.url, management_url=server.url)
            async with TorchServeClient(config=config, registry=CollectorRegistry()) as client:
                for _ in range(2):  # the second run meets no breaker left open by the first
                    with pytest.raises(TorchServeConnectionError, match="certificate is not trusted"):
                        await frame.ts.aclassify("text", client=client, progress=False)
                return server, client.breaker_state

    server, breaker = asyncio.run(scenario())
    assert breaker == "closed"
    assert server.requests == []  # the TLS handshake failed: no request got through


def test_verification_can_be_turned_off_explicitly(server_context: ssl.SSLContext) -> None:
    assert predict_over_tls(server_context, TLSConfig(verify=False)) == "net"
