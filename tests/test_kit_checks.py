"""synthlearn.testing's conformance checks: the core's own components pass them, and a
component that breaks a rule fails with that rule named (every check can fail)."""

from __future__ import annotations

import os
import pickle
import re

import attrs
import numpy as np
import pytest
import torch
from synthlearn import SiteTaskError, SiteTaskSpec, SynthlearnError, hookimpl
from synthlearn.arms.context import ArmContext, ArmResult
from synthlearn.data.digits import DigitsConfig, DigitsDataset
from synthlearn.data.partitions import (
    ByAttributeConfig,
    ByAttributePartition,
    DirichletConfig,
    DirichletPartition,
    IIDPartition,
)
from synthlearn.data.phantom import PhantomConfig, PhantomDataset
from synthlearn.data.types import ImageData
from synthlearn.generation.conditioning import (
    CategoricalConditioning,
    CategoricalConfig,
    Conditions,
    PhenotypicConditioning,
    PhenotypicConfig,
)
from synthlearn.models.timm_model import TimmConfig, TimmModel
from synthlearn.sitework.exchange import Payload
from synthlearn.sitework.runner import LocalRunner
from synthlearn.sitework.sites import Site, SiteTask
from synthlearn.testing import (
    ConformanceError,
    check_arm,
    check_attack,
    check_conditioning,
    check_dataset,
    check_generator,
    check_model,
    check_partition,
    check_runner,
)


def fails(rule: str):
    """``pytest.raises`` for a ConformanceError on ``rule`` (and an AssertionError)."""
    return pytest.raises(AssertionError, match=re.escape(f"rule '{rule}' failed"))


# --- the core's components pass ---------------------------------------------------------


@pytest.mark.parametrize("source", [PhantomDataset(PhantomConfig(n_train=100, n_test=40,
                                                                 size=16)),
                                    DigitsDataset(DigitsConfig(size=16))])
def test_core_datasets_conform(source) -> None:
    check_dataset(source)


@pytest.mark.parametrize("partition", [IIDPartition(), DirichletPartition(DirichletConfig()),
                                       ByAttributePartition(ByAttributeConfig("scanner"))])
def test_core_partitions_conform(partition) -> None:
    check_partition(partition)


@pytest.mark.parametrize("scheme", [CategoricalConditioning(CategoricalConfig()),
                                    PhenotypicConditioning(PhenotypicConfig())])
def test_core_conditioning_schemes_conform(scheme) -> None:
    check_conditioning(scheme)


def test_timm_model_conforms() -> None:
    check_model(TimmModel(TimmConfig(arch="test_resnet", device="cpu")))


def test_local_runner_conforms() -> None:
    check_runner(LocalRunner())


@pytest.mark.parametrize("arm", ["centralized", "local"])
def test_core_arms_conform(arm: str) -> None:
    check_arm(arm)


# --- a small real generator, and ways to break it ---------------------------------------


@attrs.define(frozen=True)
class MeanConfig:
    noise: float = 20.0


class MeanGenerator:
    """Each class's mean image plus seeded noise: the smallest honest generator."""

    def __init__(self, config: MeanConfig | None = None) -> None:
        self.config = config or MeanConfig()
        self.means: np.ndarray | None = None

    def check(self, dataset, sites) -> None:
        pass

    def fit(self, data: ImageData, conditions: Conditions, num_classes: int, seed: int, *,
            progress: bool = True, desc: str = "generator") -> None:
        images = data.images.astype(np.float32)
        self.means = np.stack([images[conditions.labels == k].mean(axis=0)
                               for k in range(num_classes)])

    def _fitted(self) -> np.ndarray:
        if self.means is None:
            raise SynthlearnError("the generator has not been fitted")
        return self.means

    def sample(self, conditions: Conditions, seed: int) -> np.ndarray:
        means = self._fitted()
        noise = np.random.default_rng(seed).normal(0, self.config.noise,
                                                   (len(conditions), *means.shape[1:]))
        return np.clip(means[conditions.labels] + noise, 0, 255).astype(np.uint8)

    def state(self) -> Payload:
        means = self._fitted()
        return Payload({"means": torch.from_numpy(means)},
                       {"generator": "mean", "shape": list(means.shape)})

    def load(self, payload: Payload, source: str) -> None:
        means, shape = payload.tensors.get("means"), payload.meta.get("shape")
        if (means is None or not isinstance(shape, list) or list(means.shape) != shape
                or means.dtype != torch.float32 or not torch.isfinite(means).all()):
            raise SynthlearnError("not the state of a mean generator", where=source)
        self.means = means.numpy().copy()


def test_a_correct_generator_passes() -> None:
    check_generator(MeanGenerator())


class FloatSamples(MeanGenerator):
    def sample(self, conditions, seed):
        return super().sample(conditions, seed).astype(np.float32)


class IgnoresSeed(MeanGenerator):
    def sample(self, conditions, seed):
        return super().sample(conditions, 0)


