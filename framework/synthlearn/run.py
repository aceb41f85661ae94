"""One run of a recipe: data -> sites -> every arm -> evaluation -> report.

The run directory is built under a hidden ``.<name>.partial`` directory and renamed into
place only when everything is written, so a failed or killed run leaves nothing that
looks complete.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from synthlearn import __version__
from synthlearn.arms.context import ArmContext, ArmResult
from synthlearn.audit import audit_arm
from synthlearn.cache import SiteCache
from synthlearn.data.types import Dataset, ImageData
from synthlearn.errors import DataError, RecipeError, SynthlearnError
from synthlearn.evaluation import classification_metrics
from synthlearn.fidelity import fidelity
from synthlearn.memorisation import memorisation
from synthlearn.plugins import PluginSet
from synthlearn.recipe import Arm, Component, Recipe
from synthlearn.report import slug, write_report
from synthlearn.sites import Site, derive_seed
from synthlearn.training import predict_proba

METRIC_KEYS = ("accuracy", "balanced_accuracy", "auc")


class Progress:
    """Progress lines on stderr, silenced by ``--quiet``."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def say(self, text: str) -> None:
        if self.enabled:
            print(text, file=sys.stderr, flush=True)


def _at(where: str, exc: SynthlearnError) -> SynthlearnError:
    """The same error, located at a YAML path unless it already names a place."""
    return exc if exc.where else SynthlearnError(exc.message, where=where)


def load_data(recipe: Recipe) -> tuple[Dataset, list[Site]]:
    """Load the recipe's dataset and partition its training split into sites.

    Quick for every built-in dataset, so ``validate`` calls it too: a missing file or an
    impossible partition is found before any training starts.
    """
    try:
        dataset = recipe.data.build().load(recipe.seed)
    except SynthlearnError as exc:
        raise _at("$.data", exc) from None
    try:
        sites = make_sites(recipe, dataset)
    except SynthlearnError as exc:
        raise _at("$.sites.partition", exc) from None
    check_components(recipe, dataset, sites)
    return dataset, sites


def _arm_components(arm: Arm) -> list[Component]:
    out, todo = [], [arm.component]
    while todo:
        comp = todo.pop(0)
        out.append(comp)
        todo.extend(comp.slots.values())
    return out


def check_components(recipe: Recipe, dataset: Dataset, sites: list[Site]) -> None:
    """Let every arm component that has a ``check(dataset, sites)`` method look at the
    data before any work starts (a generator rejecting a too-small site, a conditioning
    rejecting a dataset without attributes). Raises ``RecipeError`` listing each
    problem at the component's YAML path."""
    problems = []
    for arm in recipe.arms:
        for comp in _arm_components(arm):
            check = getattr(comp.build(), "check", None)
            if check is None:
                continue
            try:
                check(dataset, sites)
            except SynthlearnError as exc:
                problems.append(f"{comp.path}: {exc}")
    if problems:
        raise RecipeError(problems)


def make_sites(recipe: Recipe, dataset: Dataset) -> list[Site]:
    """Partition the training split into the recipe's sites."""
    rng = np.random.default_rng(derive_seed(recipe.seed, "partition"))
    parts = recipe.partition.build().split(dataset.train, recipe.sites, rng)
    if len(parts) != recipe.sites:
        raise DataError(f"partition {recipe.partition.use!r} made {len(parts)} sites, "
                        f"the recipe asks for {recipe.sites}")
    sites = []
    for i, index in enumerate(parts):
        if len(index) == 0:
            raise DataError(f"partition {recipe.partition.use!r} left site {i} empty")
        sites.append(Site(i, dataset.train.subset(np.asarray(index))))
    return sites


def _clean(metrics: dict[str, float]) -> dict[str, float | None]:
    return {k: (None if v is None or (isinstance(v, float) and np.isnan(v)) else float(v))
            for k, v in metrics.items()}


