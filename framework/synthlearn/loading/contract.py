"""The plugin contract, checked: does a component's object offer what its kind needs?

``synthlearn.interfaces`` declares, per kind, a Protocol (what every object must have)
and optional Protocols (methods the core calls when they exist). ``problems(kind, obj)``
compares an object made by a factory against them and says, one phrase per problem,
what is missing or cannot take the core's call:

* ``missing run(ctx)``: a method of the kind's Protocol the object lacks;
* ``missing attribute 'private' (bool)``: an attribute it lacks, or ``'private' must be
  a bool, got str`` when the Protocol types it ``bool`` and the value is not one;
* ``run(self) cannot take the core's call run(ctx): takes 0 positional arguments but 1
  was given``: a method whose signature does not accept the call the core makes (every
  positional parameter of the Protocol's method by position, each keyword-only one by
  name), checked with ``inspect.Signature.bind``.

The recipe checker (``synthlearn.recipe``) calls it on the object it already built to
check the component's params, so ``synthlearn validate`` reports these problems with
every other problem of the recipe, and ``synthlearn run`` before any work.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from synthlearn.interfaces import OPTIONAL, PROTOCOLS

_PLAIN_TYPES: dict[str, type] = {"bool": bool, "int": int, "str": str}


def _attributes(protocol: type) -> dict[str, str]:
    """The Protocol's data attributes and their annotations (as written)."""
    return {name: str(kind) for name, kind in vars(protocol).get("__annotations__", {}).items()}


def _methods(protocol: type) -> dict[str, Callable[..., Any]]:
    """The Protocol's public methods, in the order they are written."""
    return {name: value for name, value in vars(protocol).items()
            if inspect.isfunction(value) and not name.startswith("_")}


def _core_call(method: Callable[..., Any]) -> tuple[list[str], list[str]]:
    """The positional and the keyword argument names the core passes to ``method``
    (the Protocol's method, ``self`` left out)."""
    params = list(inspect.signature(method).parameters.values())[1:]
    positional = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY,
                                                        p.POSITIONAL_OR_KEYWORD)]
    keywords = [p.name for p in params if p.kind is p.KEYWORD_ONLY]
    return positional, keywords


def describe_call(name: str, method: Callable[..., Any]) -> str:
    """``fit(data, conditions, num_classes, seed, *, progress, desc)``: the call the core
    makes to the Protocol's ``method``, for messages and documentation."""
    positional, keywords = _core_call(method)
    args = [*positional, *(["*", *keywords] if keywords else [])]
    return f"{name}({', '.join(args)})"


def _signature_problem(name: str, member: Any, method: Callable[..., Any]) -> str | None:
    """Why ``member`` (the object's method) cannot take the core's call, or None."""
    if not callable(member):
        return f"{name} is not callable (got {type(member).__name__}); the core calls " \
               f"{describe_call(name, method)}"
    try:
        signature = inspect.signature(member)
    except (TypeError, ValueError):  # a builtin without a readable signature: trust it
        return None
    positional, keywords = _core_call(method)
    try:
        signature.bind(*positional, **{k: k for k in keywords})
    except TypeError as exc:
        return (f"{name}{signature} cannot take the core's call "
                f"{describe_call(name, method)}: {exc}")
    return None


def _attribute_problem(obj: Any, name: str, annotation: str) -> str | None:
    if not hasattr(obj, name):
        return f"missing attribute {name!r} ({annotation})"
    wanted = _PLAIN_TYPES.get(annotation)
    value = getattr(obj, name)
    if wanted is not None and type(value) is not wanted:
        return f"{name!r} must be a {annotation}, got {type(value).__name__}"
    return None


def problems(kind: str, obj: Any) -> list[str]:
    """What ``obj`` (made by a factory of ``kind``) lacks or cannot take, one phrase per
    problem; empty when it meets its kind's contract."""
    protocol = PROTOCOLS[kind]
    found: list[str] = []
    for name, annotation in _attributes(protocol).items():
        problem = _attribute_problem(obj, name, annotation)
        if problem:
            found.append(problem)
    for name, method in _methods(protocol).items():
        member = getattr(obj, name, None)
        if member is None:
            found.append(f"missing {describe_call(name, method)}")
            continue
        problem = _signature_problem(name, member, method)
        if problem:
            found.append(problem)
    for optional in OPTIONAL[kind]:
        for name, method in _methods(optional).items():
            member = getattr(obj, name, None)
            problem = None if member is None else _signature_problem(name, member, method)
            if problem:
                found.append(problem)
    return found
