"""What a membership audit keeps: the models it trained and each arm's finished audit.

A long audit (reference models take minutes each on a CPU) must neither redo work nor
lose it:

* **within a run**, a model that does not depend on the arm (a ``reference: real``
  model: the recipe's plain classifier on the same candidates, data and seed) is trained
  once and handed to every arm that needs the same one;
* **across runs**, with the run's site cache (``output.cache``), every model the audit
  trains (control, reference models) is stored as safetensors weights, and every arm's
  finished audit (its figures, ROC curves and description) as soon as the arm is done,
  so a re-run after a kill picks up where the killed run stopped.

Entries are keyed by a hash of everything that determines them (``Trainer.key``,
``synthlearn.evaluation.audit.arm_audit_key``); whatever cannot be decoded into what it claims to
be is recomputed, with a warning.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import attrs
import numpy as np
import torch
import torch.nn as nn

from synthlearn import notices
from synthlearn.data.types import ImageData
from synthlearn.errors import SynthlearnError
from synthlearn.sitework.cache import SiteCache, cache_key
from synthlearn.sitework.exchange import Payload, load_state, state_payload

#: Bumped whenever the layout of a stored audit changes (it is part of every key).
FORMAT = 1

#: Where a model the audit uses came from.
TRAINED, SHARED, CACHED = "trained", "shared", "cached"

_AUDIT_KIND = "synthlearn-arm-audit"
_MODEL_KIND = "synthlearn-audit-model"
_AXES = ("target.fpr", "target.tpr", "control.fpr", "control.tpr")


@attrs.frozen
class Trainer:
    """How the audit trains one kind of model (the arm's procedure, or a plain
    classifier) and what, besides the training data and the seed, determines the result.

    ``train(parts, seed)`` trains on per-site data; ``identity`` is JSON-able key
    material (component configs, dataset shape, code versions); ``skeleton()`` builds an
    untrained network of the same shape to load stored weights into; ``shared``: the
    model does not depend on the arm, so other arms of the run may use it.
    """

    train: Callable[[list[ImageData], int], nn.Module]
    identity: dict[str, Any]
    skeleton: Callable[[], nn.Module]
    shared: bool = False

    def key(self, parts: list[ImageData], seed: int) -> str:
        """The cache key of the model this trainer makes from ``parts`` and ``seed``."""
        return cache_key({"audit_model": FORMAT, **self.identity, "seed": int(seed),
                          "data": [p.fingerprint() for p in parts]})


@attrs.define
class ArmAudit:
    """What auditing one arm gives: metrics.json's ``attacks`` and ``audit`` entries,
    and the ROC curves for the figure (attack -> target and control (fpr, tpr))."""

    attacks: dict[str, Any]
    info: dict[str, Any]
    rocs: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]

    def to_payload(self) -> Payload:
        """The audit as a payload: ROC points as float64 tensors, the rest as JSON
        (kept as one string, so the order of attacks and keys survives)."""
        names = list(self.rocs)
        tensors = {}
        for i, name in enumerate(names):
            for axis in _AXES:
                curve, which = axis.split(".")
                values = self.rocs[name][curve][0 if which == "fpr" else 1]
                tensors[f"roc.{i}.{axis}"] = torch.from_numpy(
                    np.ascontiguousarray(values, dtype=np.float64))
        body = json.dumps({"attacks": self.attacks, "info": self.info, "rocs": names})
        return Payload(tensors, {"kind": _AUDIT_KIND, "format": FORMAT, "body": body})

    @classmethod
    def from_payload(cls, payload: Payload) -> ArmAudit:
        """The audit ``to_payload`` stored; ``ValueError`` saying what is wrong when the
        payload is not one."""
        meta = payload.meta
        if meta.get("kind") != _AUDIT_KIND or meta.get("format") != FORMAT:
            raise ValueError("it is not a stored arm audit of this format")
        try:
            body = json.loads(meta["body"])
        except (KeyError, TypeError, ValueError):
            raise ValueError("its description is not JSON") from None
        if not isinstance(body, dict) or not isinstance(body.get("attacks"), dict) \
                or not isinstance(body.get("info"), dict) \
                or not isinstance(body.get("rocs"), list) \
                or not all(isinstance(n, str) for n in body["rocs"]):
            raise ValueError("its description lacks attacks, info or ROC names")
        rocs = {name: _roc_pair(payload, i, name) for i, name in enumerate(body["rocs"])}
        if set(body["attacks"]) != set(rocs):
            raise ValueError("its ROC curves do not match its attacks")
        return cls(attacks=body["attacks"], info=body["info"], rocs=rocs)


def _roc_pair(payload: Payload, i: int, name: str
              ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The target and control ROC curves of attack ``name`` (index ``i``), checked."""
    arrays = {}
    for axis in _AXES:
        t = payload.tensors.get(f"roc.{i}.{axis}")
        if t is None or t.dtype != torch.float64 or t.ndim != 1 or len(t) < 2:
            raise ValueError(f"the ROC curve {axis} of {name} is missing or malformed")
        a = t.numpy()
        if not (np.isfinite(a).all() and a.min() >= 0.0 and a.max() <= 1.0):
            raise ValueError(f"the ROC curve {axis} of {name} leaves [0, 1]")
        arrays[axis] = a
    out = {}
    for curve in ("target", "control"):
        fpr, tpr = arrays[f"{curve}.fpr"], arrays[f"{curve}.tpr"]
        if fpr.shape != tpr.shape:
            raise ValueError(f"the {curve} ROC curve of {name} has unequal axes")
        out[curve] = (fpr, tpr)
    return out


