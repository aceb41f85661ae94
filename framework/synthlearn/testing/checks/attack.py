"""``check_attack``: the contract of kind ``attack``, against a target that memorised
its training images (so membership is there to find)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import torch
from torch import nn

from synthlearn.data.types import ImageData
from synthlearn.errors import SynthlearnError
from synthlearn.evaluation.audit import Audit, score_attack
from synthlearn.evaluation.audit_store import AuditStore, Trainer
from synthlearn.evaluation.privacy import roc_auc
from synthlearn.models.training import to_float
from synthlearn.testing.checks.rules import Rules
from synthlearn.testing.recipes import tiny_dataset

__all__ = ["check_attack", "memorising_audit"]

#: The least membership AUC an attack must reach against a model that memorised random
#: labels (the loss attack reaches about 1.0 there; chance is 0.5).
MIN_AUC = 0.6


def _mlp(in_chans: int, side: int, classes: int) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(in_chans * side * side, 64), nn.ReLU(),
                         nn.Linear(64, classes))


def _memorise(parts: list[ImageData], seed: int, classes: int) -> nn.Module:
    """A small network trained until it fits its images (random labels: memorised)."""
    data = ImageData.concat(parts)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = _mlp(data.images.shape[1], data.images.shape[2], classes)
        x, y = to_float(data.images), torch.as_tensor(data.labels)
        opt = torch.optim.Adam(net.parameters(), lr=3e-3)
        for _ in range(200):
            opt.zero_grad()
            nn.functional.cross_entropy(net(x), y).backward()
            opt.step()
    return net.eval()


def memorising_audit(seed: int = 0, classes: int = 2) -> Audit:
    """A real membership audit (``synthlearn.evaluation.audit.Audit``) of a target that
    memorised 60 phantom images of 16x16 with random labels, against 60 it never saw;
    reference and control models are trained the same way."""
    data = tiny_dataset(n_train=60, n_test=60, seed=seed)
    rng = np.random.default_rng(seed)

    def relabel(split: ImageData) -> ImageData:
        return ImageData(split.images, rng.integers(0, classes, len(split)).astype(np.int64))

    members, holdout = relabel(data.train), relabel(data.test)
    side, chans = members.images.shape[2], members.images.shape[1]
    trainer = Trainer(train=lambda parts, s: _memorise(parts, s, classes),
                      identity={"trainer": "check_attack", "classes": classes},
                      skeleton=lambda: _mlp(chans, side, classes))
    target = _memorise([members], seed, classes)
    return Audit(label="check", target=target, member_sites={0: members}, holdout=holdout,
                 num_classes=classes, trainers={"arm": trainer, "real": trainer}, seed=seed,
                 store=AuditStore(None), arm="check_attack", device="cpu")


def check_attack(attack: Any, *, seed: int = 0) -> None:
    """Check an attack object against the attack contract (``score(ctx)`` with an
    ``AttackContext``, optional ``describe()``) in a real membership audit of a small
    network that memorised its training images. Its rules:

    * ``protocol``: it has ``score``;
    * ``one finite score per candidate``: against the target and against the control;
    * ``score is deterministic``: scoring again gives the same scores;
    * ``higher scores mean members``: the attack finds the memorised images (AUC at
      least 0.6; the loss attack gets about 1.0);
    * ``describe is JSON`` (when the attack has ``describe``): a JSON-able mapping.

    Raises ``ConformanceError`` (an ``AssertionError``) naming the first rule broken.
    """
    rules = Rules("check_attack", attack)
    rules.protocol(attack, ("score",))
    audit = memorising_audit(seed)
    try:
        scores, control = score_attack(attack, audit)
    except SynthlearnError as exc:
        rules.fail("one finite score per candidate", str(exc))
    except Exception as exc:
        rules.fail("one finite score per candidate", f"score raised {type(exc).__name__}: {exc}")
    with rules.rule("score is deterministic"):
        again, _ = score_attack(attack, audit)
    rules.require(np.array_equal(again, scores), "score is deterministic",
                  "two scorings of one target differ")
    auc = roc_auc(scores, audit.pool.is_member)
    rules.require(auc >= MIN_AUC, "higher scores mean members",
                  f"membership AUC {auc:.3f} against a model that memorised its images "
                  f"(at least {MIN_AUC} expected; below 0.5 the scores are reversed)")
    describe = getattr(attack, "describe", None)
    if describe is not None:
        with rules.rule("describe is JSON"):
            described = describe()
            json.dumps(dict(described))
