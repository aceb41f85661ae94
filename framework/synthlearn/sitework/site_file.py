"""One site's data as a file of its own: what a hospital's node reads, and nothing else.

``synthlearn sites export recipe.yaml --out DIR`` writes each site of a recipe's
partition to ``DIR/site-<id>.safetensors`` (images uint8 (N, C, H, W), labels int64,
one float32 tensor per phenotype attribute, and JSON metadata: the site id, the
dataset's classes and attributes, the recipe and seed it came from, and a fingerprint of
the data) plus ``DIR/sites.json``, a manifest with every file's size and SHA-256. A
deployed node is started with its own file only, so the same experiment runs in
deployment on exactly the data the simulation partitioned.

``read_site_file`` checks everything before use: a safetensors payload
(``Payload.from_bytes``: no pickle, every declared size checked against the bytes
present), the format and version, each tensor's dtype and shape against the metadata,
labels within the classes, finite attributes, and the fingerprint recomputed from the
data. A problem is one ``DataError`` naming the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch

from synthlearn.data.types import AttributeInfo, Dataset, ImageData
from synthlearn.errors import DataError, SynthlearnError
from synthlearn.sitework.exchange import Payload
from synthlearn.sitework.sites import Site

FORMAT = "synthlearn-site"
VERSION = 1
MANIFEST = "sites.json"
_ATTRIBUTE_KINDS = ("continuous", "binary", "categorical")


@attrs.define(frozen=True)
class SiteFile:
    """A site read from its file: the site (id and data) and the dataset facts it carries
    (classes, attributes, image shape), with the recipe and seed it was exported from."""

    site: Site
    class_names: tuple[str, ...]
    attributes: tuple[AttributeInfo, ...]
    recipe: str
    seed: int

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def site_file_name(site_id: int) -> str:
    return f"site-{site_id}.safetensors"


def site_payload(site: Site, class_names: Sequence[str],
                 attributes: Sequence[AttributeInfo], recipe: str, seed: int) -> Payload:
    """A site's data and the facts a node needs (the dataset's class names and the
    phenotype attributes the site's images carry), as one payload (``read_site_file``'s
    inverse)."""
    data = site.data
    tensors = {"images": torch.from_numpy(np.ascontiguousarray(data.images)),
               "labels": torch.from_numpy(data.labels.astype(np.int64))}
    for name, values in data.attributes.items():
        tensors[f"attribute.{name}"] = torch.from_numpy(values.astype(np.float32))
    meta = {
        "format": FORMAT, "version": VERSION, "site": site.id, "n": len(data),
        "image_shape": [int(d) for d in data.images.shape[1:]],
        "class_names": list(class_names),
        "attributes": [attrs.asdict(a) for a in attributes if a.name in data.attributes],
        "recipe": recipe, "seed": seed, "fingerprint": data.fingerprint(),
    }
    return Payload(tensors, meta)


def export_sites(sites: list[Site], dataset: Dataset, recipe: str, seed: int, out: Path
                 ) -> dict[str, Any]:
    """Write every site's file and the manifest into ``out``, a new or empty folder;
    nothing is left there if writing fails. Returns the manifest."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise SynthlearnError("exists and is not an empty folder: site files are never "
                              "written over", where=str(out))
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        entries = []
        for site in sites:
            blob = site_payload(site, dataset.class_names, dataset.attributes, recipe,
                                seed).to_bytes()
            name = site_file_name(site.id)
            (staging / name).write_bytes(blob)
            entries.append({"site": site.id, "file": name, "n": len(site.data),
                            "class_counts": site.data.class_counts(dataset.num_classes),
                            "bytes": len(blob), "sha256": hashlib.sha256(blob).hexdigest()})
        manifest = {"format": FORMAT, "version": VERSION, "recipe": recipe, "seed": seed,
                    "dataset": dataset.name, "class_names": list(dataset.class_names),
                    "sites": entries}
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", "utf-8")
        if out.exists():
            out.rmdir()
        os.replace(staging, out)
    except BaseException:
        for leftover in staging.glob("*"):
            leftover.unlink()
        staging.rmdir()
        raise
    return manifest


