"""The server side of a federated round, shared by every arm that averages networks
across sites (the ``fedavg`` plugin's models, the ``gan`` plugin's ``fedgan``
generator and discriminator): which sites take part, what a site sent checked against
the global state, and the weighted average."""

from __future__ import annotations

from collections.abc import Collection, Mapping

import numpy as np
import torch

from synthlearn.errors import SynthlearnError

#: A network's weights by name (a ``state_dict``).
State = dict[str, torch.Tensor]


def choose_sites(site_ids: list[int], fraction: float, seed: int) -> list[int]:
    """``max(1, round(fraction * n))`` of the sites, drawn with ``seed``, in id order."""
    k = max(1, round(fraction * len(site_ids)))
    if k >= len(site_ids):
        return list(site_ids)
    rng = np.random.default_rng(seed)
    return sorted(int(s) for s in rng.choice(site_ids, size=k, replace=False))


def check_update(update: Mapping[str, torch.Tensor], reference: Mapping[str, torch.Tensor],
                 source: str) -> None:
    """Raise ``SynthlearnError`` naming ``source`` unless ``update`` has exactly the
    global model's tensors (names, shapes, dtypes), all finite."""
    missing = sorted(set(reference) - set(update))
    extra = sorted(set(update) - set(reference))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}")
        if extra:
            parts.append(f"unexpected {', '.join(extra[:3])}{' ...' if len(extra) > 3 else ''}")
        raise SynthlearnError(f"model update does not fit the global model ({'; '.join(parts)})",
                              where=source)
    for name, tensor in update.items():
        ref = reference[name]
        if tensor.shape != ref.shape or tensor.dtype != ref.dtype:
            raise SynthlearnError(
                f"model update tensor {name!r} is {tensor.dtype} {tuple(tensor.shape)}, the "
                f"global model's is {ref.dtype} {tuple(ref.shape)}", where=source)
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise SynthlearnError(f"model update tensor {name!r} holds NaN or infinite values",
                                  where=source)


def average(global_state: Mapping[str, torch.Tensor], updates: list[tuple[State, float]],
            server_lr: float = 1.0, parameters: Collection[str] | None = None) -> State:
    """The next global state.

    ``updates`` holds each site's state and its weight (its number of images, or 1).
    A parameter (a name in ``parameters``; all floating-point tensors when None) moves
    ``g + server_lr * (mean - g)``, where ``mean = sum_i w_i s_i / sum_i w_i``; other
    floating-point tensors (batch-norm running statistics) take the plain weighted
    mean, since a step past it could make a variance negative. Averaging is in float64,
    cast back. Integer tensors (``num_batches_tracked``) take the largest value sent.
    """
    if not updates:
        raise ValueError("average needs at least one update")
    total = float(sum(weight for _, weight in updates))
    if total <= 0:
        raise ValueError("update weights must sum to a positive number")
    out: State = {}
    for name, current in global_state.items():
        if current.is_floating_point():
            mean = sum(state[name].double() * (weight / total) for state, weight in updates)
            step = server_lr if parameters is None or name in parameters else 1.0
            out[name] = (current.double() + step * (mean - current.double())).to(current.dtype)
        else:
            out[name] = torch.stack([state[name] for state, _ in updates]).amax(dim=0)
    return out
