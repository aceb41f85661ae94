"""Recipes: the YAML a researcher writes, checked into typed, resolved components.

Checking happens in two steps, and every problem is reported (not just the first), one
line each, as ``<YAML path>: <what is wrong>``:

1. the shape of the file (``RecipeFile`` and friends, structured by cattrs with strict
   scalar types and no unknown keys);
2. each ``use:`` is looked up among the installed components of its kind, and its
   ``params:`` are structured into that component's own attrs config class, then the
   component is built once so that its own checks run before any long work starts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import cattrs
import yaml
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError, IterableValidationError

from synthlearn.components import RegisteredComponent
from synthlearn.errors import RecipeError, SynthlearnError
from synthlearn.plugins import PluginSet

# --- the shape of a recipe file ---------------------------------------------------------


@attrs.define
class ComponentRef:
    """``{use: name, params: {...}}``; a bare string ``name`` means ``{use: name}``."""

    use: str
    params: dict[str, Any] = attrs.field(factory=dict)


@attrs.define
class ArmRef:
    """One entry of ``arms``: a pooling component, an optional display ``name``, and
    sub-components in the slots the pooling declares (e.g. ``generator``)."""

    use: str
    name: str | None = None
    params: dict[str, Any] = attrs.field(factory=dict)
    slots: dict[str, ComponentRef] = attrs.field(factory=dict)


@attrs.define
class SitesSection:
    """``sites``: how many sites, and how the training split is divided among them."""

    count: int = 3
    partition: ComponentRef = attrs.field(factory=lambda: ComponentRef("iid"))


@attrs.define
class OutputSection:
    """``output``: where run directories go, and the site-output cache (null: none)."""

    dir: str = "runs"
    cache: str | None = ".synthlearn-cache"


@attrs.define
class RecipeFile:
    """The whole recipe file as written (after ``--set`` overrides)."""

    name: str
    data: ComponentRef
    arms: list[ArmRef]
    seed: int = 0
    sites: SitesSection = attrs.field(factory=SitesSection)
    model: ComponentRef = attrs.field(factory=lambda: ComponentRef("timm"))
    attacks: list[ComponentRef] = attrs.field(factory=list)
    runner: ComponentRef = attrs.field(factory=lambda: ComponentRef("local"))
    output: OutputSection = attrs.field(factory=OutputSection)


# --- strict structuring ------------------------------------------------------------------


class _TypeMismatch(ValueError):
    pass


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _strict(expected: type, accept: tuple[type, ...], name: str):
    def structure(value: Any, _type: Any) -> Any:
        if isinstance(value, bool) and expected is not bool:
            raise _TypeMismatch(f"expected {name}, got {_describe(value)}")
        if not isinstance(value, accept):
            raise _TypeMismatch(f"expected {name}, got {_describe(value)}")
        return expected(value)

    return structure


def make_converter() -> cattrs.Converter:
    """A cattrs converter that never coerces ('10' is not an int, 1.5 is not an int)
    and rejects unknown keys. Plugins may use it to structure their own nested params."""
    conv = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    conv.register_structure_hook(int, _strict(int, (int,), "int"))
    conv.register_structure_hook(float, _strict(float, (int, float), "number"))
    conv.register_structure_hook(str, _strict(str, (str,), "string"))
    conv.register_structure_hook(bool, _strict(bool, (bool,), "true or false"))

    def as_mapping(value: Any, what: str) -> Mapping[str, Any]:
        """A component written as a bare name means ``{use: name}``."""
        if isinstance(value, str):
            return {"use": value}
        if not isinstance(value, Mapping):
            raise _TypeMismatch(f"expected {what} ({{use: name, params: {{...}}}}), "
                                f"got {_describe(value)}")
        return value

    def component_ref(value: Any, _type: Any) -> ComponentRef:
        return _plain.structure(dict(as_mapping(value, "a component")), ComponentRef)

    def arm_ref(value: Any, _type: Any) -> ArmRef:
        value = as_mapping(value, "an arm")
        known = {k: v for k, v in value.items() if k in ("use", "name", "params")}
        slots = {k: v for k, v in value.items() if k not in known}
        arm = _plain.structure(known, ArmRef)
        arm.slots = {k: conv.structure(v, ComponentRef) for k, v in slots.items()}
        return arm

    _plain = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    for typ in (int, float, str, bool):
        _plain.register_structure_hook(typ, conv.get_structure_hook(typ))
    conv.register_structure_hook(ComponentRef, component_ref)
    conv.register_structure_hook(ArmRef, arm_ref)
    return conv


def exception_message(exc: BaseException) -> str:
    """An exception's message: its first argument when that is a string and more follow
    (attrs validators raise ``ValueError(message, attribute, options, value)``)."""
    if len(exc.args) > 1 and isinstance(exc.args[0], str):
        return exc.args[0]
    return str(exc)


def _format_exception(exc: BaseException, type_: Any) -> str:
    if isinstance(exc, _TypeMismatch):
        return str(exc)
    if isinstance(exc, KeyError):
        return "required, missing"
    if isinstance(exc, ForbiddenExtraKeysError):
        keys = ", ".join(sorted(exc.extra_fields))
        return f"unknown key(s): {keys}"
    if isinstance(exc, (TypeError, ValueError)) and type_ is not None:
        name = getattr(type_, "__name__", str(type_))
        return f"invalid value for {name}: {exception_message(exc)}"
    return exception_message(exc) or type(exc).__name__


def structure_errors(exc: Exception, path: str) -> list[str]:
    """Turn a cattrs error into ``<path>: <message>`` lines."""
    if not isinstance(exc, (ClassValidationError, IterableValidationError)):
        return [f"{path}: {_format_exception(exc, None)}"]
    lines = []
    for message in cattrs.transform_error(exc, path=path, format_exception=_format_exception):
        text, _, where = message.rpartition(" @ ")
        where = where.replace("]['", ".").replace("['", ".").replace("']", "")
        lines.append(f"{where}: {text}")
    return lines


def structure_at(conv: cattrs.Converter, value: Any, cls: type, path: str) -> tuple[Any, list[str]]:
    """Structure ``value`` into ``cls``; on failure return ``(None, problems)``."""
    try:
        return conv.structure(value, cls), []
    except (ClassValidationError, IterableValidationError) as exc:
        return None, structure_errors(exc, path)
    except (_TypeMismatch, TypeError, ValueError, KeyError) as exc:
        return None, [f"{path}: {_format_exception(exc, cls)}"]


# --- resolved recipe ----------------------------------------------------------------------


@attrs.define(frozen=True)
class Component:
    """A component named in the recipe, with its structured config."""

    kind: str
    use: str
    config: Any
    registered: RegisteredComponent
    path: str
    slots: Mapping[str, Component] = attrs.field(factory=dict)

    def build(self) -> Any:
        """A fresh component object made by the spec's factory."""
        return self.registered.spec.factory(self.config)

    def to_dict(self, conv: cattrs.Converter) -> dict[str, Any]:
        out: dict[str, Any] = {"use": self.use, "params": conv.unstructure(self.config)}
        for slot, comp in self.slots.items():
            out[slot] = comp.to_dict(conv)
        return out


