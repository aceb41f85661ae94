"""Site outputs cached on disk by a hash of everything that produced them.

A re-run, a run killed half way, or a second arm needing the same site work finds the
finished payloads here instead of recomputing them. Files are written atomically, so a
kill never leaves a truncated entry; a corrupt entry is discarded and recomputed.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from synthlearn.errors import SynthlearnError
from synthlearn.exchange import Payload


def cache_key(parts: dict[str, Any]) -> str:
    """SHA-256 of the JSON form of ``parts`` (keys sorted)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class SiteCache:
    """A directory of ``<key>.safetensors`` payload blobs."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.safetensors"

    def get(self, key: str) -> bytes | None:
        path = self._path(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            Payload.from_bytes(data, str(path))
        except SynthlearnError:
            path.unlink(missing_ok=True)
            return None
        return data

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".part")
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        except OSError as exc:
            raise SynthlearnError(f"cannot write the site-output cache: {exc.strerror}",
                                  where=str(self.root)) from None
