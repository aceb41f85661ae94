"""The steps a trained model takes at the sites before release, for every arm alike.

They are part of the model's training settings (``model.params.adapt_bn`` and
``model.params.calibrate``, ``synthlearn.models.training.TrainSettings``), so every arm of a
recipe takes the same ones: ``adapt_bn`` (the sites re-estimate the model's batch-norm
statistics, ``synthlearn.arms.site_batchnorm``), then ``calibrate`` (the sites fit
per-class output biases, ``synthlearn.arms.site_calibration``). An arm that ends with
one model at the server (centralized, FedAvg, synthetic, kr) sends it to every site once
per step and brings back only aggregate statistics (``finish_at_sites``); an arm whose
models stay at the sites (local) has each site apply the steps to its own model on its
own images (``finish_site_model``). The test figures before and after each server-side
step go in ``details.steps``, so the report shows what each step changed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn as nn

from synthlearn.arms import site_batchnorm, site_calibration
from synthlearn.models.training import TrainSettings, predict_logits, refresh_batchnorm

if TYPE_CHECKING:
    from synthlearn.arms.context import ArmContext
    from synthlearn.data.types import ImageData


def steps_of(settings: TrainSettings) -> list[str]:
    """The site steps the settings ask for, in the order they run."""
    return [name for name in ("adapt_bn", "calibrate") if getattr(settings, name)]


def check_site_steps(ctx: ArmContext) -> None:
    """Fail before any work if the arm's model cannot take the steps asked for."""
    if ctx.training.calibrate:
        site_calibration.output_bias(ctx.build_model("check"))


def finish_at_sites(ctx: ArmContext, model: nn.Module) -> dict[str, Any]:
    """Run the steps the arm's training settings ask for on ``model`` (in place) and
    return the entries they add to the arm's details: ``steps`` (the test figures as
    trained and after each step), ``adapted_batchnorm_layers`` and
    ``calibration_biases``. Nothing when no step is on."""
    settings = ctx.training
    if not steps_of(settings):
        return {}
    details: dict[str, Any] = {}
    steps = [{"step": "trained", **ctx.evaluate(model)}]
    if settings.adapt_bn:
        details["adapted_batchnorm_layers"] = site_batchnorm.adapt_at_sites(ctx, model)
        steps.append({"step": "adapt_bn", **ctx.evaluate(model)})
    if settings.calibrate:
        details["calibration_biases"] = site_calibration.calibrate_at_sites(ctx, model)
        steps.append({"step": "calibrate", **ctx.evaluate(model)})
    details["steps"] = steps
    return details


def finish_site_model(model: nn.Module, data: ImageData, num_classes: int,
                      settings: TrainSettings) -> dict[str, Any]:
    """The same steps applied at one site to a model that stays there (the local arm):
    batch-norm statistics recomputed over the site's images, then the output biases that
    make the model's mean predictions follow the site's class mix. Returns what was done
    (JSON: layers refreshed, the biases added)."""
    done: dict[str, Any] = {}
    if settings.adapt_bn:
        done["adapted_batchnorm_layers"] = refresh_batchnorm(model, data.images,
                                                             device=settings.device)
    if settings.calibrate:
        bias = site_calibration.output_bias(model)
        logits = predict_logits(model, data.images, device=settings.device)
        fitted = site_calibration.fit_biases(logits, data.labels, num_classes)
        with torch.no_grad():
            bias.add_(torch.from_numpy(np.asarray(fitted)).to(bias.dtype))
        done["calibration_biases"] = [float(v) for v in fitted]
    return done
