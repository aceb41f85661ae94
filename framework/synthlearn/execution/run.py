"""One run of a recipe: data -> sites -> every arm -> evaluation -> report.

The run directory is reserved when the run starts (created atomically, so two runs
started in the same second get two directories; an unwritable place is refused before
any training) and holds only an ``INCOMPLETE`` file until every result is written. A
run that fails or is interrupted removes what it wrote; one killed outright leaves a
directory whose ``INCOMPLETE`` file says so.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch
import yaml

from synthlearn import __version__, notices
from synthlearn.arms.context import ArmContext, ArmResult
from synthlearn.arms.site_privacy import check_private_arms
from synthlearn.data.types import Dataset, ImageData
from synthlearn.errors import DataError, RecipeError, SynthlearnError
from synthlearn.evaluation.audit import AuditStore, audit_arm
from synthlearn.evaluation.fidelity import fidelity
from synthlearn.evaluation.memorisation import memorisation
from synthlearn.evaluation.metrics import classification_metrics
from synthlearn.execution import sanity
from synthlearn.execution.results import (
    NO_DP,
    NOT_PRIVATE,
    ArmEntry,
    ArmFigures,
    AttackEntry,
    AuditInfo,
    CurvePoint,
    DatasetInfo,
    FidelityFigures,
    FidelityReference,
    Memorisation,
    ModelInfo,
    Privacy,
    RunMetrics,
    Scores,
    SiteBytes,
    SiteInfo,
    SiteScores,
    SyntheticFidelity,
    ValidationScores,
)
from synthlearn.execution.run_dir import cannot, new_run_dir, plain_file_name
from synthlearn.generation.filtering import unfiltered_twins
from synthlearn.loading.code_identity import code_versions
from synthlearn.loading.manager import PluginSet
from synthlearn.models.training import TrainSettings, predict_proba
from synthlearn.recipe import Arm, Recipe
from synthlearn.report.markdown import write_report
from synthlearn.schema.from_attrs import ABSENT, from_json, to_json
from synthlearn.sitework.cache import SiteCache
from synthlearn.sitework.sites import Site, derive_seed
from synthlearn.text import slug

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

    Quick for every built-in dataset, so ``validate`` calls it too: a missing file, an
    impossible partition, a dataset whose figures would mean nothing (a single training
    class, a test class never seen in training: ``sanity.check_classes``) or a model
    with the wrong number of outputs is found before any training starts.
    """
    try:
        dataset = recipe.data.build().load(recipe.seed)
    except SynthlearnError as exc:
        raise _at("$.data", exc) from None
    sanity.check_classes(dataset)  # one class, or a test class never trained on: refused
    if dataset.remote_sites:
        return dataset, remote_sites(recipe, dataset)
    try:
        sites = make_sites(recipe, dataset)
    except SynthlearnError as exc:
        raise _at("$.sites.partition", exc) from None
    check_components(recipe, dataset, sites)
    return dataset, sites


def remote_sites(recipe: Recipe, dataset: Dataset) -> list[Site]:
    """The sites of a deployment (``data: exported``): the export's, known here by their
    counts and fingerprints. Refuses what needs their images at the server: site work in
    this process (the local runner) and membership audits (members, and controls that
    re-fit on them)."""
    problems = []
    if len(dataset.remote_sites) != recipe.sites:
        problems.append(f"$.sites.count: the export holds {len(dataset.remote_sites)} sites, "
                        f"the recipe asks for {recipe.sites}")
    if recipe.runner.use == "local":
        problems.append("$.runner: `data: exported` keeps every site's images at its node, "
                        "so site work cannot run in this process: use a runner that reaches "
                        "the nodes (`runner: {use: flower}`)")
    if recipe.attacks:
        problems.append("$.attacks: a membership audit needs the sites' images at the server "
                        "(its members, and controls that re-fit on them); with `data: "
                        "exported` they stay at the nodes: audit the same recipe on the "
                        "dataset itself")
    if problems:
        raise RecipeError(problems)
    if recipe.partition.use != "iid":
        notices.warn(f"partition {recipe.partition.use!r} is not used: with `data: exported` "
                     "the sites are the export's", where="$.sites.partition")
    sites = [Site(r.site, r) for r in dataset.remote_sites]
    check_components(recipe, dataset, sites)
    return sites


