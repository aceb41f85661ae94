"""A real ``ArmContext`` for unit tests of an arm: real sites from phantom data, the
recipe's runner (the in-process ``LocalRunner``), real byte counting, the real test-set
evaluator; nothing mocked."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from synthlearn.arms.context import ArmContext
from synthlearn.data.types import Dataset, ImageData
from synthlearn.errors import SynthlearnError
from synthlearn.evaluation.fidelity import fidelity
from synthlearn.evaluation.metrics import classification_metrics
from synthlearn.execution.run import load_data
from synthlearn.loading.code_identity import code_versions
from synthlearn.models.training import predict_proba
from synthlearn.sitework.cache import SiteCache
from synthlearn.sitework.sites import Site
from synthlearn.testing.offering import offer
from synthlearn.testing.recipes import small_recipe
from synthlearn.testing.run import check_in_process

__all__ = ["UNDER_TEST", "arm_entry", "make_arm_context", "test_evaluator"]

#: The name an arm object handed to :func:`make_arm_context` is registered under.
UNDER_TEST = "under_test"


def test_evaluator(test: ImageData, device: str = "cpu"
                   ) -> Callable[[torch.nn.Module], dict[str, float]]:
    """Accuracy, balanced accuracy and AUC of a model on ``test`` (what a run's
    ``ctx.evaluate`` gives), refusing non-finite outputs."""

    def evaluate(model: torch.nn.Module) -> dict[str, float]:
        probs = predict_proba(model, test.images, device=device)
        if not np.isfinite(probs).all():
            raise SynthlearnError("the model's outputs on the test set are not finite")
        return {k: float(v) for k, v in classification_metrics(probs, test.labels).items()}

    evaluate.__test__ = False  # type: ignore[attr-defined]  # not a test for pytest
    return evaluate


test_evaluator.__test__ = False  # type: ignore[attr-defined]


def arm_entry(arm: Any, slots: Mapping[str, Any] | None = None,
              slot_kinds: Mapping[str, str] | None = None) -> tuple[dict[str, Any], list[object]]:
    """The recipe entry for ``arm`` and the plugin objects it needs: a name (``"local"``)
    or an entry (``{"use": "fedavg", "params": {...}}``) as they are; an arm object is
    offered in process as ``under_test``, with ``slots`` (slot name -> recipe entry, e.g.
    ``{"generator": {"use": "gan", "params": {"steps": 4}}}``) whose kinds are
    ``slot_kinds`` (default: the slot's name, e.g. ``generator``)."""
    if isinstance(arm, str):
        return {"use": arm, **dict(slots or {})}, []
    if isinstance(arm, Mapping):
        return {**dict(arm), **dict(slots or {})}, []
    slots = dict(slots or {})
    kinds = {name: (slot_kinds or {}).get(name, name) for name in slots}
    plugin = offer("arm", UNDER_TEST, arm, slots=kinds)
    return {"use": UNDER_TEST, **slots}, [plugin]


def make_arm_context(arm: Any = "local", *, recipe: Mapping[str, Any] | None = None,
                     plugins: Iterable[object] = (), slots: Mapping[str, Any] | None = None,
                     slot_kinds: Mapping[str, str] | None = None,
                     tmp_path: Path | str | None = None, cache: bool = False,
                     autoload: bool = True, progress: bool = False,
                     sites: Callable[[list[Site]], list[Site]] | None = None) -> ArmContext:
    """An ``ArmContext`` as a run builds it, for ``arm``'s ``run(ctx)``.

    ``arm`` is an installed arm's name, a recipe entry, or an arm object (see
    :func:`arm_entry` for ``slots``/``slot_kinds``). The data, sites, model and runner
    are ``recipe``'s (default :func:`small_recipe`: 180 phantom images of 16x16 over 3
    IID sites, timm ``test_resnet`` for 2 epochs, the local runner); its ``arms`` are
    replaced by this one. The recipe is checked, the data loaded and every component's
    ``check`` run as ``synthlearn validate`` does. ``ctx.ledger`` counts the bytes that
    cross; ``ctx.evaluate`` scores on the real test set; events go to the plugins as in
    a run (read-only copies). ``cache=True`` keeps site outputs under ``tmp_path``.
    ``sites`` may replace the sites (e.g. to watch what touches their images). The arm
    object is ``ctx.arm_object``: ``ctx.arm_object.run(ctx)`` runs it."""
    folder = Path(tmp_path) if tmp_path is not None else Path(tempfile.mkdtemp(
        prefix="synthlearn-test-"))
    entry, extra = arm_entry(arm, slots, slot_kinds)
    data = dict(recipe) if recipe is not None else small_recipe()
    data["arms"] = [entry]
    checked, loaded = check_in_process(data, [*plugins, *extra], folder, autoload=autoload)
    dataset, found = load_data(checked)
    return context_for(checked, loaded, dataset, sites(found) if sites else found,
                       cache_dir=folder / "cache" if cache else None, progress=progress)


def context_for(recipe: Any, plugins: Any, dataset: Dataset, sites: list[Site], *,
                cache_dir: Path | None = None, progress: bool = False,
                index: int = 0) -> ArmContext:
    """The context of ``recipe``'s arm ``index`` over ``sites`` (a checked recipe and
    its loaded plugins)."""
    arm = recipe.arms[index]
    device = recipe.model.build().training.device
    return ArmContext(
        arm=arm, arm_object=arm.component.build(), seed=recipe.seed, sites=sites,
        num_classes=dataset.num_classes, in_chans=dataset.channels,
        image_size=dataset.image_size, runner=recipe.runner.build(),
        cache=SiteCache(cache_dir) if cache_dir is not None else None, hook=plugins.events,
        evaluator=test_evaluator(dataset.test, device),
        synthetic_scorer=lambda images: fidelity(dataset.test.images, images),
        progress=progress,
        versions=code_versions(c.registered for c in [*arm.component.walk(), arm.model]),
        attributes=dataset.attributes,
    )
