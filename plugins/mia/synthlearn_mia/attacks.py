"""The attacks: each scores every candidate, higher meaning "more likely a member".

They see only what a real attacker of the released model would: the candidate images
and labels, the model's output probabilities, and reference models they trained
themselves. Which candidates are members is known only to the core's scoring.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from synthlearn_mia.config import LiraConfig, LossConfig, RmiaConfig
from synthlearn_mia.signals import (
    EPS,
    reference_signals,
    scaled_logit,
    true_class_logit_probability,
)

#: Below this many reference models LiRA's ``global_variance: auto`` uses one variance
#: for all candidates (Carlini et al. found per-example variances need many models).
PER_EXAMPLE_VARIANCE_FROM = 64

#: Smallest standard deviation LiRA divides by.
MIN_STD = 1e-6


class LossAttack:
    """Loss threshold (Yeom et al., 2018): members have lower loss. Score = log p_y(x)."""

    def __init__(self, config: LossConfig) -> None:
        self.config = config

    def score(self, ctx: Any) -> np.ndarray:
        p = true_class_logit_probability(ctx.logits(ctx.target), ctx.candidates.labels)
        return np.log(np.clip(p, EPS, 1.0))

    def describe(self) -> dict[str, Any]:
        return {"reference": None}


def _masked_mean(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    count = mask.sum(axis=0)
    return (values * mask).sum(axis=0) / np.maximum(count, 1)


def _masked_std(values: np.ndarray, mask: np.ndarray, mean: np.ndarray) -> np.ndarray:
    count = mask.sum(axis=0)
    var = (np.square(values - mean) * mask).sum(axis=0) / np.maximum(count - 1, 1)
    return np.sqrt(var)


def _gauss_logpdf(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    std = np.maximum(std, MIN_STD)
    return -0.5 * np.square((x - mean) / std) - np.log(std)


def lira_scores(target: np.ndarray, values: np.ndarray, masks: np.ndarray, *,
                online: bool, global_variance: bool) -> np.ndarray:
    """LiRA's score per candidate from the target's signal (N,) and the reference
    models' signals and IN masks (models, N).

    Online: ``log N(target; mu_in, sd_in) - log N(target; mu_out, sd_out)``; offline:
    the one-sided z-score ``(target - mu_out) / sd_out``. With ``global_variance`` one
    standard deviation over all IN (and all OUT) signals replaces the per-candidate ones.
    """
    out_mask = ~masks
    mu_out = _masked_mean(values, out_mask)
    if global_variance:
        sd_out = np.full_like(mu_out, values[out_mask].std(ddof=1))
    else:
        sd_out = _masked_std(values, out_mask, mu_out)
    if not online:
        return (target - mu_out) / np.maximum(sd_out, MIN_STD)
    mu_in = _masked_mean(values, masks)
    if global_variance:
        sd_in = np.full_like(mu_in, values[masks].std(ddof=1))
    else:
        sd_in = _masked_std(values, masks, mu_in)
    return _gauss_logpdf(target, mu_in, sd_in) - _gauss_logpdf(target, mu_out, sd_out)


def rmia_scores(p_target: np.ndarray, values: np.ndarray, masks: np.ndarray, *, a: float,
                gamma: float) -> np.ndarray:
    """Offline RMIA's score per candidate from the target's ``p_y`` (N,) and the
    reference models' ``p_y`` and IN masks (models, N): the share of the other
    candidates ``z`` with ``ratio(x) / ratio(z) > gamma``, where ``ratio = p_target /
    Pr`` and ``Pr = ((1 + a) * mean p_out + (1 - a)) / 2`` (all models' mean for a
    candidate no OUT model saw)."""
    out_mask = ~masks
    has_out = out_mask.any(axis=0)
    p_out = np.where(has_out, _masked_mean(values, out_mask), values.mean(axis=0))
    pr_x = 0.5 * ((1.0 + a) * p_out + (1.0 - a))
    ratio = p_target / np.maximum(pr_x, EPS)
    ordered = np.sort(ratio)
    beaten = np.searchsorted(ordered, ratio / gamma, side="left")
    beaten = beaten - (ratio < ratio / gamma)  # x itself counts when gamma < 1
    return beaten / max(len(ratio) - 1, 1)


class LiraAttack:
    """The likelihood-ratio attack on the scaled logit; see ``LiraConfig``."""

    def __init__(self, config: LiraConfig) -> None:
        self.config = config
        self._used: dict[str, Any] = {}

    def score(self, ctx: Any) -> np.ndarray:
        cfg = self.config
        labels = ctx.candidates.labels
        target = scaled_logit(ctx.logits(ctx.target), labels)
        values, masks = reference_signals(ctx, scaled_logit, cfg.reference_models,
                                          cfg.reference)
        both = (masks.any(axis=0) & (~masks).any(axis=0)).all()
        online = cfg.variant == "online" or (cfg.variant == "auto" and bool(both))
        global_var = cfg.global_variance == "yes" or (
            cfg.global_variance == "auto" and len(values) < PER_EXAMPLE_VARIANCE_FROM)
        self._used = {"variant": "online" if online else "offline",
                      "global_variance": bool(global_var)}
        return lira_scores(target, values, masks, online=online, global_variance=global_var)

    def describe(self) -> dict[str, Any]:
        return {"reference": self.config.reference,
                "reference_models": self.config.reference_models, **self._used}


class RmiaAttack:
    """Offline RMIA; see ``RmiaConfig``."""

    def __init__(self, config: RmiaConfig) -> None:
        self.config = config

    def score(self, ctx: Any) -> np.ndarray:
        cfg = self.config
        labels = ctx.candidates.labels
        p_target = true_class_logit_probability(ctx.logits(ctx.target), labels)
        values, masks = reference_signals(ctx, true_class_logit_probability,
                                          cfg.reference_models, cfg.reference)
        return rmia_scores(p_target, values, masks, a=cfg.a, gamma=cfg.gamma)

    def describe(self) -> dict[str, Any]:
        return {"reference": self.config.reference,
                "reference_models": self.config.reference_models, "a": self.config.a}
