"""Recipe params of the attacks."""

from __future__ import annotations

from typing import Any

import attrs

REFERENCES: tuple[str, ...] = ("arm", "real")


def _int_at_least(low: int) -> Any:
    def check(_instance: object, attribute: attrs.Attribute, value: int) -> None:
        if isinstance(value, bool) or value < low:
            raise ValueError(f"'{attribute.name}' must be an integer >= {low}, got {value!r}")
    return check


def _reference_field() -> Any:
    return attrs.field(default="arm", validator=attrs.validators.in_(REFERENCES), metadata={
        "doc": "what the reference models train with: `arm` (the arm's own procedure) or "
               "`real` (a plain classifier on real images, an approximation)"})


@attrs.frozen
class LossConfig:
    """The loss attack takes no parameters and trains no reference models."""


@attrs.frozen
class LiraConfig:
    """LiRA (Carlini et al., S&P 2022).

    ``reference_models`` models are trained on the non-candidate training images plus
    random halves of the candidate pool (``reference: arm``: the arm's own procedure;
    ``real``: a plain classifier, an approximation). ``variant``: ``online`` compares
    each candidate's signal with the models that trained on it (IN) and those that did
    not (OUT); ``offline`` uses the OUT models only; ``auto`` is online when every
    candidate has IN and OUT models.
    ``global_variance``: one variance over all candidates instead of one per candidate;
    ``auto`` uses it below 64 reference models, where per-candidate variances are noise.
    """

    reference_models: int = attrs.field(
        default=4, validator=_int_at_least(2),
        metadata={"doc": "reference models trained on the non-candidate training images plus "
                         "random halves of the candidate pool (>= 2)"})
    reference: str = _reference_field()
    variant: str = attrs.field(
        default="auto", validator=attrs.validators.in_(("auto", "online", "offline")),
        metadata={"doc": "`online` compares each candidate's signal with the models that trained"
                         " on it and those that did not; `offline` uses the latter only; `auto`:"
                         " online when every candidate has both"})
    global_variance: str = attrs.field(
        default="auto", validator=attrs.validators.in_(("auto", "yes", "no")),
        metadata={"doc": "one variance over all candidates instead of one per candidate; `auto` "
                         "uses it below 64 reference models, where per-candidate variances are "
                         "noise"})


@attrs.frozen
class RmiaConfig:
    """Offline RMIA (Zarifzadeh et al., ICML 2024).

    ``Pr(x)`` is estimated from the reference models that did not train on ``x`` as
    ``((1 + a) * mean p_out(x) + (1 - a)) / 2``; ``a`` corrects for OUT models
    underestimating ``Pr(x)``. A candidate's score is the share of population samples
    ``z`` (the other candidates) whose likelihood ratio it beats by more than ``gamma``.
    """

    reference_models: int = attrs.field(
        default=4, validator=_int_at_least(2),
        metadata={"doc": "reference models trained on the non-candidate training images plus "
                         "random halves of the candidate pool (>= 2)"})
    reference: str = _reference_field()
    a: float = attrs.field(
        default=0.3, validator=[attrs.validators.ge(0.0),
        attrs.validators.le(1.0)],
        metadata={"doc": "corrects for OUT models underestimating `Pr(x)`: `Pr(x) = ((1 + a) * "
                         "mean p_out(x) + (1 - a)) / 2`, in [0, 1]"})
    gamma: float = attrs.field(
        default=1.0, validator=attrs.validators.gt(0.0),
        metadata={"doc": "a candidate's score is the share of population samples whose "
                         "likelihood ratio it beats by more than `gamma` (> 0)"})
