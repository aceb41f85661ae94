"""Small, fast inputs for plugin tests: a recipe that runs in seconds, phantom data and
its sites, and a throwaway installed-looking distribution."""

from __future__ import annotations

import copy
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from synthlearn.data.partitions import IIDPartition
from synthlearn.data.phantom import PhantomConfig, PhantomDataset
from synthlearn.data.types import Dataset, ImageData
from synthlearn.generation.conditioning import Conditions
from synthlearn.sitework.sites import Site, derive_seed

__all__ = ["small_recipe", "tiny_dataset", "tiny_sites", "write_distribution",
           "write_recipe_file"]


def small_recipe(**changes: Any) -> dict[str, Any]:
    """A recipe that runs in a few seconds: 180 phantom images of 16x16 over 3 sites and
    timm's ``test_resnet`` (0.37 M parameters), 2 epochs, arms ``centralized`` and
    ``local``. Keyword arguments replace top-level keys (``arms=[...]``,
    ``attacks=[...]``); the dict is a fresh copy each call."""
    recipe: dict[str, Any] = {
        "name": "small",
        "seed": 0,
        "data": {"use": "phantom", "params": {"n_train": 180, "n_test": 90, "size": 16}},
        "sites": {"count": 3, "partition": {"use": "iid"}},
        "model": {"use": "timm", "params": {"arch": "test_resnet", "epochs": 2,
                                             "batch_size": 32, "device": "cpu"}},
        "arms": [{"use": "centralized"}, {"use": "local"}],
    }
    recipe.update(copy.deepcopy(changes))
    return recipe



def learning_recipe(**changes: Any) -> dict[str, Any]:
    """A recipe in which a classifier clearly learns, for tests that assert a component
    helps (``small_recipe`` is sized for plumbing: its models stay near chance accuracy,
    with AUC about 0.6 to 0.7). 240 + 120 phantom images of 16x16 with low noise over 3
    sites, ``test_resnet`` for 6 epochs with ``adapt_bn`` (batch-norm statistics refreshed
    at the sites after training: without it the tiny per-site runs keep running
    statistics that put accuracy at 0.5); about 10 s on one thread. Measured on
    2026-11-29: centralized 0.825 accuracy / 0.843 AUC, local 0.697 / 0.757. ``adapt_bn``
    sends batch-norm statistics both ways, so the bytes differ from ``small_recipe``'s."""
    recipe = small_recipe()
    recipe["data"]["params"].update({"n_train": 240, "n_test": 120, "noise": 0.04})
    recipe["model"]["params"].update({"epochs": 6, "adapt_bn": True})
    recipe.update(copy.deepcopy(changes))
    return recipe

def tiny_dataset(n_train: int = 120, n_test: int = 60, size: int = 16, classes: int = 2,
                 seed: int = 0) -> Dataset:
    """Procedural phantom images (uint8, one channel, ``size`` x ``size``) with labels
    and phenotype attributes (lesion size, contrast, scanner): made in milliseconds."""
    config = PhantomConfig(n_train=n_train, n_test=n_test, size=size, classes=classes)
    return PhantomDataset(config).load(seed)


def two_tone(n: int = 32, side: int = 16, channels: int = 1, seed: int = 0) -> ImageData:
    """``n`` images a generator can learn in a few steps, classes alternating: class 0 a
    dim disc (about 60) on black, class 1 a bright one (about 200), each placed near the
    centre with some noise. For generator tests: whether a class condition steers the
    output shows in the mean brightness."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n, dtype=np.int64) % 2
    yy, xx = np.mgrid[:side, :side]
    images = np.zeros((n, channels, side, side), np.float32)
    for i, label in enumerate(labels):
        cy, cx = rng.uniform(0.4, 0.6, 2) * side
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 < (0.3 * side) ** 2
        images[i] = disc * (200.0 if label else 60.0) + rng.normal(0, 8, (channels, side, side))
    return ImageData(images=np.clip(images, 0, 255).astype(np.uint8), labels=labels)


def class_conditions(labels: np.ndarray) -> Conditions:
    """Conditions holding the class alone (a vector of size 0), as the ``categorical``
    scheme gives a generator."""
    labels = np.asarray(labels, np.int64)
    return Conditions(labels, np.zeros((len(labels), 0), np.float32))


def tiny_sites(dataset: Dataset, count: int = 3, seed: int = 0) -> list[Site]:
    """``dataset``'s training split dealt into ``count`` sites, every class alike (the
    ``iid`` partition), reproducibly for ``seed``."""
    rng = np.random.default_rng(derive_seed(seed, "partition"))
    parts = IIDPartition().split(dataset.train, count, rng)
    return [Site(i, dataset.train.subset(np.asarray(index))) for i, index in enumerate(parts)]


def write_recipe_file(recipe: dict[str, Any], folder: Path, name: str = "recipe.yaml"
                      ) -> Path:
    """Write ``recipe`` as YAML in ``folder`` and return its path; without an ``output``
    key, its run directories and cache go under ``folder`` too."""
    recipe = dict(recipe)
    recipe.setdefault("output", {"dir": str(folder / "runs"), "cache": str(folder / "cache")})
    path = folder / name
    path.write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
    return path


def write_distribution(root: Path, dist: str, module: str, source: str,
                       entry: str | None = None, version: str = "1.0") -> Path:
    """Create an installed-looking distribution under ``root`` (to be put on sys.path,
    e.g. ``cli(..., env={"PYTHONPATH": str(root)})``): the module file plus a
    ``.dist-info`` with METADATA and an entry point in the group ``synthlearn``.
    importlib.metadata finds it exactly as it finds a pip-installed one."""
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n", encoding="utf-8")
    (info / "entry_points.txt").write_text(
        f"[synthlearn]\n{entry or module} = {module}\n", encoding="utf-8")
    return root
