"""What crosses between a site and the server: tensors as safetensors, metadata as JSON.

Nothing here unpickles: a hostile site can send bad bytes, never code. Every payload
is counted in a ``Ledger`` as it crosses.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from collections.abc import Mapping
from typing import Any

import attrs
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from synthlearn.errors import SynthlearnError

META_KEY = "synthlearn.meta"

#: Bytes of the little-endian header length that starts a safetensors blob.
HEADER_PREFIX = 8

#: Largest JSON header accepted (safetensors' own limit).
MAX_HEADER = 100_000_000

#: Tensor dtypes a payload may hold (safetensors names). Complex, float8 and unsigned
#: types wider than a byte are refused: nothing synthlearn sends uses them.
ALLOWED_DTYPES: dict[str, int] = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8,
                                  "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}


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
        naming ``source`` (a site, a file).

        The header is checked before anything is built from it: its declared length
        against the bytes present, its JSON (an object, no repeated names), every
        tensor's dtype (``ALLOWED_DTYPES``), shape and byte range, and the synthlearn
        metadata (a JSON object). No size read from the header is allocated unchecked.
        """
        header = _read_header(data, source)
        meta = _read_meta(header.pop("__metadata__", None), source)
        body = len(data) - HEADER_PREFIX - _header_length(data)
        for name, entry in header.items():
            _check_entry(name, entry, body, source)
        try:
            tensors = st_load(data)
        except Exception as exc:  # safetensors' own checks (overlapping or uncovered bytes)
            raise SynthlearnError(f"not a valid synthlearn payload ({type(exc).__name__}: "
                                  f"{_one_line(exc)})", where=source) from None
        return cls(tensors=tensors, meta=meta)

    def digest(self) -> str:
        """SHA-256 of the serialised payload."""
        return hashlib.sha256(self.to_bytes()).hexdigest()


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _header_length(data: bytes) -> int:
    return int(struct.unpack("<Q", data[:HEADER_PREFIX])[0])


def _no_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"name {key!r} appears twice")
        out[key] = value
    return out


def _json(text: bytes | str, what: str, source: str) -> Any:
    """Parse JSON that must not repeat a name; errors say ``what`` was malformed."""
    try:
        return json.loads(text, object_pairs_hook=_no_repeats)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise SynthlearnError(f"not a valid synthlearn payload: {what} is not valid JSON "
                              f"({_one_line(exc)})", where=source) from None


def _read_header(data: bytes, source: str) -> dict[str, Any]:
    """The safetensors JSON header, its declared length checked against ``data``."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise SynthlearnError(f"not a valid synthlearn payload: got {type(data).__name__}, "
                              "not bytes", where=source)
    if len(data) < HEADER_PREFIX:
        raise SynthlearnError(f"not a valid synthlearn payload: {len(data)} bytes, shorter "
                              f"than the {HEADER_PREFIX}-byte header length", where=source)
    length = _header_length(data)
    rest = len(data) - HEADER_PREFIX
    if length > rest or length > MAX_HEADER:
        raise SynthlearnError(f"not a valid synthlearn payload: the header declares {length} "
                              f"bytes, but {rest} follow (at most {MAX_HEADER} allowed)",
                              where=source)
    header = _json(bytes(data[HEADER_PREFIX:HEADER_PREFIX + length]), "the header", source)
    if not isinstance(header, dict):
        raise SynthlearnError("not a valid synthlearn payload: the header is not a JSON "
                              "object", where=source)
    return header


def _read_meta(metadata: Any, source: str) -> dict[str, Any]:
    """synthlearn's metadata from the header's ``__metadata__`` (``{}`` when absent)."""
    if metadata is None:
        return {}
    if not isinstance(metadata, dict) or not all(
            isinstance(v, str) for v in metadata.values()):
        raise SynthlearnError("not a valid synthlearn payload: the header's __metadata__ "
                              "is not an object of strings", where=source)
    if META_KEY not in metadata:
        return {}
    meta = _json(metadata[META_KEY], "the metadata", source)
    if not isinstance(meta, dict):
        raise SynthlearnError("payload metadata is not a JSON object", where=source)
    return meta


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_entry(name: str, entry: Any, body: int, source: str) -> None:
    """One tensor's header entry: an allowed dtype, a shape of non-negative integers and
    a byte range inside the ``body`` that holds exactly that many elements."""
    def fail(problem: str) -> SynthlearnError:
        return SynthlearnError(f"not a valid synthlearn payload: tensor {name!r} {problem}",
                               where=source)

    if not isinstance(entry, dict):
        raise fail("has no dtype, shape and data_offsets")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if dtype not in ALLOWED_DTYPES:
        raise fail(f"has dtype {dtype!r}; allowed: {', '.join(ALLOWED_DTYPES)}")
    if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
        raise fail(f"has shape {shape!r}, not a list of non-negative integers")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(map(_is_count, offsets))
            and offsets[0] <= offsets[1] <= body):
        raise fail(f"has data_offsets {offsets!r}, not [begin, end] within the {body} "
                   "data bytes")
    size = ALLOWED_DTYPES[dtype] * math.prod(shape)
    if size != offsets[1] - offsets[0]:
        raise fail(f"of dtype {dtype} and shape {shape} needs {size} bytes, its range holds "
                   f"{offsets[1] - offsets[0]}")


def state_payload(model: torch.nn.Module, **meta: Any) -> Payload:
    """A model's weights (state dict) as a payload."""
    return Payload(dict(model.state_dict()), dict(meta))


def check_layout(layout: Mapping[str, torch.Tensor], tensors: Mapping[str, torch.Tensor],
                 source: str) -> None:
    """Received ``tensors`` hold exactly the names of ``layout`` (a network's state dict,
    best built on torch's ``meta`` device, which allocates nothing), each with its shape
    and dtype; else a one-line error naming ``source``. A generator's ``load`` calls it
    with the layout its metadata describes before building anything."""
    missing = sorted(set(layout) - set(tensors))
    extra = sorted(set(tensors) - set(layout))
    if missing or extra:
        what = f"no tensor {missing[0]!r}" if missing else f"unexpected tensor {extra[0]!r}"
        count = len(missing) + len(extra)
        raise SynthlearnError(f"weights do not fit the metadata: {what}"
                              + (f" ({count} names differ)" if count > 1 else ""),
                              where=source)
    for name, want in layout.items():
        got = tensors[name]
        if got.shape != want.shape or got.dtype != want.dtype:
            raise SynthlearnError(f"weights do not fit the metadata: {name!r} is {got.dtype} "
                                  f"{tuple(got.shape)}, expected {want.dtype} "
                                  f"{tuple(want.shape)}", where=source)


def load_state(model: torch.nn.Module, payload: Payload, source: str) -> torch.nn.Module:
    """Load weights sent as a payload; a mismatch (names, shapes, dtypes) or a non-finite
    value is an error naming ``source``. ``load_state_dict`` alone would silently cast
    a float16 or bool tensor into a float32 weight."""
    expected = model.state_dict()
    for name, tensor in payload.tensors.items():
        want = expected.get(name)
        if want is not None and tensor.dtype != want.dtype:
            raise SynthlearnError(f"weights do not fit the model: {name!r} is {tensor.dtype}, "
                                  f"the model's is {want.dtype}", where=source)
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise SynthlearnError(f"weight {name!r} holds NaN or infinite values",
                                  where=source)
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