@attrs.define(frozen=True)
class Arm:
    """One arm of the comparison: its display name and its pooling component."""

    name: str
    component: Component
    model: Component


@attrs.define(frozen=True)
class Recipe:
    """A checked recipe: every component resolved against the installed plugins."""

    name: str
    seed: int
    data: Component
    sites: int
    partition: Component
    model: Component
    arms: tuple[Arm, ...]
    attacks: tuple[Component, ...]
    runner: Component
    output_dir: str
    cache_dir: str | None

    def to_dict(self) -> dict[str, Any]:
        """The resolved recipe (defaults filled in) as plain data, for recipe.yaml."""
        conv = make_converter()
        arms = []
        for arm in self.arms:
            entry = {"name": arm.name, **arm.component.to_dict(conv)}
            if arm.model is not self.model:
                entry["model"] = arm.model.to_dict(conv)
            arms.append(entry)
        return {
            "name": self.name,
            "seed": self.seed,
            "data": self.data.to_dict(conv),
            "sites": {"count": self.sites, "partition": self.partition.to_dict(conv)},
            "model": self.model.to_dict(conv),
            "arms": arms,
            "attacks": [a.to_dict(conv) for a in self.attacks],
            "runner": self.runner.to_dict(conv),
            "output": {"dir": self.output_dir, "cache": self.cache_dir},
        }


