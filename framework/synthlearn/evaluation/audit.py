"""Membership audits: how much an arm's released model gives away about who trained it.

For every model an arm releases (its one server model, or each site's model for arms
scored per site) the audit builds a *candidate pool*: equal numbers of **members** (real
training images of the sites that model learned from; for a synthetic arm, the images
its generators were fitted on) and **non-members** (real images no arm trained on: the
held-out test split). Each attack in the recipe scores every candidate; the audit turns
the scores into AUC, TPR at low FPR and balanced accuracy (``synthlearn.evaluation.privacy``).

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

Nothing is trained twice (``synthlearn.evaluation.audit_store``): a ``reference: real`` model
depends only on the candidates, the data, the seed and the plain model, all the same for
every arm of a run (the audit's seeds follow the recipe's seed, never the arm), so it is
trained for the first arm that needs it and reused by the others; with a site cache
every model the audit trains and every arm's finished audit are stored, so a re-run
after a kill resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np
import torch.nn as nn

from synthlearn.arms.site_steps import finish_site_model
from synthlearn.data.types import ImageData
from synthlearn.errors import SynthlearnError
from synthlearn.evaluation.audit_store import (
    CACHED,
    FORMAT,
    SHARED,
    TRAINED,
    ArmAudit,
    AuditStore,
    Trainer,
)
from synthlearn.evaluation.privacy import attack_metrics, roc_auc, roc_curve, tpr_at_fpr
from synthlearn.loading.code_identity import code_versions
from synthlearn.models import training
from synthlearn.models.training import predict_logits
from synthlearn.params import make_converter
from synthlearn.sitework.cache import cache_key
from synthlearn.sitework.exchange import Ledger, state_payload
from synthlearn.sitework.sites import Site, derive_seed, seeded_model

if TYPE_CHECKING:
    from synthlearn.arms.context import ArmContext, ArmResult
    from synthlearn.recipe import Component

#: At most this many members and as many non-members per audited model.
MAX_PER_SIDE = 1000

REFERENCES: tuple[str, ...] = ("arm", "real")

__all__ = ["MAX_PER_SIDE", "REFERENCES", "ArmAudit", "Audit", "AttackContext",
           "AuditStore", "CandidatePool", "Trainer", "arm_audit_key", "arm_trainer", "audit_arm",
           "real_trainer", "score_attack", "split_like_sites"]


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


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Audit:
    """The audit of one released model: its candidate pool, its control model and the
    reference models, built lazily and shared by every attack.

    ``trainers`` has ``"arm"`` (the arm's procedure: the control and ``reference: arm``)
    and ``"real"`` (the plain classifier). Every model comes from ``store`` when it holds
    one made under the same key (trained for an earlier arm of the run, or by an earlier
    run), else it is trained and given to the store. ``sources`` records where each
    reference model came from and ``reference_seconds`` the seconds of those trained
    here; ``control_source`` the same for the control.
    """

    def __init__(self, *, label: str, target: nn.Module, member_sites: dict[int, ImageData],
                 holdout: ImageData, num_classes: int, trainers: dict[str, Trainer],
                 seed: int, store: AuditStore, arm: str = "", device: str = "cpu",
                 progress: bool = False) -> None:
        self.label = label
        self.target = target
        self.member_sites = member_sites
        self.num_classes = num_classes
        self.seed = seed
        self.device = device
        self.progress = progress
        self.arm = arm
        self.pool = CandidatePool.draw(member_sites, holdout, derive_seed(seed, "pool", label))
        self._trainers = trainers
        self._store = store
        self._control: nn.Module | None = None
        self._references: dict[str, list[tuple[nn.Module, np.ndarray]]] = {}
        # keyed by id(model); the model is kept alongside so its id cannot be reused
        self._outputs: dict[int, tuple[nn.Module, np.ndarray]] = {}
        self.reference_seconds: dict[str, list[float]] = {}
        self.sources: dict[str, list[str]] = {}
        self.control_source: str | None = None

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

    def _obtain(self, kind: str, parts: list[ImageData], seed: int, what: str
                ) -> tuple[nn.Module, str, float | None]:
        """The model ``kind``'s trainer makes from ``parts`` and ``seed``: from the store
        when it has it, else trained (and kept). Returns the model, where it came from
        and the seconds its training took here (None when reused)."""
        trainer = self._trainers[kind]
        key = trainer.key(parts, seed)
        where = f"arm {self.arm}, audit{' ' + self.label if self.label else ''}, {what}"
        found = self._store.find_model(key, trainer, where)
        if found is not None:
            model, source, by = found
            self._say(f"{what}: reused, trained for arm {by} earlier in this run"
                      if source == SHARED else f"{what}: reused from the cache")
            return model, source, None
        self._say(f"training the {what}")
        start = time.perf_counter()
        model = trainer.train(parts, seed)
        seconds = time.perf_counter() - start
        self._store.keep_model(key, model, trainer, self.arm)
        return model, TRAINED, seconds

    def control(self) -> nn.Module:
        """The arm's procedure on the member sites minus every member candidate."""
        if self._control is None:
            data = self.pool.without_members(self.member_sites)
            self._control, self.control_source, _ = self._obtain(
                "arm", data, derive_seed(self.seed, "control"),
                "control model (none of the candidates)")
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
        """``n`` reference models of kind ``reference`` with their IN masks; the first
        ``n`` of a larger request are the same models."""
        if reference not in REFERENCES:
            raise SynthlearnError(f"reference must be one of {', '.join(REFERENCES)}, "
                                  f"got {reference!r}")
        kept = self._references.setdefault(reference, [])
        masks = self._in_masks(n)
        n_sites = len(self.member_sites) if reference == "arm" else 1
        while len(kept) < n:
            k = len(kept)
            rng = np.random.default_rng(derive_seed(self.seed, "reference", reference, k))
            parts = self.pool.with_half(self.member_sites, masks[k], n_sites, rng)
            model, source, seconds = self._obtain(
                reference, parts, derive_seed(self.seed, "ref", reference, k),
                f"reference model {k + 1}/{n} ({reference})")
            self.sources.setdefault(reference, []).append(source)
            if seconds is not None:
                self.reference_seconds.setdefault(reference, []).append(seconds)
            kept.append((model, masks[k]))
        return kept[:n]

    def fingerprint(self) -> dict[str, Any]:
        """What determines this audit's figures besides the arm, the attacks and the
        code: the target's weights, the member sites' data and the candidates."""
        return {"label": self.label, "seed": self.seed,
                "target": _digest(state_payload(self.target).to_bytes()),
                "members": {str(sid): d.fingerprint()
                            for sid, d in sorted(self.member_sites.items())},
                "candidates": self.pool.data.fingerprint(),
                "is_member": _digest(self.pool.is_member.tobytes())}


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


def _rerun(ctx: ArmContext, arm_object: Any, sites: list[Site], seed: int) -> ArmResult:
    inner = attrs.evolve(ctx, seed=seed, sites=sites, ledger=Ledger(), curve=[],
                         progress=False, hook=_SilentHook())
    return arm_object.run(inner)


def _shape(ctx: ArmContext) -> list[Any]:
    return [ctx.num_classes, ctx.in_chans, list(ctx.image_size)]


def _skeleton(ctx: ArmContext) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        return seeded_model(ctx.model_component.build(), 0, ctx.in_chans, ctx.num_classes,
                            ctx.image_size)
    return build


def real_trainer(ctx: ArmContext) -> Trainer:
    """The plain classifier of ``reference: real``: the arm's model (the recipe's, or
    the arm's own ``model:``) trained directly on the pooled data with its training
    settings, then finished with its site steps (``adapt_bn``, ``calibrate``) on that
    same data, as the target was finished at its sites; seeded by the audit alone.
    Nothing of the arm but its model enters, so every arm with the same model shares
    it."""
    conv = make_converter()
    code = sorted({"synthlearn", ctx.model_component.registered.distribution})

    def train(parts: list[ImageData], seed: int) -> nn.Module:
        factory = ctx.model_component.build()
        model = seeded_model(factory, derive_seed(seed, "init"), ctx.in_chans,
                             ctx.num_classes, ctx.image_size)
        data = ImageData.concat(parts)
        training.train_classifier(model, data, factory.training, derive_seed(seed, "train"),
                                  progress=False, desc="audit: reference model")
        finish_site_model(model, data, ctx.num_classes, factory.training)
        return model

    identity = {"trainer": "real", "model": ctx.model_component.to_dict(conv), "shape": _shape(ctx),
                "versions": {d: ctx.versions.get(d) for d in code}}
    return Trainer(train=train, identity=identity, skeleton=_skeleton(ctx), shared=True)


def arm_trainer(ctx: ArmContext, arm_object: Any, site_ids: list[int], per_site: bool
                ) -> Trainer:
    """The arm's own procedure re-run on other data (the control, ``reference: arm``):
    the server model it releases, or (``per_site``) the one site's model."""
    conv = make_converter()

    def train(parts: list[ImageData], seed: int) -> nn.Module:
        sites = [Site(sid, data) for sid, data in zip(site_ids, parts, strict=True)]
        result = _rerun(ctx, arm_object, sites, seed)
        model = result.site_models.get(site_ids[0]) if per_site else result.model
        if model is None:
            raise SynthlearnError("the arm released no model when re-run for the audit")
        return model

    identity = {"trainer": "arm", "arm": ctx.arm.component.to_dict(conv),
                "model": ctx.model_component.to_dict(conv), "sites": site_ids, "per_site": per_site,
                "shape": _shape(ctx), "versions": dict(ctx.versions)}
    return Trainer(train=train, identity=identity, skeleton=_skeleton(ctx))


def _audits(ctx: ArmContext, arm_object: Any, result: ArmResult, holdout: ImageData,
            store: AuditStore) -> list[Audit]:
    """One audit per released model: the arm's model, or each site's. The seed follows
    the recipe's seed and the site, never the arm, so every arm of a run is attacked on
    the same candidates, and its control trains on the same data (a synthetic arm's
    control generators, fitted once at each site, serve every synthetic arm)."""
    by_id = {s.id: s for s in ctx.sites}
    common = {"holdout": holdout, "num_classes": ctx.num_classes, "store": store,
              "arm": ctx.name, "device": ctx.model_component.build().training.device,
              "progress": ctx.progress}
    plain = real_trainer(ctx)
    if result.model is not None:
        ids = sorted(by_id)
        return [Audit(label="", target=result.model,
                      member_sites={sid: by_id[sid].data for sid in ids},
                      trainers={"arm": arm_trainer(ctx, arm_object, ids, False), "real": plain},
                      seed=derive_seed(ctx.seed, "audit"), **common)]
    return [Audit(label=f"site {sid}", target=model, member_sites={sid: by_id[sid].data},
                  trainers={"arm": arm_trainer(ctx, arm_object, [sid], True), "real": plain},
                  seed=derive_seed(ctx.seed, "audit", sid), **common)
            for sid, model in sorted(result.site_models.items())]


def arm_audit_key(ctx: ArmContext, audits: list[Audit], attacks: list[Component]) -> str:
    """The cache key of an arm's finished audit: the arm and its model, the seed, the
    data and candidates of every audited model, each target's weights, the attacks'
    configs and the code of the arm, its model and the attacks."""
    conv = make_converter()
    return cache_key({
        "arm_audit": FORMAT,
        "arm": ctx.arm.component.to_dict(conv),
        "model": ctx.model_component.to_dict(conv),
        "seed": ctx.seed,
        "shape": _shape(ctx),
        "versions": dict(ctx.versions),
        "attacks": [a.to_dict(conv) for a in attacks],
        "attack_versions": code_versions(a.registered for a in attacks),
        "max_per_side": MAX_PER_SIDE,
        "audits": [a.fingerprint() for a in audits],
    })


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


def audit_arm(ctx: ArmContext, arm_object: Any, result: ArmResult, attacks: list[Component],
              holdout: ImageData, store: AuditStore | None = None) -> ArmAudit:
    """Run every attack of the recipe against the models ``result`` released.

    Per attack: the metrics of ``synthlearn.evaluation.privacy.attack_metrics`` plus
    ``control_auc`` and ``control_tpr_at_fpr_0.01`` (the same attack against the control
    model), and whatever the attack's ``describe()`` adds (e.g. its reference mode). An
    arm with one model per site reports the mean over sites and every site under
    ``sites``. Errors raised by an attack are located at its YAML path.

    ``store`` (one per run; without it, one for this arm over ``ctx.cache``) supplies
    models made earlier and keeps the new ones; an arm whose finished audit it holds
    under ``arm_audit_key`` is not audited again, and a finished audit is stored at
    once, so a run killed later resumes from it.
    """
    store = store if store is not None else AuditStore(ctx.cache)
    audits = _audits(ctx, arm_object, result, holdout, store)
    key = arm_audit_key(ctx, audits, attacks)
    stored = store.find_audit(key, where=f"arm {ctx.name}, stored audit")
    if stored is not None:
        if ctx.progress:
            print(f"  {ctx.name}: membership audit reused from the cache (finished by an "
                  "earlier run with the same arm, data, seed, attacks and code; nothing "
                  "retrained)", file=sys.stderr, flush=True)
        return ArmAudit(attacks=stored.attacks, info=_reused_info(stored.info),
                        rocs=stored.rocs)
    out, rocs = _attack_entries(audits, attacks)
    audited = ArmAudit(attacks=out, info=_info(audits), rocs=rocs)
    store.keep_audit(key, audited)
    return audited


def _attack_entries(audits: list[Audit], attacks: list[Component]
                    ) -> tuple[dict[str, Any], dict[str, dict[str, tuple[np.ndarray,
                                                                        np.ndarray]]]]:
    """Every attack's figures over ``audits`` and its ROC curves on the first one."""
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
    return out, rocs


def _info(audits: list[Audit]) -> dict[str, Any]:
    """metrics.json's ``audit`` entry: what was attacked, and where every reference
    model came from (trained here, shared with an earlier arm of the run, or from the
    cache); ``reference_seconds`` is the mean over the models trained here only."""
    used = [ref for ref in REFERENCES if any(a.sources.get(ref) for a in audits)]

    def count(ref: str, source: str) -> int:
        return sum(a.sources.get(ref, []).count(source) for a in audits)

    seconds = {ref: [s for a in audits for s in a.reference_seconds.get(ref, [])]
               for ref in used}
    return {
        "members": "real training images of the sites each released model learned from",
        "nonmembers": "real held-out images, the ones every arm is scored on (no arm trains "
                      "on them)",
        "control": "the arm's procedure re-run without any candidate",
        "models": [a.label or "server model" for a in audits],
        "n_per_side": [int(a.pool.is_member.sum()) for a in audits],
        "reference_seconds": {ref: float(np.mean(s)) for ref, s in seconds.items() if s},
        "reference_models": {ref: sum(len(a.sources.get(ref, [])) for a in audits)
                             for ref in used},
        "reference_models_trained": {ref: count(ref, TRAINED) for ref in used},
        "reference_models_shared": {ref: count(ref, SHARED) for ref in used},
        "reference_models_cached": {ref: count(ref, CACHED) for ref in used},
        "controls_cached": sum(a.control_source == CACHED for a in audits),
        "reused": False,
    }


def _reused_info(info: dict[str, Any]) -> dict[str, Any]:
    """The ``audit`` entry of an audit taken whole from the cache: nothing was trained
    in this run; what the first computation trained and its seconds per model are kept
    under ``first_computed``."""
    zero = {ref: 0 for ref in info.get("reference_models") or {}}
    return {**info, "reference_seconds": {}, "reference_models_trained": zero,
            "reference_models_shared": zero, "reference_models_cached": zero,
            "controls_cached": 0, "reused": True,
            "first_computed": {k: info.get(k) for k in ("reference_seconds",
                                                        "reference_models_trained")}}