def _mean(rows: list[dict[str, float | None]]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for key in METRIC_KEYS:
        values = [r[key] for r in rows if r.get(key) is not None]
        out[key] = float(np.mean(values)) if values else None
    return out


def _one_shot_point(metrics: dict[str, Any]) -> dict[str, Any]:
    """The single point of an arm without rounds on the accuracy-against-bytes curve."""
    return {"round": None, **{k: metrics.get(k) for k in METRIC_KEYS},
            "bytes_to_server": metrics["bytes_to_server"],
            "bytes_to_sites": metrics["bytes_to_sites"]}


def _curve(rounds: list[dict[str, Any]], metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """An arm's points on the accuracy-against-bytes curve: its rounds, then the released
    model (``round`` None) when that differs from the last round's, e.g. after a step at
    the sites (``calibrate``) that cost bytes; a one-shot arm's single point."""
    final = _one_shot_point(metrics)
    if rounds and all(rounds[-1].get(k) == final[k]
                      for k in ("bytes_to_server", "bytes_to_sites")):
        return list(rounds)
    return [*rounds, final]


def new_run_dir(recipe: Recipe, out: str | None) -> Path:
    """The final run directory: ``--out`` or ``<output.dir>/<name>-<timestamp>``."""
    if out is not None:
        final = Path(out).expanduser()
        if final.exists() and (not final.is_dir() or any(final.iterdir())):
            raise SynthlearnError("already exists and is not empty; choose another --out",
                                  where=str(final))
        return final
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(recipe.output_dir).expanduser()
    final = base / f"{recipe.name}-{stamp}"
    n = 2
    while final.exists():
        final = base / f"{recipe.name}-{stamp}-{n}"
        n += 1
    return final


class Run:
    """Executes a checked recipe."""

    def __init__(self, recipe: Recipe, plugins: PluginSet, *, quiet: bool = False) -> None:
        self.recipe = recipe
        self.plugins = plugins
        self.progress = Progress(not quiet)
        self.cache = SiteCache(recipe.cache_dir) if recipe.cache_dir else None
        self.synthetic: dict[str, dict[int, ImageData]] = {}
        self.artifacts: dict[str, dict[str, bytes]] = {}
        self.rocs: dict[str, dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]] = {}

    def execute(self, out: str | None = None) -> Path:
        """Run every arm and write the run directory; return its path."""
        recipe = self.recipe
        final = new_run_dir(recipe, out)
        torch.use_deterministic_algorithms(True, warn_only=True)
        started = time.perf_counter()

        self.progress.say(f"loading data: {recipe.data.use}")
        dataset, sites = load_data(recipe)
        self.progress.say(f"{len(sites)} sites: " + ", ".join(
            f"site {s.id} {len(s.data)} images" for s in sites))

        final.parent.mkdir(parents=True, exist_ok=True)
        partial = final.parent / f".{final.name}.partial"
        if partial.exists():
            shutil.rmtree(partial)
        partial.mkdir(parents=True)
        try:
            metrics = self._run_arms(dataset, sites)
            metrics["wall_s"] = time.perf_counter() - started
            self._write(partial, metrics, dataset, sites)
            if final.exists():
                final.rmdir()  # --out named an empty directory
            os.replace(partial, final)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        self.plugins.hook.synthlearn_on_run_end(run_dir=final, metrics=metrics)
        self.progress.say(f"results: {final}")
        return final

    def _versions(self, arm: Arm) -> dict[str, str]:
        versions = {"synthlearn": __version__}
        for comp in [*_arm_components(arm), arm.model]:
            versions[comp.registered.distribution] = comp.registered.version
        return versions

    def _run_arms(self, dataset: Dataset, sites: list[Site]) -> dict[str, Any]:
        recipe = self.recipe
        test = dataset.test

        device = recipe.model.build().training.device

        def evaluator(model: torch.nn.Module) -> dict[str, float]:
            probs = predict_proba(model, test.images, device=device)
            if not np.isfinite(probs).all():
                raise SynthlearnError("the model's outputs on the test set are not finite "
                                      "(its training diverged: try a lower learning rate)")
            return _clean(classification_metrics(probs, test.labels))

        arms_out = []
        for i, arm in enumerate(recipe.arms):
            self.progress.say(f"[arm {i + 1}/{len(recipe.arms)}] {arm.name} ({arm.component.use})")
            pooling = arm.component.build()
            ctx = ArmContext(
                arm=arm, pooling=pooling, seed=recipe.seed, sites=sites,
                num_classes=dataset.num_classes, in_chans=dataset.channels,
                image_size=dataset.image_size, runner=recipe.runner.build(), cache=self.cache,
                hook=self.plugins.hook, evaluator=evaluator, progress=self.progress.enabled,
                versions=self._versions(arm), attributes=dataset.attributes,
            )
            start = time.perf_counter()
            try:
                result = self.plugins.hook.synthlearn_run_arm(ctx=ctx)
            except SynthlearnError as exc:  # located at the arm unless it names a place
                raise _at(f"$.arms[{i}] ({arm.name})", exc) from None
            if not isinstance(result, ArmResult):
                raise SynthlearnError(f"arm {arm.name!r} ({arm.component.use}, distribution "
                                      f"{arm.component.registered.distribution}) returned "
                                      f"{type(result).__name__}, expected ArmResult")
            entry = self._score(arm, pooling, ctx, result, evaluator)
            entry["metrics"]["wall_s"] = time.perf_counter() - start
            entry["curve"] = _curve(ctx.curve, entry["metrics"])
            if result.synthetic:
                self.progress.say(f"  {arm.name}: fidelity of the synthetic images")
                entry["fidelity"] = self._fidelity(result.synthetic, test.images)
                self.synthetic[arm.name] = result.synthetic
                entry["figures"] = {"synthetic": f"synthetic-{slug(arm.name)}.png"}
            if result.artifacts:
                self.artifacts[arm.name] = result.artifacts
                entry["artifacts"] = [f"artifacts/{slug(arm.name)}/{name}"
                                      for name in sorted(result.artifacts)]
            if recipe.attacks:
                self.progress.say(f"  {arm.name}: membership audit "
                                  f"({', '.join(a.use for a in recipe.attacks)})")
                audit_start = time.perf_counter()
                audited = audit_arm(ctx, pooling, result, list(recipe.attacks), test)
                entry["attacks"] = audited.attacks
                entry["audit"] = {**audited.info,
                                  "wall_s": time.perf_counter() - audit_start}
                self.rocs[arm.name] = audited.rocs
                if result.synthetic:
                    entry["memorisation"] = self._memorisation(result.synthetic, sites,
                                                               test.images)
                entry.setdefault("figures", {})["roc"] = f"roc-{slug(arm.name)}.png"
            self.plugins.hook.synthlearn_on_arm_end(arm=arm.name, metrics=entry)
            m = entry["metrics"]
            self.progress.say(f"  {arm.name}: accuracy {m['accuracy']:.3f}, "
                              f"{m['bytes_to_server']} bytes to server, {m['wall_s']:.1f} s")
            arms_out.append(entry)

        factory = recipe.model.build()
        factory.build(dataset.channels, dataset.num_classes, dataset.image_size)
        model_desc = dict(factory.describe())  # after a build: it knows the parameter count
        extra: dict[str, Any] = {}
        if self.synthetic:
            real = np.concatenate([s.data.images for s in sites])
            extra["fidelity_reference"] = {"real_train_vs_test": fidelity(test.images, real)}
        return {
            "name": recipe.name,
            "seed": recipe.seed,
            "synthlearn_version": __version__,
            "dataset": {
                "use": recipe.data.use,
                "num_classes": dataset.num_classes,
                "class_names": list(dataset.class_names),
                "attributes": [a.name for a in dataset.attributes],
                "image_size": list(dataset.image_size),
                "channels": dataset.channels,
                "n_train": len(dataset.train),
                "n_test": len(dataset.test),
            },
            "model": {"use": recipe.model.use, **model_desc},
            "sites": [
                {"site": s.id, "n": len(s.data),
                 "class_counts": s.data.class_counts(dataset.num_classes)}
                for s in sites
            ],
            "arms": arms_out,
            **extra,
        }

    @staticmethod
    def _fidelity(pools: dict[int, ImageData], test_images: np.ndarray) -> dict[str, Any]:
        """How close each site's synthetic images, and their union, are to the real test
        images (Fréchet distance and k-NN precision/recall in a fixed feature space)."""
        pooled = np.concatenate([pools[sid].images for sid in sorted(pools)])
        return {
            "pooled": fidelity(test_images, pooled),
            "sites": [{"site": sid, **fidelity(test_images, pools[sid].images)}
                      for sid in sorted(pools)],
        }

    @staticmethod
    def _memorisation(pools: dict[int, ImageData], sites: list[Site],
                      test_images: np.ndarray) -> dict[str, Any]:
        """Per site: how close its synthetic images lie to its own images (members)
        against real images it never had (the test set)."""
        by_id = {s.id: s for s in sites}
        return {"sites": [
            {"site": sid, **memorisation(pools[sid].images, by_id[sid].data.images,
                                         test_images, seed=sid)}
            for sid in sorted(pools) if sid in by_id and len(pools[sid])]}

    def _score(self, arm: Arm, pooling: Any, ctx: ArmContext, result: ArmResult,
               evaluator: Any) -> dict[str, Any]:
        site_rows = []
        if result.model is not None:
            headline = evaluator(result.model)
        elif result.site_models:
            for sid in sorted(result.site_models):
                site_rows.append({"site": sid, **evaluator(result.site_models[sid])})
            headline = _mean(site_rows)
        else:
            raise SynthlearnError(f"arm {arm.name!r} produced no model to evaluate")
        ledger = ctx.ledger
        return {
            "name": arm.name,
            "use": arm.component.use,
            "private": bool(getattr(pooling, "private", True)),
            "metrics": {
                **{k: headline.get(k) for k in METRIC_KEYS},
                "bytes_to_server": ledger.bytes_to_server,
                "bytes_to_sites": ledger.bytes_to_sites,
                "wall_s": 0.0,
            },
            "shared": list(ledger.shared),
            "cached_sites": ledger.cached_sites,
            "site_bytes": [{"site": s, **b} for s, b in sorted(ledger.per_site.items())],
            "sites": site_rows,
            "details": result.details,
            "attacks": {},
        }

    def _write(self, run_dir: Path, metrics: dict[str, Any], dataset: Dataset,
               sites: list[Site]) -> None:
        (run_dir / "recipe.yaml").write_text(
            yaml.safe_dump(self.recipe.to_dict(), sort_keys=False), encoding="utf-8")
        write_report(run_dir, metrics, [(s.id, s.data) for s in sites],
                     list(dataset.class_names), self.recipe.seed, synthetic=self.synthetic,
                     rocs=self.rocs)
        for arm, files in self.artifacts.items():
            folder = run_dir / "artifacts" / slug(arm)
            folder.mkdir(parents=True, exist_ok=True)
            for name, blob in files.items():
                (folder / name).write_bytes(blob)
        (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n",
                                              encoding="utf-8")
