"""Membership audits: how much an arm's released model gives away about who trained it.

For every model an arm releases (its one server model, or each site's model for arms
scored per site) the audit builds a *candidate pool*: equal numbers of **members** (real
training images of the sites that model learned from; for a synthetic arm, the images
its generators were fitted on) and **non-members** (real images no arm trained on: the
held-out test split). Each attack in the recipe scores every candidate; the audit turns
the scores into AUC, TPR at low FPR and balanced accuracy (``synthlearn.privacy``).

Two more models make the figures honest:

* the **control**: the arm's own procedure run again without any of the candidates
  (each member site minus its member candidates). The same attack against it must score
  about 0.5; the report shows the two side by side.
* **reference models** for attacks that need them (LiRA, RMIA): the arm's own procedure
  (``reference: arm``: for a synthetic arm, fit the generators, sample, train the
  classifier) or, cheaper, a plain classifier (``reference: real``, reported as an
  approximation). Each trains on the sites' images that are not candidates (the
  control's data) plus a random half of the candidate pool, dealt over the sites, so it
  sees as many images as the target did: a model trained on the candidates alone would
  be far less confident on every image than the target, and the attack would mistake
  the target's ordinary confidence for membership. Halves come in complementary pairs,
  so every candidate is IN for half the models and OUT for the other half. Reference
  models are shared by every attack of the same target and kept for the arm.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np
import torch.nn as nn

from synthlearn.data.types import ImageData
from synthlearn.errors import SynthlearnError
from synthlearn.exchange import Ledger
from synthlearn.privacy import attack_metrics, roc_auc, roc_curve, tpr_at_fpr
from synthlearn.sites import Site, derive_seed
from synthlearn.training import predict_logits

if TYPE_CHECKING:
    from synthlearn.arms.context import ArmContext, ArmResult
    from synthlearn.recipe import Component

#: At most this many members and as many non-members per audited model.
MAX_PER_SIDE = 1000

REFERENCES: tuple[str, ...] = ("arm", "real")

#: Trains a model from per-site data with a seed (the arm's procedure, or a plain one).
Trainer = Callable[[list[ImageData], int], nn.Module]


def split_like_sites(data: ImageData, n_sites: int, rng: np.random.Generator
                     ) -> list[ImageData]:
    """``data`` dealt into ``n_sites`` parts with the same class mix (shuffled per
    class, then round-robin)."""
    index: list[list[int]] = [[] for _ in range(n_sites)]
    turn = 0
    for c in np.unique(data.labels):
        for i in rng.permutation(np.flatnonzero(data.labels == c)):
            index[turn % n_sites].append(int(i))
            turn += 1
    return [data.subset(np.array(sorted(ix), dtype=np.int64)) for ix in index]


@attrs.define
class CandidatePool:
    """Members then non-members, equal counts; ``taken[site]`` indexes the member
    candidates within that site's training images."""

    data: ImageData
    is_member: np.ndarray
    taken: dict[int, np.ndarray]

    @classmethod
    def draw(cls, sites: dict[int, ImageData], holdout: ImageData, seed: int,
             max_per_side: int = MAX_PER_SIDE) -> CandidatePool:
        """Draw ``n = min(half the members available, len(holdout), max_per_side)``
        members uniformly over the sites' images and ``n`` non-members from ``holdout``;
        the other half (or more) of the members is left for the control to train on."""
        rng = np.random.default_rng(seed)
        owners = np.concatenate([np.full(len(d), sid) for sid, d in sorted(sites.items())])
        within = np.concatenate([np.arange(len(d)) for _, d in sorted(sites.items())])
        n = min(len(owners) // 2, len(holdout), max_per_side)
        if n < 2:
            raise SynthlearnError(f"too few images for a membership audit ({len(owners)} "
                                  f"members, {len(holdout)} non-members available)")
        pick = np.sort(rng.choice(len(owners), size=n, replace=False))
        taken = {sid: np.sort(within[pick][owners[pick] == sid]) for sid in sorted(sites)}
        members = ImageData.concat([sites[sid].subset(taken[sid]) for sid in sorted(sites)])
        out = holdout.subset(np.sort(rng.choice(len(holdout), size=n, replace=False)))
        return cls(data=ImageData.concat([members, out]),
                   is_member=np.r_[np.ones(n, bool), np.zeros(n, bool)], taken=taken)

    def without_members(self, sites: dict[int, ImageData]) -> list[ImageData]:
        """Each site's images minus its member candidates (what the control trains on)."""
        out = []
        for sid, data in sorted(sites.items()):
            keep = np.setdiff1d(np.arange(len(data)), self.taken[sid])
            out.append(data.subset(keep))
        return out

    def with_half(self, sites: dict[int, ImageData], inside: np.ndarray, n_sites: int,
                  rng: np.random.Generator) -> list[ImageData]:
        """A reference model's training data: the candidates marked in ``inside`` dealt
        over ``n_sites`` parts with the same class mix, each part joined by one site's
        non-candidate images (``n_sites`` 1: all of them in one part)."""
        rest = self.without_members(sites)
        if n_sites == 1:
            rest = [ImageData.concat(rest)]
        elif n_sites != len(rest):
            raise ValueError(f"{n_sites} parts for {len(rest)} sites")
        half = split_like_sites(self.data.subset(np.flatnonzero(inside)), n_sites, rng)
        return [ImageData.concat([r, h]) for r, h in zip(rest, half, strict=True)]


class AttackContext:
    """What an attack may use: the candidate images (never who is a member), the
    target model, predictions, and reference models.

    ``candidates`` are the images to score; ``target`` is the model under attack.
    ``logits(model)`` and ``predict(model)`` give its raw outputs and softmax
    probabilities on the candidates (computed once per model).
    ``reference_models(n, reference)`` gives ``n`` models with a boolean mask each
    (True: the candidate was in that model's training data).
    """

    def __init__(self, audit: Audit, target: nn.Module) -> None:
        self._audit = audit
        self.target = target

    @property
    def candidates(self) -> ImageData:
        return self._audit.pool.data

    @property
    def num_classes(self) -> int:
        return self._audit.num_classes

    def logits(self, model: nn.Module) -> np.ndarray:
        """The model's raw outputs on the candidates (N, classes), float64."""
        return self._audit.logits(model)

    def predict(self, model: nn.Module) -> np.ndarray:
        """Softmax probabilities on the candidates (N, classes), float64."""
        z = self.logits(model)
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def reference_models(self, n: int, reference: str = "arm"
                         ) -> list[tuple[nn.Module, np.ndarray]]:
        """``n`` reference models and their IN masks over the candidates."""
        return self._audit.reference_models(n, reference)


class Audit:
    """The audit of one released model: its candidate pool, its control model and the
    reference models, built lazily and shared by every attack."""

    def __init__(self, *, label: str, target: nn.Module, member_sites: dict[int, ImageData],
                 holdout: ImageData, num_classes: int, arm_trainer: Trainer,
                 real_trainer: Trainer, seed: int, device: str = "cpu",
                 progress: bool = False) -> None:
        self.label = label
        self.target = target
        self.member_sites = member_sites
        self.num_classes = num_classes
        self.seed = seed
        self.device = device
        self.progress = progress
        self.pool = CandidatePool.draw(member_sites, holdout, derive_seed(seed, "pool", label))
        self._trainers = {"arm": arm_trainer, "real": real_trainer}
        self._control: nn.Module | None = None
        self._references: dict[str, list[tuple[nn.Module, np.ndarray]]] = {}
        # keyed by id(model); the model is kept alongside so its id cannot be reused
        self._outputs: dict[int, tuple[nn.Module, np.ndarray]] = {}
        self.reference_seconds: dict[str, list[float]] = {}

    def _say(self, text: str) -> None:
        if self.progress:
            print(f"  audit{' ' + self.label if self.label else ''}: {text}",
                  file=sys.stderr, flush=True)

    def logits(self, model: nn.Module) -> np.ndarray:
        """The model's outputs on the candidates, computed once per model the audit
        holds (target, control, references)."""
        key = id(model)
        if key not in self._outputs:
            self._outputs[key] = (model, predict_logits(model, self.pool.data.images,
                                                        device=self.device))
        return self._outputs[key][1]

    def control(self) -> nn.Module:
        """The arm's procedure on the member sites minus every member candidate."""
        if self._control is None:
            self._say("training the control model (none of the candidates)")
            data = self.pool.without_members(self.member_sites)
            self._control = self._trainers["arm"](data, derive_seed(self.seed, "control"))
        return self._control

    def _in_masks(self, n: int) -> list[np.ndarray]:
        rng = np.random.default_rng(derive_seed(self.seed, "halves", self.label))
        size = len(self.pool.data)
        masks = []
        while len(masks) < n:
            mask = np.zeros(size, bool)
            mask[rng.permutation(size)[: size // 2]] = True
            masks += [mask, ~mask]
        return masks[:n]

    def reference_models(self, n: int, reference: str) -> list[tuple[nn.Module, np.ndarray]]:
        if reference not in REFERENCES:
            raise SynthlearnError(f"reference must be one of {', '.join(REFERENCES)}, "
                                  f"got {reference!r}")
        kept = self._references.setdefault(reference, [])
        times = self.reference_seconds.setdefault(reference, [])
        masks = self._in_masks(n)
        n_sites = len(self.member_sites) if reference == "arm" else 1
        while len(kept) < n:
            k = len(kept)
            self._say(f"reference model {k + 1}/{n} ({reference})")
            rng = np.random.default_rng(derive_seed(self.seed, "reference", reference, k))
            parts = self.pool.with_half(self.member_sites, masks[k], n_sites, rng)
            start = time.perf_counter()
            model = self._trainers[reference](parts, derive_seed(self.seed, "ref", reference, k))
            times.append(time.perf_counter() - start)
            kept.append((model, masks[k]))
        return kept[:n]


def score_attack(attack: Any, audit: Audit) -> tuple[np.ndarray, np.ndarray]:
    """The attack's scores against the target and against the control, each checked
    (one finite score per candidate)."""
    out = []
    for model in (audit.target, audit.control()):
        scores = np.asarray(attack.score(AttackContext(audit, model)), dtype=np.float64)
        if scores.shape != (len(audit.pool.data),) or not np.isfinite(scores).all():
            raise SynthlearnError(f"attack returned scores of shape {scores.shape} (finite: "
                                  f"{bool(np.isfinite(scores).all())}); expected one finite "
                                  f"score per candidate ({len(audit.pool.data)})")
        out.append(scores)
    return out[0], out[1]


# --------------------------------------------------------------------------- one arm


class _SilentHook:
    """Stands in for the plugin hook while the audit re-runs an arm: trackers see the
    real run's events only."""

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda **_: None


@attrs.define
class ArmAudit:
    """What auditing one arm gives: metrics.json's ``attacks`` and ``audit`` entries,
    and the ROC curves for the figure (attack -> target and control (fpr, tpr))."""

    attacks: dict[str, Any]
    info: dict[str, Any]
    rocs: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]


def _rerun(ctx: ArmContext, pooling: Any, sites: list[Site], seed: int) -> ArmResult:
    inner = attrs.evolve(ctx, seed=seed, sites=sites, ledger=Ledger(), curve=[],
                         progress=False, hook=_SilentHook())
    return pooling.run(inner)


def _audits(ctx: ArmContext, pooling: Any, result: ArmResult, holdout: ImageData
            ) -> list[Audit]:
    """One audit per released model: the arm's model, or each site's. The seed follows
    the recipe's seed and the site, never the arm, so every arm of a run is attacked on
    the same candidates, and its control trains on the same data (a synthetic arm's
    control generators, fitted once at each site, serve every synthetic arm)."""
    by_id = {s.id: s for s in ctx.sites}
    device = ctx.model.build().training.device

    def real_trainer(parts: list[ImageData], seed: int) -> nn.Module:
        plain = attrs.evolve(ctx, seed=seed, progress=False)
        return plain.train(ImageData.concat(parts), "reference")

    common = {"holdout": holdout, "num_classes": ctx.num_classes, "real_trainer": real_trainer,
              "device": device, "progress": ctx.progress}
    if result.model is not None:
        ids = sorted(by_id)

        def arm_trainer(parts: list[ImageData], seed: int) -> nn.Module:
            sites = [Site(sid, data) for sid, data in zip(ids, parts, strict=True)]
            model = _rerun(ctx, pooling, sites, seed).model
            if model is None:
                raise SynthlearnError("the arm released no model when re-run for the audit")
            return model

        return [Audit(label="", target=result.model,
                      member_sites={sid: by_id[sid].data for sid in ids},
                      arm_trainer=arm_trainer, seed=derive_seed(ctx.seed, "audit"),
                      **common)]
    audits = []
    for sid, model in sorted(result.site_models.items()):

        def site_trainer(parts: list[ImageData], seed: int, sid: int = sid) -> nn.Module:
            return _rerun(ctx, pooling, [Site(sid, parts[0])], seed).site_models[sid]

        audits.append(Audit(label=f"site {sid}", target=model,
                            member_sites={sid: by_id[sid].data}, arm_trainer=site_trainer,
                            seed=derive_seed(ctx.seed, "audit", sid), **common))
    return audits


def _mean_over(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in rows[0]:
        values = [r[key] for r in rows]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            out[key] = float(np.mean(values))
        elif key == "not_available":
            out[key] = values[0]
        elif all(v is None for v in values):
            out[key] = None
    return out


def audit_arm(ctx: ArmContext, pooling: Any, result: ArmResult, attacks: list[Component],
              holdout: ImageData) -> ArmAudit:
    """Run every attack of the recipe against the models ``result`` released.

    Per attack: the metrics of ``synthlearn.privacy.attack_metrics`` plus
    ``control_auc`` and ``control_tpr_at_fpr_0.01`` (the same attack against the control
    model), and whatever the attack's ``describe()`` adds (e.g. its reference mode). An
    arm with one model per site reports the mean over sites and every site under
    ``sites``. Errors raised by an attack are located at its YAML path.
    """
    audits = _audits(ctx, pooling, result, holdout)
    names = [a.use for a in attacks]
    out: dict[str, Any] = {}
    rocs: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    for i, comp in enumerate(attacks):
        name = comp.use if names.count(comp.use) == 1 else f"{comp.use}-{i}"
        attack = comp.build()
        rows = []
        try:
            for audit in audits:
                scores, control = score_attack(attack, audit)
                row = attack_metrics(scores, audit.pool.is_member)
                row["control_auc"] = roc_auc(control, audit.pool.is_member)
                row["control_tpr_at_fpr_0.01"] = tpr_at_fpr(control, audit.pool.is_member,
                                                             0.01)[0]
                rows.append(row)
                if audit is audits[0]:
                    rocs[name] = {"target": roc_curve(scores, audit.pool.is_member),
                                  "control": roc_curve(control, audit.pool.is_member)}
        except SynthlearnError as exc:
            raise SynthlearnError(exc.message, where=comp.path) from None
        entry = rows[0] if len(rows) == 1 else {**_mean_over(rows), "sites": [
            {"site": int(a.label.split()[-1]), **r} for a, r in zip(audits, rows, strict=True)]}
        describe = getattr(attack, "describe", None)
        if describe is not None:
            entry.update(describe())
        out[name] = entry
    info = {
        "members": "real training images of the sites each released model learned from",
        "nonmembers": "real held-out images, the ones every arm is scored on (no arm trains "
                      "on them)",
        "control": "the arm's procedure re-run without any candidate",
        "models": [a.label or "server model" for a in audits],
        "n_per_side": [int(a.pool.is_member.sum()) for a in audits],
        "reference_seconds": {
            ref: float(np.mean([s for a in audits for s in a.reference_seconds.get(ref, [])]))
            for ref in REFERENCES
            if any(a.reference_seconds.get(ref) for a in audits)},
        "reference_models": {
            ref: sum(len(a.reference_seconds.get(ref, [])) for a in audits)
            for ref in REFERENCES if any(a.reference_seconds.get(ref) for a in audits)},
    }
    return ArmAudit(attacks=out, info=info, rocs=rocs)
