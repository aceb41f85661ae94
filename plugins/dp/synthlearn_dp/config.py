"""The recipe params of the ``opacus`` DP mechanism (the arm's ``dp:`` slot)."""

from __future__ import annotations

from typing import Any

import attrs
from synthlearn import in_open_unit

CLIPPINGS: tuple[str, ...] = ("flat", "adaptive")
ACCOUNTANTS: tuple[str, ...] = ("rdp", "prv", "gdp")


def _positive(_instance: object, attribute: attrs.Attribute, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"'{attribute.name}' must be a number > 0, got {value!r}")


@attrs.frozen
class OpacusConfig:
    """DP-SGD through Opacus (Abadi et al. 2016), with the adaptive clipping of Andrew
    et al. (2021).

    Each step, every example's gradient is clipped to norm ``max_grad_norm`` and
    Gaussian noise of standard deviation ``noise multiplier × max_grad_norm`` is added to
    their sum. The noise multiplier is found once for the arm's whole run at each site
    (every round, every step) so that the accountant's ε at ``delta`` is at most
    ``target_epsilon``; or it is given (``noise_multiplier``, then ``target_epsilon`` is
    null) and ε is what the accountant says.

    ``clipping: adaptive`` moves the bound each step towards the
    ``target_unclipped_quantile`` of the per-example norms (geometric update with
    ``clipbound_learning_rate``, kept in [``min_clipbound``, ``max_clipbound``],
    starting at ``max_grad_norm``). The count of unclipped examples is noised too (std
    ``unclipped_num_std``; null: the expected batch / 20, the paper's choice) and the
    gradient noise is raised to σ_g = (σ⁻² − (2·unclipped_num_std)⁻²)^(−1/2), so the
    pair costs what one Gaussian mechanism of multiplier σ costs; that needs
    σ < 2·unclipped_num_std.

    ``accountant`` is ``rdp`` (Rényi DP, the usual one), ``prv`` (privacy random
    variables, tighter) or ``gdp`` (Gaussian DP, an approximation for many steps).
    """

    target_epsilon: float | None = attrs.field(
        default=8.0, validator=_positive,
        metadata={"doc": "the budget's ε at `delta` for the arm's whole run at a site (null: "
                         "`noise_multiplier` is given instead)"})
    delta: float = attrs.field(
        default=1e-5, validator=in_open_unit,
        metadata={"doc": "the budget's δ, in (0, 1); must be below 1/n at every site"})
    noise_multiplier: float | None = attrs.field(
        default=None, validator=_positive,
        metadata={"doc": "a fixed noise multiplier instead of a target ε (then `target_epsilon`"
                         " is null and ε is the accountant's)"})
    max_grad_norm: float = attrs.field(
        default=1.0, validator=_positive,
        metadata={"doc": "per-example clipping bound (adaptive: its starting value)"})
    clipping: str = attrs.field(
        default="flat", validator=attrs.validators.in_(CLIPPINGS),
        metadata={"doc": "`flat` (a fixed bound) or `adaptive` (the bound follows a quantile of"
                         " the per-example norms, Andrew et al. 2021)"})
    target_unclipped_quantile: float = attrs.field(
        default=0.5, validator=in_open_unit,
        metadata={"doc": "adaptive: the share of examples left unclipped the bound aims at"})
    clipbound_learning_rate: float = attrs.field(
        default=0.2, validator=_positive,
        metadata={"doc": "adaptive: learning rate of the bound's geometric update"})
    min_clipbound: float = attrs.field(
        default=0.01, validator=_positive,
        metadata={"doc": "adaptive: the bound's lower limit"})
    max_clipbound: float = attrs.field(
        default=100.0, validator=_positive,
        metadata={"doc": "adaptive: the bound's upper limit"})
    unclipped_num_std: float | None = attrs.field(
        default=None, validator=_positive,
        metadata={"doc": "adaptive: noise std of the unclipped count (null: expected batch / "
                         "20)"})
    accountant: str = attrs.field(
        default="rdp", validator=attrs.validators.in_(ACCOUNTANTS),
        metadata={"doc": "`rdp`, `prv` (tighter) or `gdp`"})
    epsilon_tolerance: float = attrs.field(
        default=0.01, validator=_positive,
        metadata={"doc": "how far below `target_epsilon` the noise search may stop"})

    def __attrs_post_init__(self) -> None:
        if (self.target_epsilon is None) == (self.noise_multiplier is None):
            raise ValueError("give exactly one of 'target_epsilon' and 'noise_multiplier' "
                             "(set the other to null)")
        if self.min_clipbound >= self.max_clipbound:
            raise ValueError(f"'min_clipbound' ({self.min_clipbound}) must be below "
                             f"'max_clipbound' ({self.max_clipbound})")
        if self.clipping == "adaptive" and not (
                self.min_clipbound <= self.max_grad_norm <= self.max_clipbound):
            raise ValueError(f"'max_grad_norm' ({self.max_grad_norm}) starts the adaptive "
                             f"bound: it must lie in [{self.min_clipbound}, "
                             f"{self.max_clipbound}]")