def read_site_file(path: str | Path) -> SiteFile:
    """A site file, checked throughout (module docstring); errors name ``path``."""
    where = str(path)
    try:
        blob = Path(path).read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read the site file: {exc.strerror or exc}", where=where
                        ) from None
    try:
        payload = Payload.from_bytes(blob, where)
    except SynthlearnError as exc:
        raise DataError(exc.message, where=where) from None
    meta, tensors = payload.meta, payload.tensors

    def fail(message: str) -> DataError:
        return DataError(f"not a valid site file: {message}", where=where)

    if meta.get("format") != FORMAT:
        raise fail(f"format {meta.get('format')!r}, expected {FORMAT!r}")
    if meta.get("version") != VERSION or isinstance(meta.get("version"), bool):
        raise fail(f"version {meta.get('version')!r}, this synthlearn reads {VERSION}")
    site_id, n = meta.get("site"), meta.get("n")
    if not _count(site_id) or not _count(n) or n < 1:
        raise fail("'site' and 'n' must be non-negative integers (n at least 1)")
    shape = meta.get("image_shape")
    if (not isinstance(shape, list) or len(shape) != 3 or not all(_count(d) for d in shape)
            or not 1 <= shape[0] <= 4 or not all(1 <= d <= 4096 for d in shape[1:])):
        raise fail(f"'image_shape' must be [channels 1-4, height, width], got {shape!r}")
    names = meta.get("class_names")
    if (not isinstance(names, list) or not 2 <= len(names) <= 10_000
            or not all(isinstance(c, str) for c in names)):
        raise fail("'class_names' must be a list of 2 or more strings")
    infos = _attributes(meta.get("attributes"), fail)
    expected = {"images", "labels", *(f"attribute.{a.name}" for a in infos)}
    if set(tensors) != expected:
        odd = sorted(set(tensors) ^ expected)
        raise fail(f"tensor {odd[0]!r} is {'missing' if odd[0] in expected else 'unexpected'}")
    _tensor(tensors, "images", torch.uint8, (n, *shape), fail)
    _tensor(tensors, "labels", torch.int64, (n,), fail)
    labels = tensors["labels"].numpy()
    if labels.min() < 0 or labels.max() >= len(names):
        raise fail(f"labels outside the {len(names)} classes")
    values = {}
    for info in infos:
        name = f"attribute.{info.name}"
        _tensor(tensors, name, torch.float32, (n,), fail)
        values[info.name] = tensors[name].numpy()
        if not np.isfinite(values[info.name]).all():
            raise fail(f"attribute {info.name!r} holds NaN or infinite values")
    data = ImageData(images=tensors["images"].numpy(), labels=labels, attributes=values)
    if data.fingerprint() != meta.get("fingerprint"):
        raise fail("the data does not match its fingerprint (changed after export)")
    recipe, seed = meta.get("recipe"), meta.get("seed")
    if not isinstance(recipe, str) or not _count(seed):
        raise fail("'recipe' must be a string and 'seed' a non-negative integer")
    return SiteFile(site=Site(site_id, data), class_names=tuple(names),
                    attributes=infos, recipe=recipe, seed=seed)


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _attributes(entries: Any, fail: Any) -> tuple[AttributeInfo, ...]:
    if not isinstance(entries, list) or len(entries) > 1000:
        raise fail("'attributes' must be a list")
    out = []
    for entry in entries:
        if (not isinstance(entry, dict) or set(entry) != {"name", "kind", "description"}
                or not isinstance(entry["name"], str) or not entry["name"]
                or entry["kind"] not in _ATTRIBUTE_KINDS
                or not isinstance(entry["description"], str)):
            raise fail(f"malformed attribute entry {str(entry)[:80]!r}")
        out.append(AttributeInfo(entry["name"], entry["kind"], entry["description"]))
    if len({a.name for a in out}) != len(out):
        raise fail("an attribute is listed twice")
    return tuple(out)


def _tensor(tensors: dict[str, torch.Tensor], name: str, dtype: torch.dtype,
            shape: tuple[int, ...], fail: Any) -> None:
    tensor = tensors[name]
    if tensor.dtype != dtype or tuple(tensor.shape) != tuple(shape):
        raise fail(f"tensor {name!r} is {tensor.dtype} {tuple(tensor.shape)}, expected "
                   f"{dtype} {tuple(shape)}")
