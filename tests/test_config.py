"""Settings from the environment and keyword arguments."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from tsbatch import (
    Auth,
    BreakerPolicy,
    ClientConfig,
    ConfigError,
    HealthPolicy,
    MockTransport,
    Reply,
    Request,
    RetryPolicy,
    TorchServeClient,
)
from tsbatch._auth import Tokens


def test_defaults_match_the_documented_ones() -> None:
    config = ClientConfig.from_env({})
    assert config.breaker == BreakerPolicy(failure_threshold=5, recovery_timeout=60)
    assert config.health == HealthPolicy(interval=30, timeout=5)
    assert (config.url, config.management_url, config.model) == (
        "http://127.0.0.1:8080",
        "http://127.0.0.1:8081",
        "demo",
    )
    assert config.retry.attempts == 3


def test_variables_are_read() -> None:
    config = ClientConfig.from_env(
        {
            "CIRCUIT_BREAKER_FAILURE_THRESHOLD": "7",
            "CIRCUIT_BREAKER_RECOVERY_TIMEOUT": "12.5",
            "HEALTH_CHECK_INTERVAL": "3",
            "HEALTH_CHECK_TIMEOUT": "1.5",
            "TORCHSERVE_URL": "https://ts.example:8443",
            "TORCHSERVE_MANAGEMENT_URL": "https://ts.example:8444",
            "TORCHSERVE_MODEL": "news",
            "RETRY_ATTEMPTS": "4",
            "TORCHSERVE_POOL_SIZE": "16",
            "TORCHSERVE_VERIFY_TLS": "false",
        }
    )
    assert config.breaker == BreakerPolicy(failure_threshold=7, recovery_timeout=12.5)
    assert config.health == HealthPolicy(interval=3, timeout=1.5)
    assert config.url == "https://ts.example:8443"
    assert config.model == "news"
    assert config.retry.attempts == 4
    assert config.pool_size == 16
    assert config.tls.verify is False


def test_keyword_arguments_override_the_environment() -> None:
    config = ClientConfig.from_env(
        {"TORCHSERVE_MODEL": "news"}, model="sports", retry=RetryPolicy(attempts=9)
    )
    assert (config.model, config.retry.attempts) == ("sports", 9)


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("CIRCUIT_BREAKER_FAILURE_THRESHOLD", "-1", "CIRCUIT_BREAKER_FAILURE_THRESHOLD must be >= 1"),
        (
            "CIRCUIT_BREAKER_FAILURE_THRESHOLD",
            "five",
            "CIRCUIT_BREAKER_FAILURE_THRESHOLD='five' is not an integer",
        ),
        ("CIRCUIT_BREAKER_RECOVERY_TIMEOUT", "-3", "CIRCUIT_BREAKER_RECOVERY_TIMEOUT must be >= 0"),
        ("HEALTH_CHECK_INTERVAL", "soon", "HEALTH_CHECK_INTERVAL='soon' is not a number"),
        ("HEALTH_CHECK_TIMEOUT", "0", "HEALTH_CHECK_TIMEOUT must be > 0"),
        ("RETRY_ATTEMPTS", "0", "RETRY_ATTEMPTS must be >= 1"),
        ("TORCHSERVE_URL", "localhost:8080", "TORCHSERVE_URL must be an http:// or https:// URL"),
        ("TORCHSERVE_MANAGEMENT_URL", "ftp://x", "TORCHSERVE_MANAGEMENT_URL must be an http:// or https://"),
        ("TORCHSERVE_REQUEST_TIMEOUT", "nan", "TORCHSERVE_REQUEST_TIMEOUT must be a number"),
        ("TORCHSERVE_VERIFY_TLS", "maybe", "TORCHSERVE_VERIFY_TLS='maybe' is not a boolean"),
        ("TORCHSERVE_CA_BUNDLE", "/no/such/ca.pem", "TORCHSERVE_CA_BUNDLE /no/such/ca.pem is not a file"),
    ],
)
def test_a_bad_value_names_the_variable(variable: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)) as caught:
        ClientConfig.from_env({variable: value})
    assert isinstance(caught.value, ValueError)


def test_keyword_values_are_checked_too() -> None:
    with pytest.raises(ConfigError, match=r"RetryPolicy\.attempts must be an integer"):
        RetryPolicy(attempts=2.5)  # type: ignore[arg-type]


def test_tokens_stay_out_of_reprs(tmp_path: Path) -> None:
    auth = Auth(inference_token="tok-inference-123", management_token="tok-management-456")
    config = ClientConfig.from_env({}, auth=auth)
    client = TorchServeClient(config=config, registry=CollectorRegistry())
    for text in (repr(auth), repr(config), repr(client), str(config)):
        assert "tok-inference-123" not in text and "tok-management-456" not in text


def test_an_unreadable_key_file_names_the_file_not_its_content(tmp_path: Path) -> None:
    key_file = tmp_path / "key_file.json"
    key_file.write_text('{"inference": "secret-but-broken"}')
    with pytest.raises(ConfigError, match=r"key_file\.json cannot be read") as caught:
        TorchServeClient(key_file=key_file, registry=CollectorRegistry())
    assert "secret-but-broken" not in str(caught.value)


def test_a_key_file_that_does_not_exist_yet_is_read_once_it_appears(tmp_path: Path) -> None:
    key_file = tmp_path / "key_file.json"  # TorchServe writes it when it starts
    tokens = Tokens(Auth(key_file=key_file))
    assert tokens.header("inference") == {}
    key_file.write_text(json.dumps({"inference": {"key": "abc"}, "management": {"key": "def"}}))
    tokens.reload()
    assert tokens.header("inference") == {"Authorization": "Bearer abc"}
    assert tokens.header("management") == {"Authorization": "Bearer def"}


def test_a_second_client_on_the_same_registry_shares_its_metrics() -> None:
    registry = CollectorRegistry()

    def healthy(request: Request) -> Reply:
        return Reply(200, body=b'{"status": "Healthy"}')

    async def scenario() -> None:
        for _ in range(2):  # a notebook cell run twice
            async with TorchServeClient(registry=registry, transport=MockTransport(healthy)) as client:
                assert (await client.health()).healthy

    asyncio.run(scenario())
    assert registry.get_sample_value("torchserve_requests_total", {"method": "health", "status": "200"}) == 2
    assert registry.get_sample_value("torchserve_circuit_breaker_state") == 0
