"""One site's data as a file of its own: what a hospital's node reads, and nothing else.

``synthlearn sites export recipe.yaml --out DIR`` writes each site of a recipe's
partition to ``DIR/site-<id>.safetensors`` (images uint8 (N, C, H, W), labels int64,
one float32 tensor per phenotype attribute, and JSON metadata: the site id, the
dataset's classes and attributes, the recipe and seed it came from, and a fingerprint of
the data), ``DIR/server.safetensors`` (the held-out splits the server scores on: the
test split, and the validation split when the dataset has one) and ``DIR/sites.json``,
a manifest with every file's size and SHA-256 and each site's image count, class counts
and fingerprint. A deployed node is started with its own file only, so the same
experiment runs in deployment on exactly the data the simulation partitioned; the
server's run reads only ``sites.json`` and ``server.safetensors`` (``data: {use:
exported}``, ``read_export``), never a site's images.

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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch

from synthlearn.data.types import AttributeInfo, Dataset, ImageData, RemoteSiteData
from synthlearn.errors import DataError, SynthlearnError
from synthlearn.sitework.exchange import Payload
from synthlearn.sitework.sites import Site

FORMAT = "synthlearn-site"
SERVER_FORMAT = "synthlearn-server"
VERSION = 1
MANIFEST = "sites.json"
SERVER_FILE = "server.safetensors"
MAX_MANIFEST_BYTES = 16 * 2**20
MAX_SITES = 10_000
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
    tensors = _split_tensors("", data)
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
                            "fingerprint": site.data.fingerprint(),
                            **_file_entry(blob)})
        server = server_payload(dataset, recipe, seed).to_bytes()
        (staging / SERVER_FILE).write_bytes(server)
        manifest = {"format": FORMAT, "version": VERSION, "recipe": recipe, "seed": seed,
                    "dataset": dataset.name, "class_names": list(dataset.class_names),
                    "image_shape": [dataset.channels, *dataset.image_size],
                    "server": {"file": SERVER_FILE, **_file_entry(server)},
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


def read_export(folder: str | Path) -> Dataset:
    """The server's view of an export in ``folder``: its held-out splits (from
    ``server.safetensors``) and its sites by counts and fingerprints only (from
    ``sites.json``, as ``Dataset.remote_sites``; the training split is empty). Reads no
    site file. Everything is checked first: the manifest's shape and numbers, the server
    file's size and SHA-256 against the manifest, then the file as ``read_site_file``
    checks a site's. Errors are one ``DataError`` naming the file."""
    folder = Path(folder)
    manifest_path = folder / MANIFEST
    where = str(manifest_path)
    try:
        if manifest_path.stat().st_size > MAX_MANIFEST_BYTES:
            raise DataError(f"larger than {MAX_MANIFEST_BYTES} bytes: not a site manifest",
                            where=where)
        manifest = json.loads(manifest_path.read_text("utf-8"))
    except OSError as exc:
        raise DataError(f"cannot read the export's manifest: {exc.strerror or exc} (write "
                        "it with `synthlearn sites export`)", where=where) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"not JSON: {exc}", where=where) from None

    def bad(message: str) -> DataError:
        return DataError(f"not a valid site manifest: {message}", where=where)

    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise bad(f"format {manifest.get('format') if isinstance(manifest, dict) else None!r}"
                  f", expected {FORMAT!r}")
    if manifest.get("version") != VERSION or isinstance(manifest.get("version"), bool):
        raise bad(f"version {manifest.get('version')!r}, this synthlearn reads {VERSION}")
    server_entry = manifest.get("server")
    if (not isinstance(server_entry, dict) or server_entry.get("file") != SERVER_FILE
            or not _count(server_entry.get("bytes"))
            or not _hex(server_entry.get("sha256"))):
        raise bad(f"'server' must name {SERVER_FILE} with its bytes and sha256 (exported "
                  "by an older synthlearn? export again)")
    dataset = read_server_file(folder / SERVER_FILE, server_entry["bytes"],
                               server_entry["sha256"])
    k = dataset.num_classes
    if manifest.get("class_names") != list(dataset.class_names):
        raise bad(f"its class names differ from {SERVER_FILE}'s")
    entries = manifest.get("sites")
    if not isinstance(entries, list) or not 1 <= len(entries) <= MAX_SITES:
        raise bad(f"'sites' must be a list of 1 to {MAX_SITES} sites")
    remote = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise bad(f"sites[{i}] is not an object")
        sid, n, counts = entry.get("site"), entry.get("n"), entry.get("class_counts")
        if not _count(sid) or not _count(n) or n < 1:
            raise bad(f"sites[{i}]: 'site' and 'n' must be non-negative integers (n at "
                      "least 1)")
        if (not isinstance(counts, list) or len(counts) != k
                or not all(_count(c) for c in counts) or sum(counts) != n):
            raise bad(f"sites[{i}]: 'class_counts' must be {k} counts that sum to n ({n})")
        if not _hex(entry.get("fingerprint")):
            raise bad(f"sites[{i}]: 'fingerprint' must be a SHA-256 in hex")
        remote.append(RemoteSiteData(sid, n, tuple(counts), entry["fingerprint"]))
    if len({r.site for r in remote}) != len(remote):
        raise bad("a site is listed twice")
    return attrs.evolve(dataset, remote_sites=tuple(remote))


