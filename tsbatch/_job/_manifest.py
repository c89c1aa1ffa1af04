"""The manifest: what OUTPUT holds, rewritten whole after every part.

A part listed in the manifest is done and never redone; a part file not in it
is redone and replaced.  The fingerprint ties OUTPUT to its input files and
the settings that shape it, so a resume with other ones is refused.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from tsbatch._errors import JobInputError
from tsbatch._job._files import write_bytes
from tsbatch._job._settings import JobSettings

MANIFEST = "_manifest.json"
_FORMAT = 1


@dataclass
class Manifest:
    """What OUTPUT holds: the input's fingerprint, the settings, and the finished parts."""

    fingerprint: str
    input: str
    settings: dict[str, Any]
    total_rows: int
    parts: dict[str, dict[str, Any]] = field(default_factory=dict)
    format: int = _FORMAT
    #: One record per run that finished (a resume adds one): its wall time, model, what the breaker did.
    runs: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def load(cls, output: Path) -> Manifest | None:
        """The manifest in ``output``, or ``None`` when there is none."""
        try:
            data = json.loads((output / MANIFEST).read_text())
            return cls(**data)
        except FileNotFoundError:
            return None
        except (ValueError, TypeError) as exc:
            raise JobInputError(
                f"{output / MANIFEST} is damaged ({exc}); pass --overwrite to start over"
            ) from None

    def save(self, output: Path) -> None:
        write_bytes(output / MANIFEST, (json.dumps(asdict(self), indent=2) + "\n").encode())

    def rows_done(self) -> int:
        return sum(int(part["rows"]) for part in self.parts.values())

    def totals(self) -> dict[str, int]:
        """Rows ``ok``, ``error`` and ``skipped`` over the finished parts."""
        return {s: sum(int(p[s]) for p in self.parts.values()) for s in ("ok", "error", "skipped")}


def fingerprint(files: list[Path], schema: pa.Schema, settings: JobSettings) -> str:
    """A digest of the input files (path, size, modification time), schema and output settings."""
    digest = hashlib.sha256()
    for path in files:
        stat = path.stat()
        digest.update(f"{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    digest.update(schema.to_string().encode())
    digest.update(json.dumps(settings.identity(), sort_keys=True).encode())
    return digest.hexdigest()