class AuditStore:
    """The audit's memory for one run: models trained for one arm that other arms may
    use (``Trainer.shared``), and, with a site cache, every model and every finished
    arm audit on disk."""

    def __init__(self, cache: SiteCache | None) -> None:
        self.cache = cache
        self._shared: dict[str, tuple[nn.Module, str]] = {}

    def find_model(self, key: str, trainer: Trainer, where: str
                   ) -> tuple[nn.Module, str, str] | None:
        """A model made earlier under ``key``: ``(model, SHARED, arm that trained it)``
        from this run, ``(model, CACHED, "")`` from the cache, or None."""
        if trainer.shared and key in self._shared:
            model, arm = self._shared[key]
            return model, SHARED, arm
        blob = self.cache.get(key) if self.cache is not None else None
        if blob is None:
            return None
        try:
            model = _load_model(blob, trainer)
        except (SynthlearnError, ValueError) as exc:
            notices.warn(f"stored audit model not usable ({exc}); training it again",
                         where=where)
            return None
        if trainer.shared:
            self._shared[key] = (model, "an earlier run")
        return model, CACHED, ""

    def keep_model(self, key: str, model: nn.Module, trainer: Trainer, arm: str) -> None:
        """Remember a model just trained (for other arms when shareable, and on disk)."""
        if trainer.shared:
            self._shared[key] = (model, arm)
        if self.cache is not None:
            self.cache.put(key, state_payload(model, kind=_MODEL_KIND).to_bytes())

    def find_audit(self, key: str, where: str) -> ArmAudit | None:
        """The finished audit stored under ``key``, or None (a stored one that does not
        decode is recomputed, with a warning)."""
        blob = self.cache.get(key) if self.cache is not None else None
        if blob is None:
            return None
        try:
            return ArmAudit.from_payload(Payload.from_bytes(blob, where))
        except (SynthlearnError, ValueError) as exc:
            notices.warn(f"stored audit not usable ({exc}); auditing again", where=where)
            return None

    def keep_audit(self, key: str, audit: ArmAudit) -> None:
        """Store an arm's finished audit (nothing without a cache)."""
        if self.cache is not None:
            self.cache.put(key, audit.to_payload().to_bytes())


def _load_model(blob: bytes, trainer: Trainer) -> nn.Module:
    """Stored weights loaded into a fresh network of the trainer's shape, checked to be
    the audit's and finite."""
    payload = Payload.from_bytes(blob, "stored audit model")
    if payload.meta.get("kind") != _MODEL_KIND:
        raise ValueError("it is not a model stored by the audit")
    for name, tensor in payload.tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ValueError(f"its weights {name} are not finite")
    model = load_state(trainer.skeleton(), payload, "stored audit model")
    return model.eval()