class UnseededFit(MeanGenerator):
    def fit(self, data, conditions, num_classes, seed, **kwargs):
        super().fit(data, conditions, num_classes, seed)
        self.means = self.means + np.random.default_rng(int.from_bytes(os.urandom(4))).normal(
            0, 5, self.means.shape).astype(np.float32)


class CrashesUnfitted(MeanGenerator):
    def _fitted(self):
        return self.means[0] if self.means is None else self.means  # TypeError unfitted


class Pickles(MeanGenerator):
    def state(self):
        blob = np.frombuffer(pickle.dumps(self._fitted()), np.uint8).copy()
        return Payload({"blob": torch.from_numpy(blob)}, {"generator": "mean"})

    def load(self, payload, source):
        self.means = pickle.loads(payload.tensors["blob"].numpy().tobytes())  # noqa: S301


class Forgets(MeanGenerator):
    def load(self, payload, source):
        super().load(payload, source)
        self.means = np.zeros_like(self.means)


class TrustsThePayload(MeanGenerator):
    def load(self, payload, source):
        self.means = payload.tensors["means"].numpy().copy()  # KeyError when missing


class WrongShape(MeanGenerator):
    def sample(self, conditions, seed):
        return super().sample(conditions, seed)[:, :, :8]


@pytest.mark.parametrize(("generator", "rule"), [
    (FloatSamples(), "sample is uint8 (N, C, H, W)"),
    (WrongShape(), "sample is uint8 (N, C, H, W)"),
    (IgnoresSeed(), "the seed changes the samples"),
    (UnseededFit(), "fit is deterministic for a seed"),
    (CrashesUnfitted(), "unfitted is an error"),
    (Pickles(), "nothing pickled"),
    (Forgets(), "state/load round trip"),
    (TrustsThePayload(), "corrupted payload is a SynthlearnError"),
])
def test_a_broken_generator_fails_the_rule_it_breaks(generator, rule: str) -> None:
    with fails(rule) as info:
        check_generator(generator)
    assert isinstance(info.value, ConformanceError) and info.value.rule == rule
    assert str(info.value).startswith(f"check_generator({type(generator).__name__}): ")


def test_a_missing_method_fails_the_protocol_rule() -> None:
    class NoLoad:
        def check(self, dataset, sites): ...
        def fit(self, *args, **kwargs): ...
        def sample(self, conditions, seed): ...
        def state(self): ...

    with fails("protocol") as info:
        check_generator(NoLoad())
    assert info.value.detail == "missing load()"


# --- broken arms --------------------------------------------------------------------------


def _train_at_sites(site: Site, config, inbound, env):
    from synthlearn.sitework.exchange import state_payload

    factory, model = env.new_model()
    return state_payload(model)


class PeeksArm:
    """Trains at the sites like a private arm, then reads site 0's images at the server."""

    private = True

    def run(self, ctx: ArmContext) -> ArmResult:
        ctx.run_sites(SiteTask("noop", _train_at_sites, {}, "an untrained model"))
        data = ImageData.concat([s.data for s in ctx.sites])
        return ArmResult(model=ctx.train(data, "peek"))


class NoSiteWorkArm:
    private = True

    def run(self, ctx: ArmContext) -> ArmResult:
        return ArmResult(model=ctx.build_model("untrained"))


class UnseededArm:
    private = True

    def run(self, ctx: ArmContext) -> ArmResult:
        ctx.run_sites(SiteTask("noop", _train_at_sites, {}, "an untrained model"))
        return ArmResult(model=ctx.build_model(os.urandom(8).hex()))


class ReturnsAModel:
    private = True

    def run(self, ctx: ArmContext):
        return ctx.build_model()


class RegistersItsSiteTask:
    """What a plugin with site work does: lets site nodes run ``_train_at_sites``."""

    @hookimpl
    def synthlearn_register_site_tasks(self) -> list[SiteTaskSpec]:
        return [SiteTaskSpec(_train_at_sites)]


@pytest.mark.parametrize(("arm", "rule"), [
    (PeeksArm(), "the server never reads a site's images"),
    (NoSiteWorkArm(), "what crosses is counted"),
    (UnseededArm(), "same seed, same numbers"),
    (ReturnsAModel(), "run returns an ArmResult"),
])
def test_a_broken_arm_fails_the_rule_it_breaks(arm, rule: str) -> None:
    with fails(rule):
        check_arm(arm, plugins=[RegistersItsSiteTask()])


def test_an_arm_whose_site_work_no_plugin_registered_fails() -> None:
    with fails("its site tasks are registered") as info:
        check_arm(UnseededArm())
    assert "test_kit_checks:_train_at_sites" in str(info.value)


def test_the_arm_check_names_where_the_server_read_site_images() -> None:
    with fails("the server never reads a site's images") as info:
        check_arm(PeeksArm())
    assert "test_kit_checks.py" in info.value.detail


