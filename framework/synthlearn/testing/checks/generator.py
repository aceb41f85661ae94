"""``check_generator``: the contract of kind ``generator``."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch

from synthlearn.data.types import Dataset
from synthlearn.generation.conditioning import (
    CategoricalConditioning,
    CategoricalConfig,
    Conditions,
)
from synthlearn.sitework.exchange import Payload
from synthlearn.testing.checks.rules import Rules
from synthlearn.testing.recipes import tiny_dataset, tiny_sites

__all__ = ["check_generator", "looks_pickled"]

SOURCE = "check_generator: a payload under test"


def looks_pickled(tensor: torch.Tensor) -> bool:
    """A byte tensor holding a Python pickle (protocol 2 to 5): code in disguise."""
    if tensor.dtype not in (torch.uint8, torch.int8) or tensor.numel() < 3:
        return False
    raw = tensor.detach().cpu().contiguous().view(torch.uint8).flatten().numpy().tobytes()
    return raw[0] == 0x80 and 2 <= raw[1] <= 5 and raw.rstrip(b"\0").endswith(b".")


def _corruptions(good: Payload) -> list[tuple[str, Payload]]:
    """Malformed variants of a generator's payload that ``load`` must refuse."""
    names = sorted(good.tensors)
    out = [("an empty payload", Payload({}, {})),
           ("the meta without its tensors", Payload({}, dict(good.meta)))]
    if names:
        out.append((f"tensor {names[0]!r} missing",
                    Payload({k: v for k, v in good.tensors.items() if k != names[0]},
                            dict(good.meta))))
        big = max(names, key=lambda k: good.tensors[k].numel())
        tensor = good.tensors[big]
        shape = (tensor.shape[0] + 1, *tensor.shape[1:]) if tensor.ndim else (2,)
        out.append((f"tensor {big!r} of shape {tuple(shape)} instead of {tuple(tensor.shape)}",
                    Payload({**good.tensors, big: torch.zeros(shape, dtype=tensor.dtype)},
                            dict(good.meta))))
        floats = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
                  for k, v in good.tensors.items()}
        if any(v.is_floating_point() for v in good.tensors.values()):
            out.append(("non-finite weights", Payload(floats, dict(good.meta))))
    if good.meta:
        out.append(("every meta value replaced by a string",
                    Payload(dict(good.tensors), {k: "?" for k in good.meta})))
    return out


def check_generator(generator: Any, *, dataset: Dataset | None = None, seed: int = 0,
                    n: int = 8) -> None:
    """Check a generator object (unfitted, as its factory made it) against the
    ``Generator`` contract on tiny phantom data (``dataset``: 120 images of 16x16 in 2
    classes unless given), with categorical conditions. Its rules:

    * ``protocol``: it has ``check``, ``fit``, ``sample``, ``state`` and ``load``;
    * ``check accepts the data``: ``check(dataset, sites)`` passes for 2 sites of it;
    * ``unfitted is an error``: ``sample`` or ``state`` before ``fit`` raise a
      ``SynthlearnError``;
    * ``fit``: ``fit(data, conditions, num_classes, seed, progress=False)`` runs;
    * ``sample is uint8 (N, C, H, W)``: one image per condition, the data's shape;
    * ``sample is deterministic for a seed`` and ``the seed changes the samples``;
    * ``fit is deterministic for a seed``: a second fit gives the same samples;
    * ``state is safetensors + JSON``: ``state()`` is a ``Payload`` that survives
      ``to_bytes``/``from_bytes``;
    * ``nothing pickled``: no tensor of the state holds a pickle;
    * ``state/load round trip``: a fresh object loaded from the bytes samples the same
      images;
    * ``corrupted payload is a SynthlearnError``: ``load`` of an empty payload, a tensor
      missing or misshapen, non-finite weights or mangled meta raises a
      ``SynthlearnError`` naming the source, never another exception.

    Raises ``ConformanceError`` (an ``AssertionError``) naming the first rule broken.
    """
    rules = Rules("check_generator", generator)
    rules.protocol(generator, ("check", "fit", "sample", "state", "load"))
    dataset = dataset if dataset is not None else tiny_dataset()
    sites = tiny_sites(dataset, 2, seed)
    blank = copy.deepcopy(generator)
    with rules.rule("check accepts the data"):
        generator.check(dataset, sites)

    scheme = CategoricalConditioning(CategoricalConfig())
    data, k = sites[0].data, dataset.num_classes
    stats = scheme.summarize(data, k, dataset.attributes)
    conditions = scheme.encode(data.labels, data.attributes, stats)
    labels = np.arange(n, dtype=np.int64) % k
    draw: Conditions = scheme.encode(labels, {}, stats)

    unfitted = copy.deepcopy(blank)
    rules.raises_synthlearn_error("unfitted is an error", lambda: unfitted.sample(draw, 1),
                                  "sample() before fit()")
    rules.raises_synthlearn_error("unfitted is an error", lambda: unfitted.state(),
                                  "state() before fit()")

    with rules.rule("fit"):
        generator.fit(data, conditions, k, seed, progress=False, desc="check_generator")
    with rules.rule("sample is uint8 (N, C, H, W)"):
        first = generator.sample(draw, 1)
    want = (n, dataset.channels, *dataset.image_size)
    rules.require(isinstance(first, np.ndarray) and first.dtype == np.uint8
                  and first.shape == want, "sample is uint8 (N, C, H, W)",
                  f"expected uint8 {want}, got {_describe(first)}")
    rules.require(np.array_equal(generator.sample(draw, 1), first),
                  "sample is deterministic for a seed", "two draws with seed 1 differ")
    rules.require(not np.array_equal(generator.sample(draw, 2), first),
                  "the seed changes the samples", "seeds 1 and 2 gave the same images")

    again = copy.deepcopy(blank)
    with rules.rule("fit is deterministic for a seed"):
        again.fit(data, conditions, k, seed, progress=False, desc="check_generator")
        rules.require(np.array_equal(again.sample(draw, 1), first),
                      "fit is deterministic for a seed",
                      f"two fits with seed {seed} sample different images")

    with rules.rule("state is safetensors + JSON"):
        state = generator.state()
        rules.require(isinstance(state, Payload), "state is safetensors + JSON",
                      f"state() returned {type(state).__name__}, expected a Payload")
        blob = state.to_bytes()
        back = Payload.from_bytes(blob, SOURCE)
    pickled = [name for name, t in back.tensors.items() if looks_pickled(t)]
    rules.require(not pickled, "nothing pickled", f"tensor(s) {pickled} hold a pickle")

    loaded = copy.deepcopy(blank)
    with rules.rule("state/load round trip"):
        loaded.load(back, SOURCE)
        rules.require(np.array_equal(loaded.sample(draw, 1), first), "state/load round trip",
                      "the loaded generator samples other images than the fitted one")

    for what, bad in _corruptions(back):
        target = copy.deepcopy(blank)
        rules.raises_synthlearn_error("corrupted payload is a SynthlearnError",
                                      lambda t=target, b=bad: t.load(b, SOURCE),
                                      f"load() of {what}", source=SOURCE)


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"{value.dtype} {value.shape}"
    return type(value).__name__
