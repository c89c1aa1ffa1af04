"""Helpers for tests that run jobs against a server: environment, waiting, progress."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING

from tsbatch import Auth, ClientConfig

if TYPE_CHECKING:
    from tsbatch._serve import local


def server_config(server: local.LocalServer) -> ClientConfig:
    """A client config for ``server``: its URLs and its key file."""
    return ClientConfig(
        url=server.inference_url, management_url=server.management_url, auth=Auth(key_file=server.key_file)
    )


def server_env(server: local.LocalServer) -> dict[str, str]:
    env = {
        **os.environ,
        "TORCHSERVE_URL": server.inference_url,
        "TORCHSERVE_MANAGEMENT_URL": server.management_url,
        "TSBATCH_PROGRESS": "0",
    }
    if server.key_file is not None:
        env["TORCHSERVE_KEY_FILE"] = str(server.key_file)
    return env


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def parts_done(output: Path) -> int:
    try:
        return len(json.loads((output / "_manifest.json").read_text())["parts"])
    except (OSError, ValueError):
        return 0
