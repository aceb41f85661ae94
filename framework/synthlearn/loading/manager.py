"""The plugin manager: finds plugins, collects their components, reports broken ones.

Plugins come from three places, in this order:

1. the core's built-ins (``synthlearn.loading.builtin``), registered like any plugin;
2. entry points in the group ``synthlearn`` of every installed distribution, unless
   ``SYNTHLEARN_DISABLE_PLUGIN_AUTOLOAD`` is set (to anything but ``0``/empty);
3. modules named in ``SYNTHLEARN_PLUGINS`` (comma-separated import paths), which is how
   a plugin is used without installing it;
4. plugin objects handed to ``load_plugins(extra=...)`` by the calling code (a module, or
   any object with ``@hookimpl`` methods): how ``synthlearn.testing.run_recipe`` runs a
   recipe with a plugin under test, in this process, without an entry point.

``SYNTHLEARN_BLOCK_PLUGINS`` (comma-separated entry-point or module names) keeps the
named plugins out. A plugin that fails to import or to register, or two plugins that
register the same component name, are recorded as problems: ``synthlearn plugins`` lists
them beside the healthy ones, and a run stops on them with one line naming the
distribution(s) and the cause.
"""

from __future__ import annotations

import importlib
import os
import warnings
from collections.abc import Iterable
from importlib import metadata
from types import ModuleType
from typing import Any

import attrs
import pluggy

from synthlearn import hookspecs
from synthlearn.components import KINDS, ComponentSpec, RegisteredComponent, SiteTaskSpec
from synthlearn.errors import PluginError
from synthlearn.loading.events import EventHooks

ENTRY_POINT_GROUP = "synthlearn"
ENV_DISABLE_AUTOLOAD = "SYNTHLEARN_DISABLE_PLUGIN_AUTOLOAD"
ENV_BLOCK = "SYNTHLEARN_BLOCK_PLUGINS"
ENV_PLUGINS = "SYNTHLEARN_PLUGINS"
IN_PROCESS = "in-process"  # the distribution of plugin objects passed to load_plugins

REGISTRATION_HOOKS: dict[str, str] = {
    kind: f"synthlearn_register_{kind}s" for kind in KINDS
}

DEPRECATED_HOOKS: dict[str, str] = {"synthlearn_register_poolings": "arm"}
"""Old registration hook names still collected, with a deprecation warning: name -> kind."""


@attrs.define(frozen=True)
class PluginInfo:
    """One plugin as loaded: its name, the distribution that ships it, and its health."""

    name: str
    distribution: str
    version: str
    module: str
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@attrs.define(frozen=True)
class RegisteredSiteTask:
    """A site task function together with the distribution that registered it."""

    spec: SiteTaskSpec
    distribution: str
    version: str


@attrs.define
class PluginSet:
    """Everything the plugin manager found: plugins, components by kind, and problems."""

    manager: pluggy.PluginManager
    plugins: list[PluginInfo]
    components: dict[str, dict[str, RegisteredComponent]]
    problems: list[str]
    deprecations: list[str] = attrs.field(factory=list)
    owners: dict[int, PluginInfo] = attrs.field(factory=dict, repr=False)
    _site_tasks: dict[str, RegisteredSiteTask] | None = attrs.field(default=None, init=False,
                                                                     repr=False)

    def site_tasks(self) -> dict[str, RegisteredSiteTask]:
        """Every site task function the loaded plugins register
        (``synthlearn_register_site_tasks``), by ``SiteTaskSpec.path``: the allow-list a
        remote site node runs tasks from. Collected on first use (the hooks may import
        torch); a hook that fails or returns anything but ``SiteTaskSpec`` is a
        ``PluginError`` naming its distribution."""
        if self._site_tasks is not None:
            return self._site_tasks
        found: dict[str, RegisteredSiteTask] = {}
        for impl in self.manager.hook.synthlearn_register_site_tasks.get_hookimpls():
            info = self.owners.get(id(impl.plugin))
            if info is None or not info.ok:
                continue
            where = f"distribution {info.distribution} (plugin {info.name})"
            try:
                specs = list(impl.function() or [])
            except Exception as exc:
                raise PluginError(f"synthlearn_register_site_tasks failed: "
                                  f"{_one_line(exc)}", where=where) from None
            for spec in specs:
                if not isinstance(spec, SiteTaskSpec):
                    raise PluginError(f"synthlearn_register_site_tasks returned "
                                      f"{type(spec).__name__}, expected "
                                      "synthlearn.SiteTaskSpec", where=where)
                found.setdefault(spec.path, RegisteredSiteTask(spec, info.distribution,
                                                               info.version))
        self._site_tasks = found
        return found

    def raise_problems(self) -> None:
        """Stop with the first problem (broken plugin or name clash), as one line; a
        broken plugin's line says how to run without it."""
        if not self.problems:
            return
        broken = next((p for p in self.plugins if not p.ok), None)
        hint = "" if broken is None else (
            f" (fix or uninstall it, or skip it with {ENV_BLOCK}={broken.name})")
        raise PluginError(self.problems[0] + hint)

    def get(self, kind: str, name: str) -> RegisteredComponent | None:
        return self.components[kind].get(name)

    def describe_names(self, kind: str) -> str:
        """``a (dist), b (dist)``: the installed names of a kind, for error messages."""
        items = [
            f"{name} ({comp.distribution})"
            for name, comp in sorted(self.components[kind].items())
        ]
        return ", ".join(items) if items else "none installed"

    @property
    def hook(self) -> Any:
        return self.manager.hook

    @property
    def events(self) -> EventHooks:
        """The hooks as the run calls them: event hooks get read-only copies and one that
        raises is a warning naming its distribution (``synthlearn.loading.events``)."""
        return EventHooks(self.manager, {p.name: _dist_label(p) for p in self.plugins})