def check_components(recipe: Recipe, dataset: Dataset, sites: list[Site]) -> None:
    """Let every arm component that has a ``check(dataset, sites)`` method look at the
    data before any work starts (a generator rejecting a too-small site, a conditioning
    rejecting a dataset without attributes), let every arm with ``check_slots`` look at
    its slots (a filter where nothing is filtered), and run every distinct model component's
    network once on a tiny batch of the dataset's shape (``sanity.check_models``: it must
    give one float per class). Raises ``RecipeError`` listing each problem at the
    component's YAML path."""
    problems = sanity.check_models(recipe, dataset)
    problems += check_private_arms(recipe, dataset, sites)
    for arm in recipe.arms:
        check_slots = getattr(arm.component.build(), "check_slots", None)
        if check_slots is not None:
            try:
                check_slots(arm.component.slots)
            except SynthlearnError as exc:
                problems.append(f"{arm.component.path}: {exc}")
        for comp in arm.component.walk():
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
    the sites (``calibrate``) that cost bytes, or when the rounds scored no model (FedGAN
    scores its generator); a one-shot arm's single point."""
    final = _one_shot_point(metrics)
    if rounds and "accuracy" in rounds[-1] and all(
            rounds[-1].get(k) == final[k] for k in ("bytes_to_server", "bytes_to_sites")):
        return list(rounds)
    return [*rounds, final]


def warn_unlike_training(training: dict[str, TrainSettings]) -> None:
    """Warn when the arms of one run train or finish their models differently (one arm
    with mixup or calibrated at the sites, another without): their figures then do not
    compare like for like. Arms get the recipe's ``model`` settings unless they bring
    their own ``model:``."""
    fields = [f.name for f in attrs.fields(TrainSettings) if f.name != "device"]
    differing = [name for name in fields
                 if len({getattr(s, name) for s in training.values()}) > 1]
    if differing:
        detail = "; ".join(
            f"{arm}: " + ", ".join(f"{name}={getattr(s, name)}" for name in differing)
            for arm, s in training.items())
        notices.warn(f"the arms train or finish their models differently ({detail}): "
                     "their figures are not like for like")


