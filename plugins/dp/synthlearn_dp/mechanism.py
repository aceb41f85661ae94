"""The ``opacus`` mechanism: Opacus's DP optimizers and accountants behind synthlearn's
``DpMechanism`` contract.

Per-example gradients come from PyTorch's expanded weights (Opacus's ``ew`` mode): its
default hooks and functorch modes fail on timm's residual blocks, which end in an
in-place ``x += shortcut``. The batches are drawn by the core (Poisson sampling with the
plan's rate), so no Opacus data loader is involved.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from opacus.accountants import create_accountant
from opacus.accountants.utils import get_noise_multiplier
from opacus.grad_sample.gsm_exp_weights import GradSampleModuleExpandedWeights
from opacus.optimizers import AdaClipDPOptimizer, DPOptimizer
from opacus.validators import ModuleValidator
from synthlearn.api import MAX_NOISE_MULTIPLIER, SynthlearnError

from synthlearn_dp.config import OpacusConfig


class OpacusStep:
    """A network and its optimizer made private for one training run (``PrivateStep``)."""

    def __init__(self, model: nn.Module, optimizer: DPOptimizer, adaptive: bool) -> None:
        self.model = model
        self.wrapped = GradSampleModuleExpandedWeights(model, batch_first=True,
                                                       loss_reduction="mean")
        self.optimizer = optimizer
        self.adaptive = adaptive
        self.params = [p for p in model.parameters() if p.requires_grad]

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.wrapped(*inputs)

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)

    def step(self) -> None:
        for p in self.params:  # expanded weights may leave strided per-example grads
            sample = getattr(p, "grad_sample", None)
            if sample is None:
                raise SynthlearnError("a parameter got no per-example gradient under DP: a "
                                      "layer Opacus cannot train, or one the model never uses")
            p.grad_sample = sample.contiguous()
        self.optimizer.step()

    def empty_step(self) -> None:
        """Noise alone. Adaptive clipping cannot take an empty batch: it gets one zero
        gradient (it adds nothing to the sum; it counts as one unclipped example)."""
        self.zero_grad()
        rows = 1 if self.adaptive else 0
        for p in self.params:
            p.grad_sample = torch.zeros((rows, *p.shape), dtype=p.dtype, device=p.device)
        self.optimizer.step()

    def finish(self) -> Mapping[str, Any]:
        self.zero_grad()
        for p in self.params:
            for name in ("grad_sample", "summed_grad", "_processed"):
                if hasattr(p, name):
                    delattr(p, name)
        return {"final_max_grad_norm": float(self.optimizer.max_grad_norm)}


class OpacusMechanism:
    """DP-SGD through Opacus; see ``OpacusConfig``."""

    def __init__(self, config: OpacusConfig) -> None:
        self.config = config
        self.accountant = config.accountant
        self.delta = config.delta

    def _unclipped_std(self, expected_batch_size: float) -> float:
        return self.config.unclipped_num_std or expected_batch_size / 20.0

    def noise_multiplier(self, sample_rate: float, steps: int,
                         expected_batch_size: int) -> float:
        cfg = self.config
        if cfg.noise_multiplier is not None:
            sigma = float(cfg.noise_multiplier)
        else:
            sigma = _search_noise(cfg, sample_rate, steps)
        self._check_adaptive(sigma, expected_batch_size)
        return sigma

    def _check_adaptive(self, sigma: float, expected_batch_size: int) -> None:
        if self.config.clipping == "adaptive":
            std = self._unclipped_std(expected_batch_size)
            if sigma >= 2 * std:
                raise SynthlearnError(
                    f"adaptive clipping needs the noise multiplier ({sigma:.3f}) below twice "
                    f"the unclipped count's noise ({std:g}; expected batch "
                    f"{expected_batch_size} / 20 unless unclipped_num_std is set): raise "
                    "the budget, the batch size or unclipped_num_std, or clip flat")

    def epsilon(self, noise_multiplier: float, sample_rate: float, steps: int) -> float:
        return _epsilon(self.config.accountant, self.config.delta, noise_multiplier,
                        sample_rate, steps)

    def composed_noise_multiplier(self, phases: Sequence[tuple[float, int]],
                                  expected_batch_size: int) -> float:
        """One σ for several phases (``(sample rate, steps)`` each) under the budget."""
        cfg = self.config
        history = _phases(cfg.accountant, phases)
        if cfg.noise_multiplier is not None:
            sigma = float(cfg.noise_multiplier)
        else:
            sigma = _search_composed_noise(cfg, history)
        self._check_adaptive(sigma, expected_batch_size)
        return sigma

    def composed_epsilon(self, noise_multiplier: float,
                         phases: Sequence[tuple[float, int]]) -> float:
        history = _phases(self.config.accountant, phases)
        return _composed_epsilon(self.config.accountant, self.config.delta,
                                 tuple((noise_multiplier, q, t) for q, t in history))

    def unsupported(self, model: nn.Module, input_shape: tuple[int, int, int]) -> list[str]:
        refused = ModuleValidator.validate(model, strict=False)
        if refused:
            return [_first_line(exc) for exc in refused]
        trial = copy.deepcopy(model)
        try:  # one private step on random inputs finds what the validator does not
            optimizer = torch.optim.SGD(trial.parameters(), lr=0.0)
            step = self.attach(trial, optimizer, noise_multiplier=0.0, expected_batch_size=2,
                               generator=torch.Generator().manual_seed(0))
            inputs = torch.randn((2, *input_shape), generator=torch.Generator().manual_seed(0))
            trial.train()
            logits = step.forward(inputs)
            F.cross_entropy(logits, torch.zeros(2, dtype=torch.long)).backward()
            step.step()
            step.finish()
        except SynthlearnError as exc:
            return [str(exc)]
        except Exception as exc:
            return [f"a private step fails: {type(exc).__name__}: {_first_line(exc)}"]
        return []

    def attach(self, model: nn.Module, optimizer: Any, *, noise_multiplier: float,
               expected_batch_size: int, generator: Any) -> OpacusStep:
        cfg = self.config
        common = dict(noise_multiplier=noise_multiplier, max_grad_norm=cfg.max_grad_norm,
                      expected_batch_size=expected_batch_size, loss_reduction="mean",
                      generator=generator)
        if cfg.clipping == "adaptive":
            private = AdaClipDPOptimizer(
                optimizer, target_unclipped_quantile=cfg.target_unclipped_quantile,
                clipbound_learning_rate=cfg.clipbound_learning_rate,
                max_clipbound=cfg.max_clipbound, min_clipbound=cfg.min_clipbound,
                unclipped_num_std=self._unclipped_std(expected_batch_size), **common)
        else:
            private = DPOptimizer(optimizer, **common)
        return OpacusStep(model, private, cfg.clipping == "adaptive")

    def describe(self) -> Mapping[str, Any]:
        cfg = self.config
        out: dict[str, Any] = {"library": "opacus", "clipping": cfg.clipping,
                               "max_grad_norm": cfg.max_grad_norm,
                               "accountant": cfg.accountant, "delta": cfg.delta}
        if cfg.target_epsilon is not None:
            out["target_epsilon"] = cfg.target_epsilon
        else:
            out["noise_multiplier"] = cfg.noise_multiplier
        if cfg.clipping == "adaptive":
            out.update(target_unclipped_quantile=cfg.target_unclipped_quantile,
                       clipbound_learning_rate=cfg.clipbound_learning_rate)
        return out


@functools.lru_cache(maxsize=256)
def _epsilon(accountant: str, delta: float, sigma: float, sample_rate: float, steps: int
             ) -> float:
    """The accountant's ε (kept: the RDP accountant takes up to a second per call)."""
    return _composed_epsilon(accountant, delta, ((sigma, sample_rate, steps),))


