"""What the object a component's factory returns must offer, per kind.

These are structural (``typing.Protocol``): a plugin does not subclass anything, it only
provides these attributes and methods. ``hookspecs.py`` says which hook registers which
kind; ``PROTOCOLS`` maps each kind to its Protocol and ``OPTIONAL`` to the methods a
component of that kind may add (the core calls them when they exist).

The contract is checked when a recipe is checked (``synthlearn validate`` and before
``synthlearn run`` does any work): the object the factory returns for the recipe's
params must have every attribute and method of its kind's Protocol, and each method (an
optional one too, when present) must accept the call the core makes: the positional
arguments of the Protocol's method, and its keyword-only arguments by name
(``synthlearn.loading.contract``).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    import torch.nn as nn

    from synthlearn.arms.context import ArmContext, ArmResult
    from synthlearn.data.types import AttributeInfo, Dataset, ImageData
    from synthlearn.evaluation.audit import AttackContext
    from synthlearn.generation.conditioning import Conditions
    from synthlearn.models.training import TrainSettings
    from synthlearn.sitework.exchange import Payload
    from synthlearn.sitework.sites import Site, SiteEnv, SiteTask


@runtime_checkable
class DatasetSource(Protocol):
    """kind ``dataset``: loads real images with labels (and phenotype attributes)."""

    def load(self, seed: int) -> Dataset:
        """Return the train and test splits. Must be deterministic for a given seed.
        Raise ``synthlearn.errors.DataError`` for a missing or malformed file."""
        ...


@runtime_checkable
class Partitioner(Protocol):
    """kind ``partition``: turns the training split into sites."""

    def split(self, train: ImageData, n_sites: int, rng: np.random.Generator) -> list[np.ndarray]:
        """Return one integer index array into ``train`` per site (disjoint, non-empty)."""
        ...


@runtime_checkable
class ModelFactory(Protocol):
    """kind ``model``: builds the downstream classifier and says how to train it."""

    training: TrainSettings

    def build(self, in_chans: int, num_classes: int, image_size: tuple[int, int]) -> nn.Module:
        """A fresh, randomly initialised network mapping (N, C, H, W) floats to logits."""
        ...

    def describe(self) -> Mapping[str, Any]:
        """JSON-able description (architecture, parameter count) for the report."""
        ...


@runtime_checkable
class ConditioningScheme(Protocol):
    """kind ``conditioning``: what a generator is conditioned on (see
    ``synthlearn.generation.conditioning`` for the built-in schemes).

    The statistics ``summarize`` returns are aggregate (counts, means, rates), JSON-able,
    and travel with a site's output; ``encode`` and ``sample`` need nothing else.
    """

    def summarize(self, data: ImageData, num_classes: int,
                  attributes: Sequence[AttributeInfo]) -> dict[str, Any]:
        """Aggregate statistics of one site's labels and attributes."""
        ...

    def encode(self, labels: np.ndarray, attributes: dict[str, np.ndarray],
               stats: dict[str, Any]) -> Conditions:
        """Labels plus attributes -> class indices and a float vector per image, row by
        row (the server encodes a large draw in chunks, so row ``i`` may depend only on
        image ``i`` and ``stats``)."""
        ...

    def sample(self, stats: dict[str, Any], n: int, rng: np.random.Generator
               ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """``n`` new labels and attribute values following the site's statistics."""
        ...


@runtime_checkable
class Generator(Protocol):
    """kind ``generator``: a conditional image generator fit at one site.

    The factory's object is unfitted; ``fit`` trains it, ``load`` restores a fitted one
    from what ``state`` produced (weights as tensors, architecture and config as JSON
    meta: loading never unpickles). ``sample`` must be deterministic for a given seed.
    A generator should also offer ``check`` (``Checked``) to refuse a site too small to
    fit on, or an image shape it cannot make, before any work.
    """

    def fit(self, data: ImageData, conditions: Conditions, num_classes: int, seed: int, *,
            progress: bool = True, desc: str = "generator") -> None:
        """Train on one site's uint8 images under ``conditions`` (one per image)."""
        ...

    def sample(self, conditions: Conditions, seed: int) -> np.ndarray:
        """uint8 images (N, C, H, W), one per condition."""
        ...

    def state(self) -> Payload:
        """The fitted generator as a payload (what ``share: generator`` sends)."""
        ...

    def load(self, payload: Payload, source: str) -> None:
        """Restore a fitted generator; a malformed payload is a ``SynthlearnError``
        naming ``source``."""
        ...


@runtime_checkable
class Arm(Protocol):
    """kind ``arm``: one arm of the comparison.

    ``private`` (a bool, required) is False only for arms whose site outputs include raw
    images (the report then marks the arm "not private").
    """

    private: bool

    def run(self, ctx: ArmContext) -> ArmResult:
        """Do the arm's site-side work through ``ctx.run_sites`` (which counts every byte
        that crosses), train at the server (``ctx.train``) and return an ``ArmResult``
        with the server-side model, or one model per site. Called once for the arm and
        again by the membership audit (on other sites, with a context whose hooks are
        silent), so it must depend only on ``ctx``. Raise ``SynthlearnError`` for a
        problem the user can fix."""
        ...


@runtime_checkable
class Attack(Protocol):
    """kind ``attack``: a membership-inference attack, run against every released model.

    The core (``synthlearn.evaluation.audit``) builds the audit: a candidate pool of
    members and non-members, a control model trained on the same kind of data without
    the members, and reference models on demand. It calls ``score`` once against each
    arm's released model (once per site's model for an arm scored per site) and once
    against its control, and turns the scores into AUC, TPR at low FPR and the like.
    """

    def score(self, ctx: AttackContext) -> np.ndarray:
        """One finite float per candidate, higher meaning "more likely a member"
        (shape ``(len(ctx.candidates),)``). ``ctx`` gives the candidate images (never
        who is a member), the model under attack (``ctx.target``), its logits and
        probabilities on the candidates (``ctx.logits(model)``, ``ctx.predict(model)``)
        and reference models with their membership masks
        (``ctx.reference_models(n, reference)``). Must be deterministic; a wrong shape
        or a non-finite score is an error naming the attack's YAML path."""
        ...


@runtime_checkable
class Runner(Protocol):
    """kind ``runner``: where site work executes.

    ``execute`` runs ``task.fn(site, task.config, inbound_payload, env)`` for each site
    where that site's data lives, in parallel where it can, and yields each site's result
    serialised with ``Payload.to_bytes`` as soon as that site is done. Inbound payloads
    arrive as bytes too. Caching, byte counting and events are done by the caller
    (``ArmContext.run_sites``) as each result arrives, not by the runner.
    """

    def execute(
        self,
        task: SiteTask,
        sites: list[Site],
        envs: Mapping[int, SiteEnv],
        inbound: Mapping[int, bytes],
    ) -> Iterable[tuple[int, bytes]]:
        """Run the task at each of ``sites`` (with ``envs[site.id]`` and the site's
        ``inbound`` bytes, when there are some) and yield ``(site.id, payload bytes)``
        for every site, each once, in the order they finish (a generator; returning a
        ``{site.id: bytes}`` dict at the end is accepted too). A site whose task raised
        (or whose node died or timed out) ends the call with
        ``SiteTaskError(site.id, error)``, so that the caller names the site, its arm
        and round; never yield the other sites as if all went well."""
        ...


@runtime_checkable
class PrivateStep(Protocol):
    """What ``DpMechanism.attach`` returns: a network and its optimizer made private for
    one training run (per-example clipping, calibrated noise). The core's loop calls the
    network through ``forward``, back-propagates the loss, then ``step()``; for a
    Poisson-sampled batch that came out empty it calls ``empty_step()`` (noise only: a
    step must be taken whatever the draw, or the accounting is wrong)."""

    def forward(self, *inputs: Any) -> Any:
        """The network's output for ``inputs`` (the batch first, then any per-example
        arguments such as labels), recording what per-example gradients need."""
        ...

    def zero_grad(self) -> None:
        """Clear the gradients (and per-example gradients) before a batch."""
        ...

    def step(self) -> None:
        """Clip each example's gradient, add the noise, update the weights."""
        ...

    def empty_step(self) -> None:
        """The step of an empty batch: noise alone."""
        ...

    def finish(self) -> Mapping[str, Any]:
        """End the run (the network is used without the mechanism from now on) and
        return JSON-able facts about it (e.g. the final clipping bound)."""
        ...


@runtime_checkable
class DpMechanism(Protocol):
    """kind ``dp_mechanism``: differential privacy for training on a site's real images.

    ``accountant`` names the privacy accountant (e.g. ``rdp``) and ``delta`` is the
    budget's δ. The core plans a training run from the number of images, the batch size
    and the steps (``synthlearn.models.private``): the sample rate is batch / images
    and every batch is Poisson-sampled with it, so the accountant's assumption holds.
    """

    accountant: str
    delta: float

    def noise_multiplier(self, sample_rate: float, steps: int,
                         expected_batch_size: int) -> float:
        """The noise multiplier σ that keeps ``steps`` steps at ``sample_rate`` (batches
        of ``expected_batch_size`` on average) within the budget (ε at ``delta``); raise
        ``SynthlearnError`` when none can."""
        ...

    def epsilon(self, noise_multiplier: float, sample_rate: float, steps: int) -> float:
        """The accountant's ε at ``delta`` after ``steps`` steps."""
        ...

    def unsupported(self, model: nn.Module, input_shape: tuple[int, int, int]) -> list[str]:
        """One line per layer of ``model`` it cannot train privately (empty: fine);
        called before any work on a fresh network of the recipe's model, whose inputs
        are (C, H, W) ``input_shape`` (it may train a copy for a step to find out)."""
        ...

    def attach(self, model: nn.Module, optimizer: Any, *, noise_multiplier: float,
               expected_batch_size: int, generator: Any) -> PrivateStep:
        """``model`` and ``optimizer`` made private for one run, the noise drawn from
        ``generator`` (a seeded ``torch.Generator``: same seed, same noise)."""
        ...

    def describe(self) -> Mapping[str, Any]:
        """JSON-able facts about the mechanism (clipping, accountant, target)."""
        ...


@runtime_checkable
class SyntheticFilter(Protocol):
    """kind ``filter``: decides, at a site, which synthetic candidates may leave it.

    An arm that releases synthetic images (``filter:`` slot, e.g. ``{use: reid}``) builds
    a fresh filter at each site, ``fit``s it on the site's own images (the members whose
    copies must not leave) and ``screen``s every candidate pool before it is sent; the
    arm redraws rejected candidates with their own conditions, so the pool keeps its
    class mix (``synthlearn.generation.filtering.screened_pool``). A filter runs only at
    the site: nothing it learns crosses to the server except ``describe()``.
    """

    def fit(self, real: ImageData, seed: int, *, progress: bool = False) -> None:
        """Learn what to reject from the site's uint8 images (N, C, H, W) with labels;
        deterministic in ``seed``."""
        ...

    def screen(self, candidates: ImageData) -> Sequence[str | None]:
        """One entry per candidate: None to keep it, or a short reason to reject it
        (e.g. ``"near-copy"``, ``"reid"``), counted per reason in the arm's details."""
        ...

    def describe(self) -> Mapping[str, Any]:
        """JSON-able facts about the fitted filter (its threshold, calibration rates):
        numbers, booleans and short texts, which the server keeps (``received_facts``)
        and the report shows per site."""
        ...


# --- optional methods: called when a component has them -------------------------------


@runtime_checkable
class Checked(Protocol):
    """Optional for every component of an arm (the arm itself, its generator, its
    conditioning, its models): looked at with the loaded data by ``validate`` and
    before ``run`` does any work."""

    def check(self, dataset: Dataset, sites: list[Site]) -> None:
        """Raise ``SynthlearnError`` (naming the site when it is one site's fault) if this
        component cannot work with this dataset and these sites."""
        ...


@runtime_checkable
class StatsChecked(Protocol):
    """Optional for a conditioning scheme: validates statistics that came from a site or
    a file before ``encode`` or ``sample`` see them. A scheme without it only gets the
    check that the statistics are a JSON object
    (``synthlearn.generation.conditioning.check_stats``)."""

    def check_stats(self, stats: Any, num_classes: int | None, where: str | None) -> None:
        """Raise ``SynthlearnError`` naming ``where`` and the field when ``stats`` are
        malformed or sized beyond reason (``num_classes`` is the dataset's, when
        known)."""
        ...


@runtime_checkable
class SlotsChecked(Protocol):
    """Optional for an arm: refuses a combination of its slots it cannot run (e.g. a
    ``filter`` where no synthetic image leaves a site), looked at by ``validate`` and
    before ``run`` does any work."""

    def check_slots(self, slots: Mapping[str, Any]) -> None:
        """Raise ``SynthlearnError`` when the recipe components in ``slots`` (slot name ->
        component; unset optional slots are absent) cannot work with this arm's params."""
        ...


@runtime_checkable
class Described(Protocol):
    """Optional for an attack: what it adds to its metrics.json entry."""

    def describe(self) -> Mapping[str, Any]:
        """JSON-able facts about the attack (e.g. its reference mode), merged into its
        entry of ``arms[i].attacks``."""
        ...


@runtime_checkable
class ComposesPhases(Protocol):
    """Optional for a DP mechanism: it can plan several training phases at one site
    under one budget (an arm whose sites train more than one thing on their images, e.g.
    ``kr``'s teacher and generator). The phases share one noise multiplier; a phase is
    ``(sample rate, steps)``."""

    def composed_noise_multiplier(self, phases: Sequence[tuple[float, int]],
                                  expected_batch_size: int) -> float:
        """The noise multiplier σ that keeps every phase together within the budget (ε
        at ``delta`` of their composition); ``expected_batch_size`` is the smallest
        phase's; raise ``SynthlearnError`` when none can."""
        ...

    def composed_epsilon(self, noise_multiplier: float,
                         phases: Sequence[tuple[float, int]]) -> float:
        """The accountant's ε at ``delta`` of all ``phases`` at ``noise_multiplier``."""
        ...


@runtime_checkable
class PrivatelyTrained(Protocol):
    """Required of an arm whose spec declares a slot of kind ``dp_mechanism``: how its
    site work trains on real images, so that the noise is planned for the arm's whole
    run and checked before any work."""

    def dp_steps(self, n: int, training: TrainSettings, slots: Mapping[str, Any]
                 ) -> tuple[int, int] | Mapping[str, tuple[int, int]]:
        """``(batch size, steps)`` a site with ``n`` images trains under DP over the
        whole arm (every round), given the model's ``training`` settings and the arm's
        ``slots`` (recipe components: e.g. the generator that does the training); or,
        when a site trains several things on its images, a mapping phase name ->
        ``(batch size, steps)``, planned under one budget (``plan_private_phases``; the
        mechanism must compose them, ``ComposesPhases``). Raise ``SynthlearnError`` for
        a setting DP cannot take (e.g. FedProx's proximal term)."""
        ...


@runtime_checkable
class TrainsOnSynthetic(Protocol):
    """Optional for a DP arm (``PrivatelyTrained``) some of whose models never see a real
    image: which of them train on the sites' images under the budget. A model left out
    trains on what the DP step released (synthetic images, a DP teacher's labels), which
    DP's post-processing covers, so ``validate`` lets it keep batch norm and mixup; the
    options that send site statistics (``calibrate``, ``adapt_bn``) stay refused for
    every model. Without this method every model of the arm counts as trained under DP.
    """

    def dp_models(self, slots: Mapping[str, Any]) -> Collection[str]:
        """Names of the models trained on real site images under DP: ``"model"`` for the
        arm's own model, or a slot's name (kr's ``"teacher"``); empty when only the
        arm's generator does (the synthetic arm)."""
        ...


@runtime_checkable
class PrivatelyFitted(Protocol):
    """Optional for a generator: it can fit under differential privacy (an arm's
    ``dp:`` slot). The core plans the noise from ``dp_steps`` and calls ``fit`` with the
    plan as the keyword ``private`` (``synthlearn.models.private.PrivateTraining``; a
    generator with ``dp_steps`` must accept it): the generator trains whatever sees the
    real images with ``private.mechanism``, on Poisson-sampled batches at
    ``private.sample_rate``, and counts ``private.steps``."""

    def dp_steps(self, n: int) -> tuple[int, int]:
        """``(batch size, steps)`` of the private part of a fit on ``n`` images."""
        ...


PROTOCOLS: dict[str, type] = {
    "dataset": DatasetSource,
    "partition": Partitioner,
    "conditioning": ConditioningScheme,
    "generator": Generator,
    "arm": Arm,
    "model": ModelFactory,
    "attack": Attack,
    "runner": Runner,
    "dp_mechanism": DpMechanism,
    "filter": SyntheticFilter,
}
"""The Protocol the object of each kind must satisfy (every kind of ``KINDS``)."""

OPTIONAL: dict[str, tuple[type, ...]] = {
    "dataset": (),
    "partition": (),
    "conditioning": (Checked, StatsChecked),
    "generator": (Checked, PrivatelyFitted),
    "arm": (Checked, SlotsChecked, PrivatelyTrained, TrainsOnSynthetic),
    "model": (Checked,),
    "attack": (Described,),
    "runner": (),
    "dp_mechanism": (ComposesPhases,),
    "filter": (),
}
"""Protocols of optional methods per kind: checked only when the object has them."""


def __getattr__(name: str) -> Any:
    """``PoolingArm``, the old name of ``Arm``, still imports, with a DeprecationWarning."""
    if name == "PoolingArm":
        import warnings

        warnings.warn("synthlearn.interfaces.PoolingArm is deprecated: use "
                      "synthlearn.interfaces.Arm (the kind 'pooling' is now 'arm')",
                      DeprecationWarning, stacklevel=2)
        return Arm
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
