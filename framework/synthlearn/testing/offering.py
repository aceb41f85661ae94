"""Offering one component object to the plugin manager in this process, without an
entry point: how the checks and :func:`synthlearn.testing.make_arm_context` give a
component under test a name a recipe can ``use:``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from synthlearn.components import KINDS, ComponentSpec, NoParams
from synthlearn.hookspecs import hookimpl
from synthlearn.loading.manager import REGISTRATION_HOOKS

__all__ = ["offer"]


class _Offer:
    """A plugin object whose one registration hook returns ``spec``."""

    def __init__(self, kind: str, spec: ComponentSpec) -> None:
        self.__name__ = f"synthlearn-testing-{kind}-{spec.name}"

        def register() -> list[ComponentSpec]:
            return [spec]

        setattr(self, REGISTRATION_HOOKS[kind], hookimpl(register))


def offer(kind: str, name: str, obj: Any, *, slots: Mapping[str, str] | None = None,
          slot_defaults: Mapping[str, str | None] | None = None) -> object:
    """A plugin object that registers ``obj`` (already built) as component ``name`` of
    ``kind``, taking no params; pass it to ``run_recipe(plugins=[...])`` or
    ``make_arm_context(plugins=[...])``. ``slots``/``slot_defaults`` are the
    ``ComponentSpec``'s (an arm taking ``generator: {use: ...}``)."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; one of {', '.join(KINDS)}")
    spec = ComponentSpec(name, NoParams, lambda _config: obj, f"{name} (under test)",
                         slots=dict(slots or {}), slot_defaults=dict(slot_defaults or {}))
    return _Offer(kind, spec)
