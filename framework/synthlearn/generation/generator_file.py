"""Open a generator a site sent (``artifacts/<arm>/site-N-generator.safetensors``) and
draw new images from it, outside any run: ``synthlearn sample FILE``.

The file is a site output of a ``share: generator`` synthetic arm: the generator's
weights as safetensors, and in its JSON header which generator and conditioning made
it, their params and the site's aggregate statistics. Nothing is unpickled, and the
file is treated as hostile: its size, header, statistics and every size its metadata
declares are checked before anything is built or drawn from them, and any problem is
one ``SynthlearnError`` naming the file.
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

from synthlearn.data.types import ImageData
from synthlearn.errors import SynthlearnError
from synthlearn.generation.conditioning import MAX_IMAGES, check_stats
from synthlearn.generation.sharing import checked_n_real, draw_pool
from synthlearn.params import make_converter
from synthlearn.sitework.exchange import Payload

if TYPE_CHECKING:
    from synthlearn.loading.manager import PluginSet

#: Largest generator file read (bytes); it is read into memory whole.
MAX_FILE_BYTES = 4 * 2**30

#: Most images one ``synthlearn sample`` call draws (draw more in several calls with
#: other seeds), and most bytes those images may take.
MAX_SAMPLES = 1_000_000
MAX_SAMPLE_BYTES = 2**30

#: Most classes a ``.png`` example grid shows (one row each).
MAX_GRID_CLASSES = 100


@attrs.define(frozen=True)
class SavedGenerator:
    """A fitted generator with its conditioning scheme and the site's statistics.

    ``label`` names the generator (``generator 'gan' (synthlearn-gan)``) and ``source``
    the file, in errors."""

    generator: Any
    scheme: Any
    stats: dict[str, Any]
    n_real: int
    label: str = "generator"
    source: str | None = None

    def draw(self, n: int, seed: int) -> ImageData:
        """``n`` images whose conditions follow the site's statistics; at most
        ``MAX_SAMPLES`` images and ``MAX_SAMPLE_BYTES`` of them per call."""
        if not 1 <= n <= MAX_SAMPLES:
            raise SynthlearnError(f"draws 1 to {MAX_SAMPLES:,} images per call, got {n:,} "
                                  "(draw more in several calls with other --seed values)",
                                  where="--n")
        return draw_pool(self.generator, self.scheme, self.stats, n, seed, label=self.label,
                         where=self.source, max_bytes=MAX_SAMPLE_BYTES)


def _component(plugins: PluginSet, kind: str, entry: Any, source: str) -> tuple[Any, str]:
    """The component ``entry`` (``{use, params}``) names, built, and its label."""
    if not isinstance(entry, dict) or not isinstance(entry.get("use"), str):
        raise SynthlearnError(f"no {kind} named in the file's metadata", where=source)
    registered = plugins.get(kind, entry["use"])
    if registered is None:
        raise SynthlearnError(f"made by {kind} {entry['use']!r}, which is not installed "
                              f"(installed: {plugins.describe_names(kind)})", where=source)
    params = entry.get("params")
    if params is not None and not isinstance(params, dict):
        raise SynthlearnError(f"{kind} params in the file are not a JSON object", where=source)
    try:
        config = make_converter().structure(params or {}, registered.spec.config)
    except Exception as exc:  # cattrs raises many kinds; any misfit is one line
        raise SynthlearnError(f"{kind} params in the file do not fit {entry['use']!r} "
                              f"({type(exc).__name__})", where=source) from None
    label = f"{kind} {entry['use']!r} ({registered.distribution})"
    return registered.spec.factory(config), label


def _read(path: str | Path, source: str) -> bytes:
    """The file's bytes: a regular file of at most ``MAX_FILE_BYTES``."""
    file = Path(path).expanduser()
    try:
        info = file.stat()
        if not stat.S_ISREG(info.st_mode):
            raise SynthlearnError("not a regular file", where=source)
        if info.st_size > MAX_FILE_BYTES:
            raise SynthlearnError(f"{info.st_size:,} bytes, larger than a generator file can "
                                  f"be ({MAX_FILE_BYTES:,})", where=source)
        return file.read_bytes()
    except FileNotFoundError:
        raise SynthlearnError("generator file not found", where=source) from None
    except OSError as exc:
        raise SynthlearnError(f"cannot read the generator file: {exc.strerror or exc}",
                              where=source) from None


def open_generator(path: str | Path, plugins: PluginSet) -> SavedGenerator:
    """Load a saved site generator; any problem is one ``SynthlearnError`` naming the file.

    The statistics and ``n_real`` are checked before the generator is loaded, and the
    generator's ``load`` checks its own metadata against the tensors present."""
    source = str(path)
    payload = Payload.from_bytes(_read(path, source), source)
    meta = payload.meta
    if meta.get("share") != "generator" or not isinstance(meta.get("generator"), dict):
        raise SynthlearnError("not a generator a site sent (no generator metadata)",
                              where=source)
    parts = meta.get("components")
    if not isinstance(parts, dict):
        raise SynthlearnError("no components (generator, conditioning) named in the file's "
                              "metadata", where=source)
    scheme, _ = _component(plugins, "conditioning", parts.get("conditioning"), source)
    stats = meta.get("stats")
    if stats is None:
        raise SynthlearnError("no conditioning statistics in the file", where=source)
    check_stats(scheme, stats, None, source)
    n_real = checked_n_real(meta, stats, MAX_IMAGES, source)
    generator, label = _component(plugins, "generator", parts.get("generator"), source)
    generator.load(Payload(payload.tensors, meta["generator"]), source)
    return SavedGenerator(generator, scheme, stats, n_real, label, source)


def save_samples(data: ImageData, out: str | Path, class_names: list[str], seed: int) -> None:
    """Write drawn images as ``.npz`` (images, labels, attributes; no pickles) or as a
    ``.png`` grid of examples per class (at most ``MAX_GRID_CLASSES`` classes)."""
    out = Path(out).expanduser()
    if out.suffix not in (".npz", ".png"):
        raise SynthlearnError("use a .png (example grid) or .npz (arrays) file name",
                              where=str(out))
    if out.suffix == ".png" and len(class_names) > MAX_GRID_CLASSES:
        raise SynthlearnError(f"a .png grid shows at most {MAX_GRID_CLASSES} classes, the "
                              f"generator has {len(class_names)}; write .npz instead",
                              where=str(out))
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".npz":
        arrays = {"images": data.images, "labels": data.labels,
                  **{f"attr_{k}": v for k, v in data.attributes.items()}}
        np.savez_compressed(out, **arrays)
    else:
        from synthlearn.report import figures

        figures.sample_grid(out, [(0, data)], class_names, seed=seed)
