"""Reading what a site sent, checked: a tensor of an exact dtype and shape, an integer
in a range. A site may be hostile, so every size it claims is checked before it sizes
anything; errors are ``SynthlearnError``s naming the ``source`` (arm and site).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from synthlearn.errors import SynthlearnError


def received_tensor(tensors: dict[str, torch.Tensor], name: str, dtype: torch.dtype,
                    shape: tuple[int | None, ...], source: str) -> np.ndarray:
    """Tensor ``name`` a site sent, as a numpy array, checked to have exactly ``dtype``
    and ``shape`` (None: any size there) before it is used; errors name ``source``."""
    tensor = tensors.get(name)
    want = "(" + ", ".join("N" if d is None else str(d) for d in shape) + ")"
    if tensor is None:
        raise SynthlearnError(f"no tensor {name!r} ({dtype} {want}) was sent", where=source)
    if tensor.dtype != dtype or tensor.dim() != len(shape) or any(
            d is not None and d != got for d, got in zip(shape, tensor.shape, strict=True)):
        raise SynthlearnError(f"tensor {name!r} is {tensor.dtype} {tuple(tensor.shape)}, "
                              f"expected {dtype} {want}", where=source)
    return tensor.numpy()


def received_count(meta: dict[str, Any], key: str, low: int, high: int, source: str) -> int:
    """Integer ``meta[key]`` a site sent, checked to lie in ``low..high``."""
    value = meta.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        text = repr(value) if len(repr(value)) < 40 else repr(value)[:37] + "..."
        raise SynthlearnError(f"{key} must be an integer in {low}..{high}, got {text}",
                              where=source)
    return value