# --- loading, overrides, checking --------------------------------------------------------


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a recipe file with ``yaml.safe_load``; one clear error if it can't be read."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SynthlearnError("recipe file not found", where=str(path)) from None
    except OSError as exc:
        raise SynthlearnError(f"cannot read recipe: {exc.strerror}", where=str(path)) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SynthlearnError(f"not valid YAML: {problem}", where=where) from None
    if not isinstance(data, dict):
        raise SynthlearnError("a recipe must be a YAML mapping (name:, data:, arms:, ...)",
                              where=str(path))
    return data


_SEGMENT = re.compile(r"([A-Za-z_][\w-]*)|\[(\d+)\]")


def parse_override(text: str) -> tuple[list[str | int], Any, str]:
    """``arms[1].params.rounds=10`` -> (['arms', 1, 'params', 'rounds'], 10, path)."""
    key, sep, raw = text.partition("=")
    key = key.strip().removeprefix("$").lstrip(".")
    if not sep or not key:
        raise SynthlearnError(f"--set {text!r}: expected PATH=VALUE, e.g. model.params.epochs=3")
    parts: list[str | int] = []
    pos = 0
    while pos < len(key):
        if key[pos] == ".":
            pos += 1
        match = _SEGMENT.match(key, pos)
        if match is None:
            raise SynthlearnError(f"--set {text!r}: cannot read the path at {key[pos:]!r}")
        parts.append(match.group(1) if match.group(1) else int(match.group(2)))
        pos = match.end()
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return parts, value, "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts)


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``--set PATH=VALUE`` overrides to the raw recipe data (a copy is returned)."""
    import copy

    data = copy.deepcopy(data)
    for text in overrides:
        parts, value, path = parse_override(text)
        node: Any = data
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            here = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts[:i])
            if isinstance(part, int):
                if not isinstance(node, list) or part >= len(node):
                    size = len(node) if isinstance(node, list) else 0
                    raise SynthlearnError(f"--set {path}: {here} has no item [{part}] "
                                          f"(it has {size})")
            elif not isinstance(node, dict):
                raise SynthlearnError(f"--set {path}: {here} is not a mapping")
            if last:
                node[part] = value
            else:
                if isinstance(part, str) and (part not in node or node[part] is None):
                    node[part] = {}
                node = node[part]
    return data


def check_recipe(data: dict[str, Any], plugins: PluginSet) -> Recipe:
    """Check raw recipe data against the installed plugins; raise ``RecipeError`` listing
    every problem, or return the resolved ``Recipe``."""
    conv = make_converter()
    spec, problems = structure_at(conv, data, RecipeFile, "$")
    if spec is None:
        raise RecipeError(problems)

    def resolve(ref: ComponentRef, kind: str, path: str,
                slots: Mapping[str, ComponentRef] | None = None) -> Component | None:
        registered = plugins.get(kind, ref.use)
        if registered is None:
            problems.append(f"{path}.use: unknown {kind} {ref.use!r}; installed: "
                            f"{plugins.describe_names(kind)}")
            return None
        config, errs = structure_at(conv, ref.params, registered.spec.config, f"{path}.params")
        problems.extend(errs)
        resolved_slots = {}
        declared = registered.spec.slots
        for slot in slots or {}:
            if slot not in declared:
                allowed = ", ".join(["name", "params", *declared]) or "params"
                problems.append(f"{path}.{slot}: {kind} {ref.use!r} takes no {slot!r} "
                                f"(its keys: use, {allowed})")
        for slot, slot_kind in declared.items():
            sub = (slots or {}).get(slot)
            if sub is None:
                default = registered.spec.slot_defaults.get(slot)
                if default is None:
                    if slot in registered.spec.slot_defaults:
                        continue  # optional slot
                    problems.append(f"{path}.{slot}: required by {kind} {ref.use!r}, missing")
                    continue
                sub = ComponentRef(default)
            comp = resolve(sub, slot_kind, f"{path}.{slot}")
            if comp is not None:
                resolved_slots[slot] = comp
        if config is None:
            return None
        component = Component(kind, ref.use, config, registered, path, resolved_slots)
        try:
            component.build()
        except (SynthlearnError, ValueError) as exc:  # the component's own checks
            problems.append(f"{path}.params: {exception_message(exc)}")
            return None
        except Exception as exc:
            problems.append(f"{path}: {kind} {ref.use!r} (distribution "
                            f"{registered.distribution}) failed to build: "
                            f"{type(exc).__name__}: {exc}")
            return None
        return component

    data_c = resolve(spec.data, "dataset", "$.data")
    partition = resolve(spec.sites.partition, "partition", "$.sites.partition")
    model = resolve(spec.model, "model", "$.model")
    runner = resolve(spec.runner, "runner", "$.runner")
    if spec.sites.count < 1:
        problems.append(f"$.sites.count: must be at least 1, got {spec.sites.count}")
    if not spec.arms:
        problems.append("$.arms: at least one arm is needed")
    if not spec.name.strip() or not re.fullmatch(r"[\w.-]+", spec.name):
        problems.append(f"$.name: use letters, digits, '.', '_' or '-' (it names the run "
                        f"directory), got {spec.name!r}")

    arms: list[Arm] = []
    # an unnamed arm is called by its method, unless another unnamed arm uses the same
    # method or an arm is explicitly named so (then ``<use>-<index>``)
    unnamed = [a.use for a in spec.arms if not a.name]
    explicit = {a.name for a in spec.arms if a.name}
    taken: dict[str, int] = {}
    for i, ref in enumerate(spec.arms):
        path = f"$.arms[{i}]"
        slots = dict(ref.slots)
        model_ref = slots.pop("model", None)
        comp = resolve(ComponentRef(ref.use, ref.params), "pooling", path, slots)
        arm_model = resolve(model_ref, "model", f"{path}.model") if model_ref else model
        unique = unnamed.count(ref.use) == 1 and ref.use not in explicit
        name = ref.name or (ref.use if unique else f"{ref.use}-{i}")
        if name in taken:
            problems.append(f"{path}.name: arm name {name!r} is already used by "
                            f"$.arms[{taken[name]}]; give each arm its own name")
        taken[name] = i
        if comp is not None and arm_model is not None:
            arms.append(Arm(name, comp, arm_model))
    attacks = [resolve(ref, "attack", f"$.attacks[{i}]") for i, ref in enumerate(spec.attacks)]

    if problems:
        raise RecipeError(problems)
    assert data_c and partition and model and runner
    return Recipe(
        name=spec.name,
        seed=spec.seed,
        data=data_c,
        sites=spec.sites.count,
        partition=partition,
        model=model,
        arms=tuple(arms),
        attacks=tuple(a for a in attacks if a is not None),
        runner=runner,
        output_dir=spec.output.dir,
        cache_dir=spec.output.cache,
    )


def load_recipe(path: str | Path, plugins: PluginSet, overrides: list[str] | None = None
                ) -> Recipe:
    """Read, override and check a recipe file."""
    data = apply_overrides(read_yaml(path), overrides or [])
    return check_recipe(data, plugins)
