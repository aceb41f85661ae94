"""The recipe params of the ``fedavg`` arm."""

from __future__ import annotations

from typing import Any, ClassVar

import attrs
from synthlearn.api import OPTIMIZERS

WEIGHTINGS: tuple[str, ...] = ("examples", "uniform")
LR_DECAYS: tuple[str, ...] = ("cosine", "constant")


def _fraction(_instance: object, attribute: attrs.Attribute, value: float) -> None:
    if isinstance(value, bool) or not 0.0 < value <= 1.0:
        raise ValueError(f"'{attribute.name}' must be in (0, 1], got {value!r}")


def _int_at_least(low: int) -> Any:
    def check(_instance: object, attribute: attrs.Attribute, value: int) -> None:
        if isinstance(value, bool) or value < low:
            raise ValueError(f"'{attribute.name}' must be an integer >= {low}, got {value!r}")
    return check


@attrs.frozen
class FedAvgConfig:
    """Federated averaging (McMahan et al., 2017), with FedProx (Li et al., 2020).

    Each of ``rounds`` rounds, the server sends the global model to a ``fraction`` of
    the sites (at least one, drawn with the recipe's seed); each trains it for
    ``local_epochs`` epochs on its own images with the recipe model's optimizer and
    batch size and sends the weights back; the server averages them, weighting each
    site by its number of images (``weighting: examples``) or equally (``uniform``),
    and moves the global model ``server_lr`` of the way to that average (1.0: plain
    FedAvg). ``mu > 0`` adds FedProx's proximal term ``mu/2 * ||w - w_global||^2`` to
    every local step, which keeps non-IID sites from drifting apart.

    Sites train with the model's batch size unless ``local_batch_size`` is set: a site
    holding a third of the data takes a third of the steps per epoch that centralized
    training takes, and a smaller local batch gives it back the same number of steps.

    ``local_optimizer`` and ``local_lr`` replace the model's optimizer (``adamw`` or
    ``sgd``) and learning rate at the sites (None: the model's). Each round starts a
    fresh optimizer, as in FedAvg, so an adaptive optimizer's moment estimates restart.

    The local learning rate is ``local_lr`` or the model's ``lr``, decayed over the rounds by
    ``lr_decay`` (``cosine``: as a centralized run's schedule decays over its epochs,
    constant within a round; ``constant``: never). The global model is scored on the
    test set every ``eval_every`` rounds and after the last.

    ``refresh_bn`` (on by default) has each site recompute its model's batch-norm
    running statistics over its own images before sending it: the running averages
    left by one short local epoch lag the weights so far that the averaged model can
    score at chance in eval mode (10-class digits, 3 sites, one epoch per round: 0.10
    after round 0 without, 0.90 with; the statistics recomputed at the server on all
    the data would give 0.94). It costs one forward pass and no extra bytes.

    The final model's site steps (``adapt_bn``, ``calibrate``) and the training options
    (``mixup``, ``label_smoothing``) are the model's settings (``model.params``), taken
    by every arm alike; the sites' local training uses them too. ``adapt_bn`` matters
    most here: the averaged batch-norm statistics of the last round belong to the
    sites' locally trained weights, not to their average.
    """

    __synthlearn_moved__: ClassVar[dict[str, str]] = {
        name: f"$.model.params.{name}" for name in ("adapt_bn", "calibrate")}

    rounds: int = attrs.field(
        default=10, validator=_int_at_least(1),
        metadata={"doc": "communication rounds (>= 1)"})
    local_epochs: int = attrs.field(
        default=1, validator=_int_at_least(1),
        metadata={"doc": "epochs each site trains the global model per round (>= 1)"})
    fraction: float = attrs.field(
        default=1.0, validator=_fraction,
        metadata={"doc": "share of the sites that take part in a round, in (0, 1]; at least one,"
                         " drawn with the recipe's seed"})
    weighting: str = attrs.field(
        default="examples", validator=attrs.validators.in_(WEIGHTINGS),
        metadata={"doc": "average the sites' weights by their number of images (`examples`) or "
                         "equally (`uniform`)"})
    server_lr: float = attrs.field(
        default=1.0, validator=attrs.validators.gt(0.0),
        metadata={"doc": "how far the global model moves towards the average each round (1.0: "
                         "plain FedAvg)"})
    mu: float = attrs.field(
        default=0.0, validator=attrs.validators.ge(0.0),
        metadata={"doc": "FedProx proximal term `mu/2 * ||w - w_global||^2` on every local step;"
                         " > 0 keeps non-IID sites from drifting apart"})
    lr_decay: str = attrs.field(
        default="cosine", validator=attrs.validators.in_(LR_DECAYS),
        metadata={"doc": "local learning rate over the rounds: `cosine` (as a centralized "
                         "schedule decays over its epochs) or `constant`"})
    eval_every: int = attrs.field(
        default=1, validator=_int_at_least(1),
        metadata={"doc": "score the global model on the test set every this many rounds, and "
                         "after the last (>= 1)"})
    local_batch_size: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(_int_at_least(1)),
        metadata={"doc": "the sites' batch size (null: the model's); a smaller one gives a small"
                         " site back the steps per epoch centralized training takes"})
    local_optimizer: str | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.in_(OPTIMIZERS)),
        metadata={"doc": "the sites' optimizer (null: the model's); each round starts a fresh "
                         "one, as in FedAvg"})
    local_lr: float | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.gt(0.0)),
        metadata={"doc": "the sites' learning rate (null: the model's `lr`)"})
    refresh_bn: bool = attrs.field(
        default=True, validator=attrs.validators.instance_of(bool),
        metadata={"doc": "each site recomputes its model's batch-norm statistics on its own "
                         "images before sending it (one forward pass, no extra bytes); without "
                         "it the averaged model can score at chance in eval mode"})
