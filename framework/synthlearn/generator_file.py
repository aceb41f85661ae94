"""Open a generator a site sent (``artifacts/<arm>/site-N-generator.safetensors``) and
draw new images from it, outside any run: ``synthlearn sample FILE``.

The file is a site output of a ``share: generator`` synthetic arm: the generator's
weights as safetensors, and in its JSON header which generator and conditioning made
it, their params and the site's aggregate statistics. Nothing is unpickled.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import numpy as np

from synthlearn.arms.synthetic import draw_pool
from synthlearn.data.types import ImageData
from synthlearn.errors import SynthlearnError
from synthlearn.exchange import Payload
from synthlearn.plugins import PluginSet


@attrs.define(frozen=True)
class SavedGenerator:
    """A fitted generator with its conditioning scheme and the site's statistics."""

    generator: Any
    scheme: Any
    stats: dict[str, Any]
    n_real: int

    def draw(self, n: int, seed: int) -> ImageData:
        """``n`` images whose conditions follow the site's statistics."""
        return draw_pool(self.generator, self.scheme, self.stats, n, seed)


def _component(plugins: PluginSet, kind: str, entry: Any, source: str) -> Any:
    from synthlearn.recipe import make_converter

    if not isinstance(entry, dict) or not isinstance(entry.get("use"), str):
        raise SynthlearnError(f"no {kind} named in the file's metadata", where=source)
    registered = plugins.get(kind, entry["use"])
    if registered is None:
        raise SynthlearnError(f"made by {kind} {entry['use']!r}, which is not installed "
                              f"(installed: {plugins.describe_names(kind)})", where=source)
    try:
        config = make_converter().structure(entry.get("params") or {}, registered.spec.config)
    except Exception as exc:
        raise SynthlearnError(f"{kind} params in the file do not fit {entry['use']!r} "
                              f"({type(exc).__name__})", where=source) from None
    return registered.spec.factory(config)


def open_generator(path: str | Path, plugins: PluginSet) -> SavedGenerator:
    """Load a saved site generator; any problem is one ``SynthlearnError`` naming the file."""
    source = str(path)
    try:
        blob = Path(path).expanduser().read_bytes()
    except FileNotFoundError:
        raise SynthlearnError("generator file not found", where=source) from None
    except OSError as exc:
        raise SynthlearnError(f"cannot read the generator file: {exc.strerror}",
                              where=source) from None
    payload = Payload.from_bytes(blob, source)
    meta = payload.meta
    if meta.get("share") != "generator" or not isinstance(meta.get("generator"), dict):
        raise SynthlearnError("not a generator a site sent (no generator metadata)",
                              where=source)
    parts = meta.get("components") or {}
    generator = _component(plugins, "generator", parts.get("generator"), source)
    scheme = _component(plugins, "conditioning", parts.get("conditioning"), source)
    generator.load(Payload(payload.tensors, meta["generator"]), source)
    stats = meta.get("stats")
    if not isinstance(stats, dict):
        raise SynthlearnError("no conditioning statistics in the file", where=source)
    return SavedGenerator(generator, scheme, stats, int(meta.get("n_real", 0)))


def save_samples(data: ImageData, out: str | Path, class_names: list[str], seed: int) -> None:
    """Write drawn images as ``.npz`` (images, labels, attributes; no pickles) or as a
    ``.png`` grid of examples per class."""
    out = Path(out).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".npz":
        arrays = {"images": data.images, "labels": data.labels,
                  **{f"attr_{k}": v for k, v in data.attributes.items()}}
        np.savez_compressed(out, **arrays)
    elif out.suffix == ".png":
        from synthlearn import figures

        figures.sample_grid(out, [(0, data)], class_names, seed=seed)
    else:
        raise SynthlearnError("use a .png (example grid) or .npz (arrays) file name",
                              where=str(out))
