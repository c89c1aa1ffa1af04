"""Bearer tokens for TorchServe's inference and management APIs.

Tokens come from the settings (keyword argument or environment variable) or
from TorchServe's ``key_file.json``.  The key file is read again when the
server refuses a key, since TorchServe rotates keys every 60 minutes.  A key
file that does not exist yet (TorchServe writes it when it starts) is looked
for again, at most once a second, until it appears: a run started while the
server is down waits for it like for any outage.  Tokens never appear in
reprs or messages.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

from tsbatch._errors import ConfigError
from tsbatch._policies import Auth

logger = logging.getLogger("tsbatch")

#: Seconds between looks for a key file that does not exist yet.
_LOOK_AGAIN = 1.0


class Tokens:
    """The current inference and management tokens."""

    def __init__(self, auth: Auth) -> None:
        self._auth = auth
        self._lock = threading.Lock()
        self._inference = auth.inference_token
        self._management = auth.management_token
        self._missing = False
        self._looked_at = 0.0
        if auth.key_file is not None:
            try:
                self._read_key_file()
            except FileNotFoundError:
                logger.warning("TorchServe key file %s does not exist yet; waiting for it", auth.key_file)
                self._missing, self._looked_at = True, time.monotonic()
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise ConfigError(
                    f"TorchServe key file {auth.key_file} cannot be read as key_file.json "
                    f"({type(exc).__name__})"
                ) from None

    def __repr__(self) -> str:
        return f"Tokens(key_file={self._auth.key_file!r})"

    def _read_key_file(self) -> None:
        path = self._auth.key_file
        assert path is not None
        keys = json.loads(Path(path).read_text())
        inference, management = keys["inference"]["key"], keys["management"]["key"]
        if self._auth.inference_token is None:
            self._inference = str(inference)
        if self._auth.management_token is None:
            self._management = str(management)
        self._missing = False

    def header(self, api: str) -> dict[str, str]:
        """The Authorization header for ``api`` (``"inference"`` or ``"management"``)."""
        if self._missing and time.monotonic() - self._looked_at >= _LOOK_AGAIN:
            self._looked_at = time.monotonic()
            self.reload()
        token = self._inference if api == "inference" else self._management
        return {"Authorization": f"Bearer {token}"} if token else {}

    def reload(self) -> None:
        """Read the key file again (no-op without one); a file that cannot be read leaves the
        tokens as they were, so that the server's refusal says what is wrong."""
        if self._auth.key_file is not None:
            with self._lock:
                try:
                    self._read_key_file()
                except (OSError, ValueError, KeyError, TypeError) as exc:
                    logger.info(
                        "TorchServe key file %s not read (%s)", self._auth.key_file, type(exc).__name__
                    )