def _env_list(name: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]


def _autoload_disabled() -> bool:
    return os.environ.get(ENV_DISABLE_AUTOLOAD, "") not in ("", "0")


def _core_version() -> str:
    from synthlearn import __version__

    return __version__


def _entry_points() -> Iterable[tuple[metadata.EntryPoint, metadata.Distribution]]:
    seen: set[tuple[str, str]] = set()
    for dist in metadata.distributions():
        for ep in dist.entry_points:
            if ep.group != ENTRY_POINT_GROUP:
                continue
            key = (dist.metadata["Name"] or "?", ep.name)
            if key in seen:  # the same distribution visible twice on sys.path
                continue
            seen.add(key)
            yield ep, dist


MAX_REASON = 500
"""Characters of an exception's text kept in a plugin's one-line error."""


def _one_line(exc: BaseException) -> str:
    """``Type: text`` on one line: every line of the exception's text joined with "; "
    (pluggy puts the reason a hookimpl is refused on its last line), at most
    ``MAX_REASON`` characters."""
    text = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    if len(text) > MAX_REASON:
        text = text[:MAX_REASON - 3] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def load_plugins(extra: Iterable[object] = (), *, autoload: bool = True) -> PluginSet:
    """Build a plugin manager with every plugin that can be found, and collect components.

    ``extra`` are plugin objects registered last, each under its ``__name__`` (or its
    class's name) with the distribution ``in-process``; one already registered (e.g. the
    module an entry point loaded) is not registered twice. ``autoload=False`` skips the
    entry points, as ``SYNTHLEARN_DISABLE_PLUGIN_AUTOLOAD`` does.

    Never raises for a plugin's fault: problems are returned in ``PluginSet.problems``.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    blocked = set(_env_list(ENV_BLOCK))
    for name in blocked:
        pm.set_blocked(name)

    plugins: list[PluginInfo] = []
    owner: dict[int, PluginInfo] = {}

    def register(obj: Any, info: PluginInfo) -> None:
        try:
            pm.register(obj, name=info.name)
        except Exception as exc:  # a hookimpl with a wrong signature, a name clash
            plugins.append(attrs.evolve(info, error=_one_line(exc)))
            return
        plugins.append(info)
        owner[id(obj)] = info

    from synthlearn.loading import builtin

    register(builtin, PluginInfo("builtin", "synthlearn", _core_version(), builtin.__name__))

    if autoload and not _autoload_disabled():
        for ep, dist in _entry_points():
            if ep.name in blocked:
                continue
            info = PluginInfo(ep.name, dist.metadata["Name"] or "?", dist.version, ep.value)
            try:
                obj = ep.load()
            except Exception as exc:
                plugins.append(attrs.evolve(info, error=f"failed to import: {_one_line(exc)}"))
                continue
            register(obj, info)

    for module_name in _env_list(ENV_PLUGINS):
        if module_name in blocked:
            continue
        info = PluginInfo(module_name, f"{ENV_PLUGINS} module", "", module_name)
        try:
            obj = importlib.import_module(module_name)
        except Exception as exc:
            plugins.append(attrs.evolve(info, error=f"failed to import: {_one_line(exc)}"))
            continue
        register(obj, info)

    for obj in extra:
        module = obj.__name__ if isinstance(obj, ModuleType) else type(obj).__module__
        name = getattr(obj, "__name__", None) or type(obj).__name__
        if pm.is_registered(obj) or name in blocked:
            continue
        if pm.has_plugin(name):  # two objects of one class
            name = f"{name}-{id(obj):x}"
        register(obj, PluginInfo(name, IN_PROCESS, "", module))

    while True:  # each plugin with a hook no spec knows is set aside, then check again
        try:
            pm.check_pending()
            break
        except pluggy.PluginValidationError as exc:
            bad = owner.pop(id(exc.plugin), None)
            pm.unregister(exc.plugin)
            if bad is not None:
                plugins[plugins.index(bad)] = attrs.evolve(bad, error=_one_line(exc))

    components, clash_problems, plugins = _collect_components(pm, owner, plugins)
    deprecations = _deprecations(pm, owner)
    for message in deprecations:  # for Python callers; the CLI shows them as warnings
        warnings.warn(message, DeprecationWarning, stacklevel=2)
    problems = [
        f"plugin {p.name!r} from distribution {p.distribution} is broken: {p.error}"
        for p in plugins
        if not p.ok
    ] + clash_problems
    return PluginSet(pm, plugins, components, problems, deprecations, owner)


def _deprecations(pm: pluggy.PluginManager, owner: dict[int, PluginInfo]) -> list[str]:
    """One line per plugin that implements an old registration hook name."""
    lines = []
    for old, kind in DEPRECATED_HOOKS.items():
        for impl in getattr(pm.hook, old).get_hookimpls():
            info = owner.get(id(impl.plugin))
            if info is not None:
                lines.append(f"plugin {info.name!r} from distribution {_dist_label(info)} "
                             f"implements {old}, a deprecated name: rename it "
                             f"{REGISTRATION_HOOKS[kind]}")
    return lines


def _dist_label(info: PluginInfo) -> str:
    """``name version`` of the plugin's distribution (just the name when unversioned)."""
    return f"{info.distribution} {info.version}".strip()