def read_server_file(path: Path, size: int, sha256: str) -> Dataset:
    """``server.safetensors``, after its size and SHA-256 match the manifest's: the
    held-out splits as a ``Dataset`` whose training split is empty."""
    where = str(path)
    try:
        found = path.stat().st_size
        if found != size:
            raise DataError(f"{found} bytes, the manifest says {size}", where=where)
        blob = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read the export's held-out splits: "
                        f"{exc.strerror or exc}", where=where) from None
    if hashlib.sha256(blob).hexdigest() != sha256:
        raise DataError("its SHA-256 differs from the manifest's (changed after export)",
                        where=where)
    meta, tensors, fail = _open(blob, where, "server file")

    if meta.get("format") != SERVER_FORMAT or meta.get("version") != VERSION:
        raise fail(f"format {meta.get('format')!r} version {meta.get('version')!r}, "
                   f"expected {SERVER_FORMAT!r} version {VERSION}")
    shape, names = _image_shape(meta.get("image_shape"), fail), _class_names(meta, fail)
    infos = _attributes(meta.get("attributes"), fail)
    if not isinstance(meta.get("dataset"), str):
        raise fail("'dataset' must be a string")
    declared: dict[str, dict[str, Any]] = {}
    for split in ("test", "validation"):
        facts = meta.get(split)
        if facts is None and split == "validation":
            continue
        if (not isinstance(facts, dict) or not _count(facts.get("n")) or facts["n"] < 1
                or not isinstance(facts.get("attributes"), list)
                or not set(facts["attributes"]) <= {a.name for a in infos}):
            raise fail(f"'{split}' must give n (at least 1), a fingerprint and attributes "
                       "among the dataset's")
        declared[split] = facts
    _expect_tensors(tensors, {f"{split}.{name}" for split, facts in declared.items()
                              for name in ("images", "labels", *(
                                  f"attribute.{a}" for a in facts["attributes"]))}, fail)
    data = {split: _split(tensors, f"{split}.", facts["n"], shape, len(names),
                          facts["attributes"], facts.get("fingerprint"), fail)
            for split, facts in declared.items()}
    empty = np.zeros((0, *shape), np.uint8)
    return Dataset(name=meta["dataset"], train=ImageData(empty, np.zeros(0, np.int64)),
                   test=data["test"], class_names=tuple(names), attributes=infos,
                   validation=data.get("validation"))


def _open(blob: bytes, where: str, kind: str
          ) -> tuple[dict[str, Any], dict[str, torch.Tensor], Callable[[str], DataError]]:
    """The payload's meta and tensors (no pickle; sizes checked against the bytes), and
    the error for anything else wrong with this ``kind`` of file at ``where``."""
    try:
        payload = Payload.from_bytes(blob, where)
    except SynthlearnError as exc:
        raise DataError(exc.message, where=where) from None

    def fail(message: str) -> DataError:
        return DataError(f"not a valid {kind}: {message}", where=where)

    return payload.meta, payload.tensors, fail