class Run:
    """Executes a checked recipe."""

    def __init__(self, recipe: Recipe, plugins: PluginSet, *, quiet: bool = False) -> None:
        self.recipe = recipe
        self.plugins = plugins
        self.events = plugins.events  # event hooks: read-only copies, failures are warnings
        self.progress = Progress(not quiet)
        self.cache = SiteCache(recipe.cache_dir) if recipe.cache_dir else None
        if self.cache is not None:  # a cache path that cannot be written: stop now
            self.cache.check_usable()
        self.synthetic: dict[str, dict[int, ImageData]] = {}
        self.artifacts: dict[str, dict[str, bytes]] = {}
        self.rocs: dict[str, dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]] = {}
        # the audit's models shared between arms, and finished audits kept in the cache
        self.audit_store = AuditStore(self.cache)

    def execute(self, out: str | None = None) -> Path:
        """Run every arm and write the run directory; return its path.

        The directory is reserved first; if anything fails or the run is interrupted
        (``KeyboardInterrupt``, or any ``BaseException``), what it wrote is removed."""
        recipe = self.recipe
        notices.start()  # this run's warnings only (metrics.json "warnings")
        for line in self.plugins.deprecations:
            notices.warn(line)
        run_dir = new_run_dir(recipe, out)
        try:
            torch.use_deterministic_algorithms(True, warn_only=True)
            started = time.perf_counter()
            self.progress.say(f"loading data: {recipe.data.use}")
            dataset, sites = load_data(recipe)
            self.progress.say(f"{len(sites)} sites: " + ", ".join(
                f"site {s.id} {len(s.data)} images" for s in sites))
            results = self._run_arms(dataset, sites)
            results.wall_s = time.perf_counter() - started
            metrics = to_json(results)
            try:
                self._write(run_dir.path, metrics, dataset, sites)
            except OSError as exc:
                raise cannot("write the run directory", exc, run_dir.path) from exc
            run_dir.finish()
        except BaseException:
            run_dir.discard()
            raise
        self.events.synthlearn_on_run_end(run_dir=run_dir.path, metrics=metrics)
        self._note_late_warnings(run_dir.path, metrics)
        self.progress.say(f"results: {run_dir.path}")
        return run_dir.path

    @staticmethod
    def _note_late_warnings(path: Path, metrics: dict[str, Any]) -> None:
        """Add to ``metrics.json`` the warnings given after it was written (an
        ``on_run_end`` hook that failed), so the file still says what went wrong."""
        late = [w for w in notices.collected() if w not in metrics.get("warnings", [])]
        if late:
            metrics["warnings"] = [*metrics.get("warnings", []), *late]
            (path / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n",
                                               encoding="utf-8")

    def _versions(self, arm: Arm) -> dict[str, str]:
        """The version and code identity of the core and of every distribution whose
        components the arm uses (part of its cache keys: editing code invalidates)."""
        return code_versions(comp.registered for comp in [*arm.component.walk(), arm.model])

    def _run_arms(self, dataset: Dataset, sites: list[Site]) -> RunMetrics:
        recipe = self.recipe
        test = dataset.test

        device = recipe.model.build().training.device

        def evaluator(model: torch.nn.Module) -> dict[str, float]:
            probs = predict_proba(model, test.images, device=device)
            if not np.isfinite(probs).all():
                raise SynthlearnError("the model's outputs on the test set are not finite "
                                      "(its training diverged: try a lower learning rate)")
            return _clean(classification_metrics(probs, test.labels))

        arms_out: list[ArmEntry] = []
        training = {arm.name: arm.model.build().training for arm in recipe.arms}
        twins = unfiltered_twins(recipe.arms)
        warn_unlike_training(training)
        for i, arm in enumerate(recipe.arms):
            self.progress.say(f"[arm {i + 1}/{len(recipe.arms)}] {arm.name} ({arm.component.use})")
            arm_object = arm.component.build()
            ctx = ArmContext(
                arm=arm, arm_object=arm_object, seed=recipe.seed, sites=sites,
                num_classes=dataset.num_classes, in_chans=dataset.channels,
                image_size=dataset.image_size, runner=recipe.runner.build(), cache=self.cache,
                hook=self.events, evaluator=evaluator, progress=self.progress.enabled,
                versions=self._versions(arm), attributes=dataset.attributes,
                synthetic_scorer=lambda images: fidelity(test.images, images),
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
            entry = self._score(arm, arm_object, ctx, result, evaluator)
            entry.training = training[arm.name]
            entry.unfiltered_twin = twins.get(arm.name, ABSENT)
            if result.site_models:  # scored per site: a one-class site's model is moot
                sanity.warn_single_class_sites(arm.name, sorted(result.site_models), sites,
                                               dataset.class_names)
            if dataset.validation is not None:
                entry.validation = self._validation(result, dataset.validation, device)
            entry.metrics.wall_s = time.perf_counter() - start
            entry.curve = [from_json(CurvePoint, p)
                           for p in _curve(ctx.curve, to_json(entry.metrics))]
            if result.synthetic:
                self.progress.say(f"  {arm.name}: fidelity of the synthetic images")
                fidelity_figures = self._fidelity(result.synthetic, test.images)
                entry.fidelity = from_json(SyntheticFidelity, fidelity_figures)
                sanity.warn_collapsed_generators(arm.name, result.synthetic,
                                                 fidelity_figures)
                self.synthetic[arm.name] = result.synthetic
                entry.figures = ArmFigures(synthetic=f"synthetic-{slug(arm.name)}.png")
                if dataset.remote_sites:
                    notices.warn("memorisation (near-copies of a site's images) is not "
                                 "measured: with `data: exported` the sites' images stay "
                                 "at their nodes", where=f"arm {arm.name}")
                else:
                    memorised = self._memorisation(result.synthetic, sites, test.images)
                    sanity.warn_memorising_generators(arm.name, memorised)
                    entry.memorisation = from_json(Memorisation, memorised)
            if result.artifacts:
                self.artifacts[arm.name] = result.artifacts
                entry.artifacts = [f"artifacts/{slug(arm.name)}/{name}"
                                   for name in sorted(result.artifacts)]
            if recipe.attacks:
                self.progress.say(f"  {arm.name}: membership audit "
                                  f"({', '.join(a.use for a in recipe.attacks)})")
                audit_start = time.perf_counter()
                audited = audit_arm(ctx, arm_object, result, list(recipe.attacks), test,
                                    store=self.audit_store)
                entry.attacks = {name: from_json(AttackEntry, figures)
                                 for name, figures in audited.attacks.items()}
                entry.audit = from_json(AuditInfo, {
                    **audited.info, "wall_s": time.perf_counter() - audit_start})
                self.rocs[arm.name] = audited.rocs
                if entry.figures is ABSENT:
                    entry.figures = ArmFigures()
                entry.figures.roc = f"roc-{slug(arm.name)}.png"
            self.events.synthlearn_on_arm_end(arm=arm.name, metrics=to_json(entry))
            m = entry.metrics
            self.progress.say(f"  {arm.name}: accuracy {m.accuracy:.3f}, "
                              f"{m.bytes_to_server} bytes to server, {m.wall_s:.1f} s")
            arms_out.append(entry)

        factory = recipe.model.build()
        factory.build(dataset.channels, dataset.num_classes, dataset.image_size)
        model_desc = dict(factory.describe())  # after a build: it knows the parameter count
        reference: FidelityReference | Any = ABSENT
        if self.synthetic and not dataset.remote_sites:
            real = np.concatenate([s.data.images for s in sites])
            reference = FidelityReference(
                real_train_vs_test=from_json(FidelityFigures, fidelity(test.images, real)))
        return RunMetrics(
            name=recipe.name,
            seed=recipe.seed,
            synthlearn_version=__version__,
            warnings=notices.collected(),  # every warning of the run so far, in order
            dataset=DatasetInfo(
                use=recipe.data.use,
                num_classes=dataset.num_classes,
                class_names=list(dataset.class_names),
                attributes=[a.name for a in dataset.attributes],
                image_size=list(dataset.image_size),
                channels=dataset.channels,
                n_train=dataset.n_train,
                n_test=len(dataset.test),
                n_validation=None if dataset.validation is None else len(dataset.validation),
            ),
            model=ModelInfo(use=recipe.model.use, described=model_desc),
            sites=[SiteInfo(site=s.id, n=len(s.data),
                            class_counts=s.data.class_counts(dataset.num_classes))
                   for s in sites],
            arms=arms_out,
            fidelity_reference=reference,
        )

    @staticmethod
    def _validation(result: ArmResult, data: ImageData, device: str) -> ValidationScores:
        """The released model's figures on the validation split (the mean over sites for
        an arm scored per site), beside the headline test-split figures."""
        models = ([result.model] if result.model is not None
                  else [result.site_models[sid] for sid in sorted(result.site_models)])
        rows = [_clean(classification_metrics(predict_proba(m, data.images, device=device),
                                              data.labels)) for m in models]
        return ValidationScores(n=len(data), **_mean(rows))

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

    def _score(self, arm: Arm, arm_object: Any, ctx: ArmContext, result: ArmResult,
               evaluator: Any) -> ArmEntry:
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
        private = bool(getattr(arm_object, "private", True))
        return ArmEntry(
            name=arm.name,
            use=arm.component.use,
            summary=arm.component.registered.spec.summary,
            private=private,
            privacy=self._privacy(result, private),
            metrics=Scores(**{k: headline.get(k) for k in METRIC_KEYS},
                           bytes_to_server=ledger.bytes_to_server,
                           bytes_to_sites=ledger.bytes_to_sites, wall_s=0.0),
            shared=list(ledger.shared),
            cached_sites=ledger.cached_sites,
            site_bytes=[SiteBytes(site=s, **b) for s, b in sorted(ledger.per_site.items())],
            sites=[from_json(SiteScores, row) for row in site_rows],
            details=result.details,
            attacks={},
            training=ctx.training,
        )

    @staticmethod
    def _privacy(result: ArmResult, private: bool) -> Privacy:
        """The arm's DP guarantee for metrics.json (ε = ∞ without a mechanism)."""
        if result.privacy is not None:
            return from_json(Privacy, result.privacy)
        return NO_DP if private else NOT_PRIVATE

    def _write(self, run_dir: Path, metrics: dict[str, Any], dataset: Dataset,
               sites: list[Site]) -> None:
        """Write every result into ``run_dir``, ``metrics.json`` last."""
        for arm, files in self.artifacts.items():  # before anything is written
            for name in files:
                if not plain_file_name(name):
                    raise SynthlearnError(f"arm {arm!r} returned an artifact named {name!r}; "
                                          f"an artifact name must be a plain file name")
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