def _collect_components(
    pm: pluggy.PluginManager,
    owner: dict[int, PluginInfo],
    plugins: list[PluginInfo],
) -> tuple[dict[str, dict[str, RegisteredComponent]], list[str], list[PluginInfo]]:
    """Call every registration hook implementation, attributing each spec to its plugin."""
    components: dict[str, dict[str, RegisteredComponent]] = {kind: {} for kind in KINDS}
    problems: list[str] = []
    failed: dict[str, str] = {}  # plugin name -> why its registration failed
    hook_kinds = [*((hook_name, kind) for kind, hook_name in REGISTRATION_HOOKS.items()),
                  *DEPRECATED_HOOKS.items()]
    for hook_name, kind in hook_kinds:
        hook = getattr(pm.hook, hook_name)
        for impl in hook.get_hookimpls():  # registration order: built-ins first
            info = owner.get(id(impl.plugin))
            if info is None or info.name in failed:
                continue
            try:
                specs = list(impl.function() or [])
                for spec in specs:
                    if not isinstance(spec, ComponentSpec):
                        raise TypeError(f"{hook_name} returned {type(spec).__name__}, "
                                        "expected synthlearn.ComponentSpec")
            except Exception as exc:
                failed[info.name] = f"{hook_name} failed: {_one_line(exc)}"
                continue
            for spec in specs:
                existing = components[kind].get(spec.name)
                if existing is not None:
                    problems.append(
                        f"{kind} {spec.name!r} is registered twice: by distribution "
                        f"{existing.distribution} (plugin {existing.plugin}) and by "
                        f"distribution {info.distribution} (plugin {info.name}); "
                        f"uninstall one or block it with {ENV_BLOCK}"
                    )
                    continue
                components[kind][spec.name] = RegisteredComponent(
                    kind, spec, info.name, info.distribution, info.version
                )
    # a plugin whose registration failed contributes nothing
    for kind in KINDS:
        components[kind] = {
            name: comp for name, comp in components[kind].items() if comp.plugin not in failed
        }
    plugins = [
        attrs.evolve(p, error=failed[p.name]) if p.ok and p.name in failed else p
        for p in plugins
    ]
    return components, problems, plugins
