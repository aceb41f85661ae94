"""The optional steps an arm's trained model can take at the sites before release.

Any arm that ends with one model at the server can offer them: ``adapt_bn`` (the sites
re-estimate its batch-norm statistics, ``synthlearn.arms.site_batchnorm``) and then
``calibrate`` (the sites fit per-class output biases, ``synthlearn.arms.site_calibration``).
Both send the model to every site once and bring back only aggregate statistics. The
test figures before and after each step go in ``details.steps``, so the report shows
what each step changed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch.nn as nn

from synthlearn.arms import site_batchnorm, site_calibration

if TYPE_CHECKING:
    from synthlearn.arms.context import ArmContext


def check_site_steps(ctx: ArmContext, *, calibrate: bool) -> None:
    """Fail before any work if the arm's model cannot take the steps asked for."""
    if calibrate:
        site_calibration.output_bias(ctx.build_model("check"))


def finish_at_sites(ctx: ArmContext, model: nn.Module, *, adapt_bn: bool = False,
                    calibrate: bool = False) -> dict[str, Any]:
    """Run the steps asked for on ``model`` (in place) and return the entries they add to
    the arm's details: ``steps`` (the test figures as trained and after each step),
    ``adapted_batchnorm_layers`` and ``calibration_biases``. Nothing when no step is on."""
    if not (adapt_bn or calibrate):
        return {}
    details: dict[str, Any] = {}
    steps = [{"step": "trained", **ctx.evaluate(model)}]
    if adapt_bn:
        details["adapted_batchnorm_layers"] = site_batchnorm.adapt_at_sites(ctx, model)
        steps.append({"step": "adapt_bn", **ctx.evaluate(model)})
    if calibrate:
        details["calibration_biases"] = site_calibration.calibrate_at_sites(ctx, model)
        steps.append({"step": "calibrate", **ctx.evaluate(model)})
    details["steps"] = steps
    return details
