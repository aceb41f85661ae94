"""What crosses between a site and the server: tensors as safetensors, metadata as JSON.

Nothing here unpickles: a hostile site can send bad bytes, never code. Every payload
is counted in a ``Ledger`` as it crosses.
"""

from __future__ import annotations

import hashlib
import json
import struct
from typing import Any

import attrs
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from synthlearn.errors import SynthlearnError

META_KEY = "synthlearn.meta"


@attrs.define(frozen=True, eq=False)
class Payload:
    """Named tensors plus JSON-able metadata: the only thing a site can send."""

    tensors: dict[str, torch.Tensor] = attrs.field(factory=dict)
    meta: dict[str, Any] = attrs.field(factory=dict)

    def to_bytes(self) -> bytes:
        """Serialise as one safetensors blob; the metadata rides in its JSON header."""
        tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in self.tensors.items()}
        return st_save(tensors, metadata={META_KEY: json.dumps(self.meta, sort_keys=True)})

    @classmethod
    def from_bytes(cls, data: bytes, source: str) -> Payload:
        """Parse bytes made by ``to_bytes``; any malformation is a ``SynthlearnError``
        naming ``source`` (a site, a file)."""
        try:
            (header_len,) = struct.unpack("<Q", data[:8])
            header = json.loads(data[8 : 8 + header_len])
            meta = json.loads(header.get("__metadata__", {}).get(META_KEY, "{}"))
            tensors = st_load(data)
        except Exception as exc:
            raise SynthlearnError(f"not a valid synthlearn payload ({type(exc).__name__}: "
                                  f"{exc})", where=source) from None
        if not isinstance(meta, dict):
            raise SynthlearnError("payload metadata is not a JSON object", where=source)
        return cls(tensors=tensors, meta=meta)

    def digest(self) -> str:
        """SHA-256 of the serialised payload."""
        return hashlib.sha256(self.to_bytes()).hexdigest()


def state_payload(model: torch.nn.Module, **meta: Any) -> Payload:
    """A model's weights (state dict) as a payload."""
    return Payload(dict(model.state_dict()), dict(meta))


def load_state(model: torch.nn.Module, payload: Payload, source: str) -> torch.nn.Module:
    """Load weights sent as a payload; a mismatch is an error naming ``source``."""
    try:
        model.load_state_dict(payload.tensors, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise SynthlearnError(f"weights do not fit the model: {first}", where=source) from None
    return model


@attrs.define
class Ledger:
    """Bytes that crossed for one arm, in both directions, per site."""

    bytes_to_server: int = 0
    bytes_to_sites: int = 0
    per_site: dict[int, dict[str, int]] = attrs.field(factory=dict)
    shared: list[str] = attrs.field(factory=list)
    cached_sites: int = 0

    def _site(self, site: int) -> dict[str, int]:
        return self.per_site.setdefault(site, {"bytes_to_server": 0, "bytes_to_sites": 0})

    def to_server(self, site: int, n: int) -> None:
        self.bytes_to_server += n
        self._site(site)["bytes_to_server"] += n

    def to_site(self, site: int, n: int) -> None:
        self.bytes_to_sites += n
        self._site(site)["bytes_to_sites"] += n

    def note_shared(self, what: str) -> None:
        if what not in self.shared:
            self.shared.append(what)
