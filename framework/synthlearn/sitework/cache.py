"""Site outputs cached on disk by a hash of everything that produced them.

A re-run, a run killed half way, or a second arm needing the same site work finds the
finished payloads here instead of recomputing them. The cache is never trusted blindly:
each entry is two files, the payload exactly as the site sent it
(``<key>.safetensors``) and a record of it (``<key>.json``: the key it was stored under
and the SHA-256 of the payload bytes). An entry is used only when its record names the
key asked for, its bytes match the digest, it parses as a payload and every float
tensor in it is finite; anything else (flipped bytes, one site's entry copied over
another's, an entry from an older synthlearn without a record, a diverged result) is
deleted and recomputed, with a warning naming the file and the reason. Files are
written atomically and a failed write leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from contextlib import suppress
from pathlib import Path
from typing import Any

import torch

from synthlearn import notices
from synthlearn.errors import SynthlearnError
from synthlearn.sitework.exchange import Payload

RECORD_FORMAT = 1


def cache_key(parts: dict[str, Any]) -> str:
    """SHA-256 of the JSON form of ``parts`` (keys sorted)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def non_finite_tensors(payload: Payload) -> list[str]:
    """Names of the payload's floating-point tensors that hold NaN or an infinity."""
    return sorted(name for name, t in payload.tensors.items()
                  if (t.is_floating_point() or t.is_complex())
                  and not bool(torch.isfinite(t).all()))


class _BadEntry(Exception):
    """Why a cache entry cannot be used (the text completes "cache entry ...")."""


class SiteCache:
    """A directory of verified payload entries, ``<key[:2]>/<key>.safetensors`` each
    with its record ``<key>.json``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.safetensors"

    def _record_path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def check_usable(self) -> None:
        """Make sure entries can be written here, before any work starts: the directory
        is created if missing; a path that is a file, lies under a file, or is not
        writable is a ``SynthlearnError`` naming it."""
        where = str(self.root)
        if self.root.exists() and not self.root.is_dir():
            raise SynthlearnError("output.cache names a file, not a directory; point it at "
                                  "a directory (or set it to null)", where=where)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SynthlearnError(f"cannot create the site-output cache directory "
                                  f"(output.cache): {exc.strerror or exc}", where=where) from None
        try:
            fd, probe = tempfile.mkstemp(dir=self.root, prefix=".probe-")
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise SynthlearnError(f"the site-output cache directory (output.cache) is not "
                                  f"writable: {exc.strerror or exc}", where=where) from None

    def get(self, key: str) -> bytes | None:
        """The payload bytes stored under ``key``, or None when there is no usable entry
        (a bad one is deleted, with a warning saying why)."""
        path = self._path(key)
        try:
            data = path.read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            notices.warn(f"cache entry cannot be read ({exc.strerror or exc}); recomputing",
                         where=str(path))
            return None
        try:
            self._verify(key, data)
        except _BadEntry as why:
            self._discard(key)
            notices.warn(f"cache entry {why}; recomputing", where=str(path))
            return None
        return data

    def _verify(self, key: str, data: bytes) -> None:
        """Raise ``_BadEntry`` unless ``data`` is the intact, finite entry for ``key``."""
        try:
            record = json.loads(self._record_path(key).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise _BadEntry("has no digest record (written by an older synthlearn, or "
                            "copied in)") from None
        except (OSError, ValueError):
            raise _BadEntry("has an unreadable digest record") from None
        if not isinstance(record, dict) or not isinstance(record.get("sha256"), str):
            raise _BadEntry("has an unreadable digest record")
        if record.get("key") != key:
            raise _BadEntry("was stored under another key (copied from another entry)")
        if hashlib.sha256(data).hexdigest() != record["sha256"]:
            raise _BadEntry("does not match its digest")
        try:
            payload = Payload.from_bytes(data, "cache entry")
        except SynthlearnError:
            raise _BadEntry("is not a valid payload") from None
        bad = non_finite_tensors(payload)
        if bad:
            raise _BadEntry(f"holds non-finite values (NaN or inf) in {bad[0]}")

    def _discard(self, key: str) -> None:
        for path in (self._path(key), self._record_path(key)):
            with suppress(OSError):
                path.unlink(missing_ok=True)

    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` (a payload's bytes) under ``key`` with its record.

        A payload holding NaN or an infinity (a diverged result) is not stored, with a
        warning; bytes that are not a payload are not stored either (whoever made them
        reports that). A failed write (a full disk) removes what it had written and
        raises ``SynthlearnError``."""
        path = self._path(key)
        try:
            payload = Payload.from_bytes(data, "site output")
        except SynthlearnError:
            return
        bad = non_finite_tensors(payload)
        if bad:
            notices.warn(f"site output not cached: it holds non-finite values (NaN or inf) "
                         f"in {bad[0]}", where=str(path))
            return
        record = json.dumps({"format": RECORD_FORMAT, "key": key, "bytes": len(data),
                             "sha256": hashlib.sha256(data).hexdigest()}).encode()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # the record first: a kill between the two leaves a record without its
            # payload, which reads as a plain miss
            self._write_atomically(self._record_path(key), record)
            try:
                self._write_atomically(path, data)
            except BaseException:
                self._discard(key)
                raise
        except OSError as exc:
            raise SynthlearnError(f"cannot write the site-output cache: "
                                  f"{exc.strerror or exc} (the partial entry was removed)",
                                  where=str(self.root)) from None

    @staticmethod
    def _write_atomically(path: Path, data: bytes) -> None:
        """Write ``data`` to ``path`` through a temporary file in the same directory,
        which is removed on any failure."""
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".part")
        try:
            try:
                handle = os.fdopen(fd, "wb")
            except BaseException:
                os.close(fd)
                raise
            with handle:
                handle.write(data)
            os.replace(tmp, path)
        except BaseException:
            with suppress(OSError):
                os.unlink(tmp)
            raise