def _hex(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(
        c in "0123456789abcdef" for c in value)


def _file_entry(blob: bytes) -> dict[str, Any]:
    return {"bytes": len(blob), "sha256": hashlib.sha256(blob).hexdigest()}


def _split_tensors(prefix: str, data: ImageData) -> dict[str, torch.Tensor]:
    tensors = {f"{prefix}images": torch.from_numpy(np.ascontiguousarray(data.images)),
               f"{prefix}labels": torch.from_numpy(data.labels.astype(np.int64))}
    for name, values in data.attributes.items():
        tensors[f"{prefix}attribute.{name}"] = torch.from_numpy(values.astype(np.float32))
    return tensors


def server_payload(dataset: Dataset, recipe: str, seed: int) -> Payload:
    """The held-out splits the server scores every arm on (test, and validation when the
    dataset has one) with the dataset's facts: ``server.safetensors`` of an export."""
    splits = {"test": dataset.test, "validation": dataset.validation}
    tensors: dict[str, torch.Tensor] = {}
    described: dict[str, Any] = {}
    for split, data in splits.items():
        if data is None:
            described[split] = None
            continue
        tensors.update(_split_tensors(f"{split}.", data))
        described[split] = {"n": len(data), "fingerprint": data.fingerprint(),
                            "attributes": sorted(data.attributes)}
    meta = {"format": SERVER_FORMAT, "version": VERSION, "dataset": dataset.name,
            "image_shape": [dataset.channels, *dataset.image_size],
            "class_names": list(dataset.class_names),
            "attributes": [attrs.asdict(a) for a in dataset.attributes],
            "recipe": recipe, "seed": seed, **described}
    return Payload(tensors, meta)


def read_site_file(path: str | Path) -> SiteFile:
    """A site file, checked throughout (module docstring); errors name ``path``."""
    where = str(path)
    try:
        blob = Path(path).read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read the site file: {exc.strerror or exc}", where=where
                        ) from None
    meta, tensors, fail = _open(blob, where, "site file")

    if meta.get("format") != FORMAT:
        raise fail(f"format {meta.get('format')!r}, expected {FORMAT!r}")
    if meta.get("version") != VERSION or isinstance(meta.get("version"), bool):
        raise fail(f"version {meta.get('version')!r}, this synthlearn reads {VERSION}")
    site_id, n = meta.get("site"), meta.get("n")
    if not _count(site_id) or not _count(n) or n < 1:
        raise fail("'site' and 'n' must be non-negative integers (n at least 1)")
    shape, names = _image_shape(meta.get("image_shape"), fail), _class_names(meta, fail)
    infos = _attributes(meta.get("attributes"), fail)
    _expect_tensors(tensors, {"images", "labels", *(f"attribute.{a.name}" for a in infos)},
                    fail)
    data = _split(tensors, "", n, shape, len(names), [a.name for a in infos],
                  meta.get("fingerprint"), fail)
    recipe, seed = meta.get("recipe"), meta.get("seed")
    if not isinstance(recipe, str) or not _count(seed):
        raise fail("'recipe' must be a string and 'seed' a non-negative integer")
    return SiteFile(site=Site(site_id, data), class_names=tuple(names),
                    attributes=infos, recipe=recipe, seed=seed)


def _expect_tensors(tensors: dict[str, torch.Tensor], expected: set[str], fail: Any) -> None:
    if set(tensors) != expected:
        odd = sorted(set(tensors) ^ expected)
        raise fail(f"tensor {odd[0]!r} is {'missing' if odd[0] in expected else 'unexpected'}")


def _split(tensors: dict[str, torch.Tensor], prefix: str, n: int, shape: Sequence[int],
           num_classes: int, attribute_names: Sequence[str], fingerprint: Any,
           fail: Any) -> ImageData:
    """The images, labels and attributes under ``prefix``, each checked against the
    declared count, shape and classes, and their fingerprint recomputed."""
    _tensor(tensors, f"{prefix}images", torch.uint8, (n, *shape), fail)
    _tensor(tensors, f"{prefix}labels", torch.int64, (n,), fail)
    labels = tensors[f"{prefix}labels"].numpy()
    if labels.min() < 0 or labels.max() >= num_classes:
        raise fail(f"{prefix}labels outside the {num_classes} classes")
    values = {}
    for attribute in attribute_names:
        name = f"{prefix}attribute.{attribute}"
        _tensor(tensors, name, torch.float32, (n,), fail)
        values[attribute] = tensors[name].numpy()
        if not np.isfinite(values[attribute]).all():
            raise fail(f"attribute {name!r} holds NaN or infinite values")
    data = ImageData(images=tensors[f"{prefix}images"].numpy(), labels=labels,
                     attributes=values)
    if data.fingerprint() != fingerprint:
        raise fail(f"the {prefix.replace('.', ' ')}data does not match its fingerprint "
                   "(changed after export)")
    return data


def _image_shape(shape: Any, fail: Any) -> list[int]:
    if (not isinstance(shape, list) or len(shape) != 3 or not all(_count(d) for d in shape)
            or not 1 <= shape[0] <= 4 or not all(1 <= d <= 4096 for d in shape[1:])):
        raise fail(f"'image_shape' must be [channels 1-4, height, width], got {shape!r}")
    return shape


def _class_names(meta: dict[str, Any], fail: Any) -> list[str]:
    names = meta.get("class_names")
    if (not isinstance(names, list) or not 2 <= len(names) <= 10_000
            or not all(isinstance(c, str) for c in names)):
        raise fail("'class_names' must be a list of 2 or more strings")
    return names


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
