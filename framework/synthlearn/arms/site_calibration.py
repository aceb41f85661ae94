"""Per-class logit biases fitted at the sites, so a model's predictions follow the sites'
real class mix (prior matching across sites).

A classifier trained on synthetic images can rank real images well and still put its
decision threshold in the wrong place: synthetic classes are often easier to tell apart
than real ones, so the model is over-confident and its class balance on real images is
off. With ``calibrate`` the server sends its model to each site; the site finds the
per-class biases ``b`` that make the model's mean predicted probabilities on its own
images equal to its class shares (the fixed point of ``b_k += log(share_k / mean_k)``,
the bias-only maximum-likelihood solution) and sends back only ``b`` and its image
count. The server adds the size-weighted mean of the sites' biases to the classifier's
output bias. Nothing else about the model changes; no weight is trained on real images.

With label-skewed sites each site's biases reflect its own mix, and their mean matches
the pooled mix only approximately; with sites of one mix it is the pooled solution.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import attrs
import numpy as np
import torch
import torch.nn as nn

from synthlearn.arms.site_batchnorm import image_count
from synthlearn.errors import SynthlearnError
from synthlearn.models.training import predict_logits
from synthlearn.sitework.exchange import Payload, load_state, state_payload
from synthlearn.sitework.sites import Site, SiteEnv, SiteTask

if TYPE_CHECKING:
    from synthlearn.arms.context import ArmContext

SHARES = "per-class logit biases fitted on the site's images, and its image count"

#: Fixed-point iterations and the change in ``b`` below which they stop.
MAX_ITERATIONS = 200
TOLERANCE = 1e-6

#: Pseudo-count added to every class's count: a class a site lacks gets a finite bias.
PSEUDO_COUNT = 1.0


@attrs.frozen
class CalibrateConfig:
    """The site task's config: nothing but a tag (the model arrives as the inbound)."""

    what: str = "prior-matching-biases"


def fit_biases(logits: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """The biases ``b`` (num_classes,) for which ``mean(softmax(logits + b))`` equals the
    class shares of ``labels`` (each count plus ``PSEUDO_COUNT``); ``b`` sums to zero."""
    logits = np.asarray(logits, np.float64)
    counts = np.bincount(np.asarray(labels, np.int64), minlength=num_classes) + PSEUDO_COUNT
    shares = counts / counts.sum()
    bias = np.zeros(num_classes)
    for _ in range(MAX_ITERATIONS):
        shifted = logits + bias
        shifted -= shifted.max(axis=1, keepdims=True)
        probs = np.exp(shifted)
        probs /= probs.sum(axis=1, keepdims=True)
        step = np.log(shares) - np.log(np.clip(probs.mean(axis=0), 1e-300, None))
        bias += step
        bias -= bias.mean()
        if np.abs(step).max() < TOLERANCE:
            break
    return bias


def site_biases(site: Site, config: CalibrateConfig, inbound: Payload | None, env: SiteEnv
                ) -> Payload:
    """Site work: load the server's model, fit the biases on this site's images, send back
    only ``bias`` and ``n``."""
    if inbound is None:
        raise ValueError("calibration needs the server's model")
    factory, model = env.new_model()
    load_state(model, inbound, "server")
    logits = predict_logits(model, site.data.images, device=factory.training.device)
    bias = fit_biases(logits, site.data.labels, env.num_classes)
    return Payload({"bias": torch.from_numpy(bias)}, {"n": len(site.data)})


def output_bias(model: nn.Module) -> torch.Tensor:
    """The bias of the model's classifier layer: ``get_classifier()`` (timm models), or
    the last layer of an ``nn.Sequential``; a model with neither cannot be calibrated."""
    getter = getattr(model, "get_classifier", None)
    if callable(getter):
        head = getter()
    elif isinstance(model, nn.Sequential) and len(model):
        head = model[-1]
    else:
        head = None
    bias = getattr(head, "bias", None)
    if not isinstance(bias, torch.Tensor):
        raise SynthlearnError("calibrate needs a model whose output layer has a bias "
                              "(found through get_classifier(), as timm models offer, or "
                              "as the last layer of an nn.Sequential)")
    return bias


def apply_biases(model: nn.Module, received: Mapping[int, Payload], num_classes: int
                 ) -> list[float]:
    """Add the image-weighted mean of the sites' biases to the model's output bias and
    return it. A malformed payload is an error naming its site."""
    bias = output_bias(model)
    total, weighted = 0, np.zeros(num_classes)
    for sid, payload in sorted(received.items()):
        n, value = image_count(payload, sid, "calibration"), payload.tensors.get("bias")
        if value is None or value.shape != (num_classes,) or not torch.isfinite(value).all():
            raise SynthlearnError(f"calibration biases missing, not {num_classes} values or "
                                  "not finite", where=f"site {sid}")
        weighted += n * value.double().numpy()
        total += n
    mean = weighted / total
    with torch.no_grad():
        bias.add_(torch.from_numpy(mean).to(bias.dtype))
    return [float(v) for v in mean]


def calibrate_at_sites(ctx: ArmContext, model: nn.Module) -> list[float]:
    """Send ``model`` to every site of ``ctx``, add the size-weighted mean of the biases
    the sites fit on their own images to its output bias, and return that mean."""
    output_bias(model)  # fail before anything crosses
    task = SiteTask("calibrate", site_biases, CalibrateConfig(), shares=SHARES)
    return apply_biases(model, ctx.run_sites(task, inbound=state_payload(model)),
                        ctx.num_classes)