@functools.lru_cache(maxsize=512)
def _composed_epsilon(accountant: str, delta: float,
                      history: tuple[tuple[float, float, int], ...]) -> float:
    """The accountant's ε of a history of ``(σ, sample rate, steps)`` entries, composed
    as Opacus's accountants compose the steps they are told of."""
    history = tuple(entry for entry in history if entry[2] > 0)
    if not history:
        return 0.0
    counted = create_accountant(mechanism=accountant)
    counted.history = list(history)
    with _quiet_accounting():
        return float(counted.get_epsilon(delta=delta))


def _phases(accountant: str, phases: Sequence[tuple[float, int]]
            ) -> tuple[tuple[float, int], ...]:
    """``phases`` as the accountant can compose them. The gdp accountant reads only the
    last entry of its history: phases at one sample rate are merged (their steps added),
    different rates are refused."""
    merged = tuple((float(q), int(t)) for q, t in phases)
    if accountant != "gdp" or len(merged) < 2:
        return merged
    if len({q for q, _ in merged}) > 1:
        raise SynthlearnError("the gdp accountant cannot compose training phases at "
                              "different sample rates: use accountant rdp or prv")
    return ((merged[0][0], sum(t for _, t in merged)),)


@functools.lru_cache(maxsize=64)
def _search_composed_noise(cfg: OpacusConfig, history: tuple[tuple[float, int], ...]
                           ) -> float:
    """The smallest noise multiplier (to within the target's tolerance) whose composed ε
    over ``history`` (``(sample rate, steps)`` phases sharing it) meets the target: a
    bisection, ε falling as σ grows."""
    def epsilon(sigma: float) -> float:
        return _composed_epsilon(cfg.accountant, cfg.delta,
                                 tuple((sigma, q, t) for q, t in history))

    target, what = cfg.target_epsilon, " and ".join(
        f"{t} steps at sample rate {q:.3g}" for q, t in history)
    high = MAX_NOISE_MULTIPLIER
    if epsilon(high) > target:
        raise SynthlearnError(f"no noise multiplier meets ε {target:g} at δ {cfg.delta:g} for "
                              f"{what}: even {high:g} gives ε {epsilon(high):.3g}")
    low = high / 2
    while epsilon(low) <= target:  # halve until the budget is broken
        high, low = low, low / 2
        if low < 1e-3:
            return high
    for _ in range(60):  # epsilon(low) > target >= epsilon(high)
        if epsilon(high) >= target - cfg.epsilon_tolerance:
            break
        middle = (low + high) / 2
        if epsilon(middle) > target:
            low = middle
        else:
            high = middle
    return high