# --- broken models, conditioning, data, attacks, runners ---------------------------------


class OneOutputTooMany(TimmModel):
    def build(self, in_chans, num_classes, image_size):
        return super().build(in_chans, num_classes + 1, image_size)


class UnseededBuild(TimmModel):
    def build(self, in_chans, num_classes, image_size):
        torch.manual_seed(int.from_bytes(os.urandom(4)))
        return super().build(in_chans, num_classes, image_size)


@pytest.mark.parametrize(("model", "rule"), [
    (OneOutputTooMany(TimmConfig(arch="test_resnet")),
     "outputs are (N, num_classes) finite floats"),
    (UnseededBuild(TimmConfig(arch="test_resnet")), "build is seeded"),
])
def test_a_broken_model_fails_the_rule_it_breaks(model, rule: str) -> None:
    with fails(rule):
        check_model(model)


class PerImageStats(CategoricalConditioning):
    def summarize(self, data, num_classes, attributes):
        return {**super().summarize(data, num_classes, attributes),
                "labels": data.labels.tolist()}


class BatchNormalised(PhenotypicConditioning):
    def encode(self, labels, attributes, stats):
        out = super().encode(labels, attributes, stats)
        return Conditions(out.labels, out.vectors - out.vectors.mean(axis=0))


@pytest.mark.parametrize(("scheme", "rule"), [
    (PerImageStats(CategoricalConfig()), "statistics are aggregate"),
    (BatchNormalised(PhenotypicConfig()), "encode works row by row"),
])
def test_a_broken_conditioning_fails_the_rule_it_breaks(scheme, rule: str) -> None:
    with fails(rule):
        check_conditioning(scheme)


class ShiftingPhantom(PhantomDataset):
    def load(self, seed):
        return super().load(seed + int.from_bytes(os.urandom(2)))


class OverlappingSites(IIDPartition):
    def split(self, train, n_sites, rng):
        return [np.arange(len(train) // n_sites + 1) for _ in range(n_sites)]


class CrashingPartition(IIDPartition):
    def split(self, train, n_sites, rng):
        if n_sites > len(train):
            return [np.array([train.labels[n_sites]])]  # IndexError
        return super().split(train, n_sites, rng)


def test_broken_data_components_fail_the_rules_they_break() -> None:
    with fails("load is deterministic for a seed"):
        check_dataset(ShiftingPhantom(PhantomConfig(n_train=60, n_test=20, size=16)))
    with fails("sites are disjoint, non-empty and in range"):
        check_partition(OverlappingSites())
    with fails("too many sites is a SynthlearnError"):
        check_partition(CrashingPartition())


class MinusLoss:
    """Members get *lower* scores: the convention reversed."""

    def score(self, ctx):
        z = ctx.logits(ctx.target)
        z = z - z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return -logp[np.arange(len(z)), ctx.candidates.labels]


class HalfTheScores(MinusLoss):
    def score(self, ctx):
        return -super().score(ctx)[::2]


def test_broken_attacks_fail_the_rules_they_break() -> None:
    with fails("higher scores mean members"):
        check_attack(MinusLoss())
    with fails("one finite score per candidate"):
        check_attack(HalfTheScores())


class SwallowsFailures(LocalRunner):
    def execute(self, task, sites, envs, inbound):
        out = {}
        for site in sites:
            try:
                out.update(super().execute(task, [site], envs, inbound))
            except SiteTaskError:
                continue
        return out


class DoesNotSayWhichSite(LocalRunner):
    def execute(self, task, sites, envs, inbound):
        try:
            yield from super().execute(task, sites, envs, inbound)
        except SiteTaskError as exc:
            raise RuntimeError("a site failed") from exc


class DropsInbound(LocalRunner):
    def execute(self, task, sites, envs, inbound):
        return super().execute(task, sites, envs, {})


def test_broken_runners_fail_the_rules_they_break() -> None:
    with fails("a failing site raises"):
        check_runner(SwallowsFailures())
    with fails("a failing site raises"):
        check_runner(DoesNotSayWhichSite())
    with fails("inbound reaches the site"):
        check_runner(DropsInbound())


def test_an_arm_object_with_slots_is_checked_with_its_sub_components() -> None:
    pytest.importorskip("synthlearn_gan", reason="the synthlearn-gan plugin is not installed")
    from synthlearn.arms.synthetic import SyntheticArm, SyntheticConfig

    gan = {"use": "gan", "params": {"steps": 4, "batch_size": 16, "latent_dim": 16,
                                    "width": 8, "min_images": 8, "device": "cpu"}}
    check_arm(SyntheticArm(SyntheticConfig()),
              slots={"generator": gan, "conditioning": {"use": "categorical"}})
    with fails("run returns an ArmResult") as info:  # the slots it needs are not given
        check_arm(SyntheticArm(SyntheticConfig()))
    assert "arm under_test, site 0" in info.value.detail and "KeyError" in info.value.detail
