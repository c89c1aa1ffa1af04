"""Where the server is, as keyword arguments on top of a :class:`~tsbatch.ClientConfig`."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from urllib.parse import urlsplit

from tsbatch._config import DEFAULT_MANAGEMENT_URL, ClientConfig
from tsbatch._policies import check_url


def with_connection(
    config: ClientConfig | None,
    *,
    url: str | None = None,
    management_url: str | None = None,
    model: str | None = None,
    inference_token: str | None = None,
    management_token: str | None = None,
    key_file: Path | str | None = None,
) -> ClientConfig:
    """``config`` (default: from the environment) with the connection settings given applied.

    ``url`` alone moves the management API along with it, to the next port on
    the same host (TorchServe's layout, 8080 and 8081), unless a management
    URL other than the default was set.  ``key_file`` replaces tokens from the
    environment; a token given here wins over both.
    """
    config = config or ClientConfig.from_env()
    auth = config.auth
    if key_file is not None:
        auth = dataclasses.replace(auth, key_file=key_file, inference_token=None, management_token=None)
    auth = dataclasses.replace(
        auth,
        inference_token=inference_token or auth.inference_token,
        management_token=management_token or auth.management_token,
    )
    if url and not management_url and config.management_url == DEFAULT_MANAGEMENT_URL:
        management_url = _next_port(url)
    return dataclasses.replace(
        config,
        url=url or config.url,
        management_url=management_url or config.management_url,
        model=model or config.model,
        auth=auth,
    )


def _next_port(url: str) -> str | None:
    """``url``'s scheme and host with the port after its own, or ``None`` when it names no port."""
    check_url("url", url)
    parts = urlsplit(url)
    if parts.port is None:
        return None
    host = parts.netloc.rsplit(":", 1)[0]
    return f"{parts.scheme}://{host}:{parts.port + 1}"