@functools.lru_cache(maxsize=64)
def _search_noise(cfg: OpacusConfig, sample_rate: float, steps: int) -> float:
    """The noise multiplier for ``cfg``'s target (kept: the search takes seconds, and a
    run plans the same site at validate, at the server and at the site)."""
    floor = _epsilon(cfg.accountant, cfg.delta, MAX_NOISE_MULTIPLIER, sample_rate, steps)
    if floor > cfg.target_epsilon:  # Opacus takes a minute to give up on such a target
        raise SynthlearnError(f"no noise multiplier meets ε {cfg.target_epsilon:g} at δ "
                              f"{cfg.delta:g} for {steps} steps at sample rate "
                              f"{sample_rate:.3g}: even {MAX_NOISE_MULTIPLIER:g} gives ε "
                              f"{floor:.3g}")
    try:
        with _quiet_accounting():
            return float(get_noise_multiplier(
                target_epsilon=cfg.target_epsilon, target_delta=cfg.delta,
                sample_rate=sample_rate, steps=steps, accountant=cfg.accountant,
                epsilon_tolerance=cfg.epsilon_tolerance))
    except (ValueError, RuntimeError, OverflowError) as exc:
        raise SynthlearnError(f"no noise multiplier meets ε {cfg.target_epsilon:g} at δ "
                              f"{cfg.delta:g} for {steps} steps at sample rate "
                              f"{sample_rate:.3g}: {exc}") from None


@contextlib.contextmanager
def _quiet_accounting() -> Iterator[None]:
    """Silence the RDP accountant's "optimal order is the largest alpha": its ε is then
    a looser upper bound, still a valid one (the noise search meets it often)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")
        yield


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
