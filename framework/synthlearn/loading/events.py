"""Calling the plugins' event hooks so that they can watch a run but never change it.

The run and ``ArmContext`` call the event hooks (``synthlearn_on_site_done``,
``synthlearn_on_round_end``, ``synthlearn_on_arm_end``, ``synthlearn_on_run_end``)
through ``EventHooks`` (``PluginSet.events``), which:

* hands each implementation a read-only deep copy of every argument (``read_only``):
  mappings become ``FrozenDict`` and lists ``FrozenList`` (still a ``dict`` and a
  ``list``: they compare equal to the originals and ``json.dumps`` takes them), arrays
  are copies that cannot be written; changing one raises, and nothing a hook does
  reaches ``metrics.json`` or the run;
* calls the implementations one plugin at a time (in pluggy's order, its wrappers
  included), so a hook that raises is reported naming its plugin's distribution and the
  hook (``synthlearn.notices.warn``: stderr and ``metrics.json`` ``warnings``, once per
  hook, plugin and error), and the other plugins' hooks and the run go on. It does not
  change the exit status.

Every other hook (``synthlearn_run_arm``) is pluggy's own, unchanged.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, NoReturn

import numpy as np
import pluggy

from synthlearn import notices

EVENT_PREFIX = "synthlearn_on_"


class FrozenDict(dict):  # type: ignore[type-arg]
    """A ``dict`` that refuses every change (what an event hook gets for a mapping)."""

    def _refuse(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError("read-only: an event hook gets a copy it must not change")

    __setitem__ = __delitem__ = __ior__ = _refuse  # type: ignore[assignment]
    clear = pop = popitem = setdefault = update = _refuse  # type: ignore[assignment]

    def __copy__(self) -> FrozenDict:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> FrozenDict:
        return self

    def __reduce__(self) -> tuple[type, tuple[dict[Any, Any]]]:
        return (FrozenDict, (dict(self),))


class FrozenList(list):  # type: ignore[type-arg]
    """A ``list`` that refuses every change (what an event hook gets for a list): it
    still equals, and serialises as, the list it copies."""

    def _refuse(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError("read-only: an event hook gets a copy it must not change")

    __setitem__ = __delitem__ = __iadd__ = __imul__ = _refuse  # type: ignore[assignment]
    append = extend = insert = pop = remove = clear = sort = reverse = _refuse  # type: ignore[assignment]

    def __copy__(self) -> FrozenList:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> FrozenList:
        return self

    def __reduce__(self) -> tuple[type, tuple[list[Any]]]:
        return (FrozenList, (list(self),))


def read_only(value: Any) -> Any:
    """A deep copy of ``value`` that cannot be changed: mappings -> ``FrozenDict``,
    lists -> ``FrozenList``, tuples stay tuples, sets -> frozensets, arrays -> read-only
    copies; scalars and strings as they are; anything else deep-copied."""
    if isinstance(value, Mapping):
        return FrozenDict({k: read_only(v) for k, v in value.items()})
    if isinstance(value, list):
        return FrozenList(read_only(v) for v in value)
    if isinstance(value, tuple):
        return tuple(read_only(v) for v in value)
    if isinstance(value, (set, frozenset)):
        return frozenset(read_only(v) for v in value)
    if isinstance(value, np.ndarray):
        out = value.copy()
        out.flags.writeable = False
        return out
    if value is None or isinstance(value, (str, bytes, int, float, bool)):
        return value
    return copy.deepcopy(value)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


class EventHooks:
    """The plugins' hooks as the run calls them: event hooks guarded (module docstring),
    every other hook passed through. ``origins`` maps a plugin's registered name to
    ``<distribution> <version>``, for the message that names a failing hook's plugin."""

    def __init__(self, manager: pluggy.PluginManager, origins: Mapping[str, str]) -> None:
        self._manager = manager
        self._origins = dict(origins)
        self._reported: set[str] = set()  # a hook failing at every site is told once

    def __getattr__(self, name: str) -> Any:
        hook = getattr(self._manager.hook, name)
        if not name.startswith(EVENT_PREFIX):
            return hook

        def call(**kwargs: Any) -> None:
            self.emit(name, **kwargs)

        return call

    def emit(self, name: str, **kwargs: Any) -> None:
        """Call every implementation of the event hook ``name`` with read-only copies of
        ``kwargs``, one plugin at a time; one that raises becomes a warning."""
        hook = getattr(self._manager.hook, name)
        plugins: list[Any] = []
        for impl in reversed(hook.get_hookimpls()):  # pluggy calls the last registered first
            if not any(p is impl.plugin for p in plugins):
                plugins.append(impl.plugin)
        everyone = self._manager.get_plugins()
        for plugin in plugins:
            caller = self._manager.subset_hook_caller(
                name, remove_plugins=[p for p in everyone if p is not plugin])
            try:
                caller(**{k: read_only(v) for k, v in kwargs.items()})
            except Exception as exc:  # a watcher's bug must not cost the run its results
                plugin_name = self._manager.get_name(plugin) or "?"
                origin = self._origins.get(plugin_name, "unknown distribution")
                message = (f"event hook {name} of plugin {plugin_name!r} (distribution "
                           f"{origin}) failed: {_first_line(exc)}; it was skipped and the "
                           f"results are unaffected")
                if message not in self._reported:
                    self._reported.add(message)
                    notices.warn(message)
