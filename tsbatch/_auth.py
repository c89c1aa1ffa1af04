"""Bearer tokens for TorchServe's inference and management APIs.

Tokens come from the settings (keyword argument or environment variable) or
from TorchServe's ``key_file.json``.  The key file is read again when the
server refuses a key, since TorchServe rotates keys every 60 minutes.  Tokens
never appear in reprs or messages.
"""

from __future__ import annotations

import json
import threading

from tsbatch._config import Auth
from tsbatch._errors import ConfigError


class Tokens:
    """The current inference and management tokens."""

    def __init__(self, auth: Auth) -> None:
        self._auth = auth
        self._lock = threading.Lock()
        self._inference = auth.inference_token
        self._management = auth.management_token
        if auth.key_file is not None:
            self._read_key_file()

    def __repr__(self) -> str:
        return f"Tokens(key_file={self._auth.key_file!r})"

    def _read_key_file(self) -> None:
        path = self._auth.key_file
        assert path is not None
        try:
            keys = json.loads(path.read_text())
            inference, management = keys["inference"]["key"], keys["management"]["key"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(
                f"TorchServe key file {path} cannot be read as key_file.json ({type(exc).__name__})"
            ) from None
        if self._auth.inference_token is None:
            self._inference = str(inference)
        if self._auth.management_token is None:
            self._management = str(management)

    def header(self, api: str) -> dict[str, str]:
        """The Authorization header for ``api`` (``"inference"`` or ``"management"``)."""
        token = self._inference if api == "inference" else self._management
        return {"Authorization": f"Bearer {token}"} if token else {}

    def reload(self) -> None:
        """Read the key file again (no-op without one)."""
        if self._auth.key_file is not None:
            with self._lock:
                self._read_key_file()
