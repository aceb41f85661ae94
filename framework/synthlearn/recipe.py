"""Recipes: the YAML a researcher writes, checked into typed, resolved components.

Checking happens in two steps, and every problem is reported (not just the first), one
line each, as ``<YAML path>: <what is wrong>``:

1. the shape of the file (``RecipeFile`` and friends, structured by cattrs with strict
   scalar types, lists that must be lists, finite numbers and no unknown keys), one
   top-level section at a time, so that a bad ``sites:`` does not hide a bad ``arms:``;
2. each ``use:`` is looked up among the installed components of its kind, and its
   ``params:`` are structured into that component's own attrs config class, then the
   component is built once so that its own checks run before any long work starts.

Unknown names and keys come with a ``did you mean`` where one is close. Relative input
paths (config fields made with ``input_path_field``) are resolved against the recipe
file's directory, or against the current directory for values given by ``--set``.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import re
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import cattrs
import yaml
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError, IterableValidationError

from synthlearn import params
from synthlearn.components import CHAIN_KINDS, RegisteredComponent
from synthlearn.errors import RecipeError, SynthlearnError
from synthlearn.loading import contract
from synthlearn.params import PATH_METADATA
from synthlearn.params import TypeMismatch as _TypeMismatch
from synthlearn.params import describe_value as _describe
from synthlearn.params import input_path_field as input_path_field  # kept importable here
from synthlearn.text import slug

if TYPE_CHECKING:
    from synthlearn.loading.manager import PluginSet

# --- path fields (``input_path_field`` itself lives in ``synthlearn.params``) ------------


def absolute_path(value: str, base: Path) -> str:
    """``value`` with ``~`` and environment variables expanded, joined to ``base`` when
    it is still relative (symbolic links and ``..`` resolved as the system would)."""
    expanded = os.path.expandvars(os.path.expanduser(value))
    if os.path.isabs(expanded):
        return expanded
    return os.path.realpath(os.path.join(base, expanded))


@attrs.define(frozen=True)
class PathBases:
    """Where relative input paths resolve: ``recipe_dir`` for values written in the
    recipe file, the current directory for values under an ``overridden`` YAML path
    (``--set``) and for every value when there is no file (``recipe_dir`` is None)."""

    recipe_dir: Path | None = None
    overridden: tuple[str, ...] = ()

    def base_for(self, where: str) -> Path:
        """The directory a relative path found at YAML path ``where`` is relative to."""
        if self.recipe_dir is None or any(_covers(o, where) for o in self.overridden):
            return Path.cwd()
        return self.recipe_dir


def _covers(prefix: str, where: str) -> bool:
    """Whether YAML path ``prefix`` is ``where`` or one of its ancestors."""
    return where == prefix or where.startswith((prefix + ".", prefix + "["))


def _resolved_types(cls: type) -> tuple[attrs.Attribute, ...]:
    """The fields of attrs class ``cls`` with their annotations evaluated where possible."""
    # an annotation may name something imported only for type checking: leave it a string
    with contextlib.suppress(Exception):
        attrs.resolve_types(cls)
    return attrs.fields(cls)


def with_input_paths(params: Any, cls: type, where: str, bases: PathBases) -> Any:
    """``params`` (raw recipe data for config class ``cls`` at YAML path ``where``) with
    every input path field made absolute, recursing into nested attrs configs. A path
    field left out whose default is a relative or ``~`` path gets that default, resolved
    against the current directory. Anything of the wrong type is left for the
    structuring to report."""
    if not isinstance(params, Mapping) or not attrs.has(cls):
        return params
    out = dict(params)
    for field in _resolved_types(cls):
        here = f"{where}.{field.name}"
        value = out.get(field.name, attrs.NOTHING)
        if field.metadata.get(PATH_METADATA) == "input":
            if value is attrs.NOTHING and isinstance(field.default, str) and field.default:
                out[field.name] = absolute_path(field.default, Path.cwd())
            elif isinstance(value, str) and value:
                out[field.name] = absolute_path(value, bases.base_for(here))
            continue
        nested = _attrs_class_in(field.type)
        if nested is None or value is attrs.NOTHING:
            continue
        if isinstance(value, list) and typing.get_origin(field.type) in (list, tuple):
            out[field.name] = [with_input_paths(v, nested, f"{here}[{i}]", bases)
                               for i, v in enumerate(value)]
        else:
            out[field.name] = with_input_paths(value, nested, here, bases)
    return out


def _attrs_class_in(type_: Any) -> type | None:
    """The attrs class a field holds: itself, optional, or as list/tuple items."""
    if isinstance(type_, type) and attrs.has(type_):
        return type_
    for arg in typing.get_args(type_):
        if isinstance(arg, type) and attrs.has(arg):
            return arg
    return None


# --- the shape of a recipe file ---------------------------------------------------------


@attrs.define
class ComponentRef:
    """``{use: name, params: {...}}``; a bare string ``name`` means ``{use: name}``."""

    use: str
    params: dict[str, Any] = attrs.field(factory=dict)


@attrs.define
class ArmRef:
    """One entry of ``arms``: an arm component, an optional display ``name``, and
    sub-components in the slots the arm declares (e.g. ``generator``), kept raw here
    and structured once the arm says which slots it takes."""

    use: str
    name: str | None = None
    params: dict[str, Any] = attrs.field(factory=dict)
    slots: dict[str, Any] = attrs.field(factory=dict)


@attrs.define
class SitesSection:
    """``sites``: how many sites, and how the training split is divided among them."""

    count: int = 3
    partition: ComponentRef = attrs.field(factory=lambda: ComponentRef("iid"))


@attrs.define
class OutputSection:
    """``output``: where run directories go, and the site-output cache (null: none).
    Both stay relative to the current directory: runs land where you run."""

    dir: str = "runs"
    cache: str | None = ".synthlearn-cache"


@attrs.define
class RecipeFile:
    """The whole recipe file as written (after ``--set`` overrides). While checking, a
    section that could not be structured is ``None`` (its problems are reported)."""

    name: str
    data: ComponentRef
    arms: list[ArmRef]
    seed: int = 0
    sites: SitesSection = attrs.field(factory=SitesSection)
    model: ComponentRef = attrs.field(factory=lambda: ComponentRef("timm"))
    attacks: list[ComponentRef] = attrs.field(factory=list)
    runner: ComponentRef = attrs.field(factory=lambda: ComponentRef("local"))
    output: OutputSection = attrs.field(factory=OutputSection)


ARM_KEYS: tuple[str, ...] = ("use", "name", "params", "model")
"""Keys every arm entry may have; the others name slots its component declares."""

# --- strict structuring ------------------------------------------------------------------


def _as_mapping(value: Any, what: str) -> Mapping[str, Any]:
    """A component written as a bare name means ``{use: name}``."""
    if isinstance(value, str):
        return {"use": value}
    if not isinstance(value, Mapping):
        raise _TypeMismatch(f"expected {what} ({{use: name, params: {{...}}}}), "
                            f"got {_describe(value)}")
    return value


def make_converter() -> cattrs.Converter:
    """The recipe's converter: ``synthlearn.params.make_converter`` (strict, no
    coercion, no unknown keys) plus the hooks for component references (``{use:
    name}`` or a bare name) and arm entries."""
    conv = params.make_converter()
    component_fields = conv.gen_structure_attrs_fromdict(ComponentRef)
    arm_fields = conv.gen_structure_attrs_fromdict(ArmRef)

    def component_ref(value: Any, _type: Any) -> ComponentRef:
        value = dict(_as_mapping(value, "a component"))
        if "params" in value and value["params"] is None:
            value["params"] = {}  # ``params:`` with every entry commented out
        return component_fields(value, ComponentRef)

    def arm_ref(value: Any, _type: Any) -> ArmRef:
        value = _as_mapping(value, "an arm")
        known = {k: v for k, v in value.items() if k in ("use", "name", "params")}
        if "params" in known and known["params"] is None:
            known["params"] = {}
        arm = arm_fields(known, ArmRef)
        arm.slots = {k: v for k, v in value.items() if k not in known}
        return arm

    conv.register_structure_hook(ComponentRef, component_ref)
    conv.register_structure_hook(ArmRef, arm_ref)
    return conv


# --- problems, with did-you-mean ----------------------------------------------------------


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` when a candidate is close to ``word``, else ``""``."""
    close = difflib.get_close_matches(str(word), [str(c) for c in candidates], n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def unknown_key_messages(keys: Iterable[Any], cls: type | None) -> list[str]:
    """What to say about keys that config class ``cls`` does not have: a key that moved
    (``cls.__synthlearn_moved__`` maps it to its new YAML home) or is close to a field
    name gets its own message with the hint; the others share one ``unknown key(s): a, b``."""
    moved: Mapping[str, str] = getattr(cls, "__synthlearn_moved__", None) or {}
    names = [f.name for f in attrs.fields(cls)] if cls is not None and attrs.has(cls) else []
    messages, plain = [], []
    for key in sorted(keys, key=str):
        if isinstance(key, str) and key in moved:
            messages.append(f"{key!r} moved to {moved[key]}")
        elif hint := did_you_mean(key, names):
            messages.append(f"unknown key {key!r}{hint}")
        else:
            plain.append(str(key))
    if plain:
        messages.insert(0, f"unknown key(s): {', '.join(plain)}")
    return messages


def exception_message(exc: BaseException) -> str:
    """An exception's message: its first argument when that is a string and more follow
    (attrs validators raise ``ValueError(message, attribute, options, value)``)."""
    if len(exc.args) > 1 and isinstance(exc.args[0], str):
        return exc.args[0]
    return str(exc)


_LINES = "\x00"  # separates several problems inside one cattrs message


def _format_exception(exc: BaseException, type_: Any) -> str:
    if isinstance(exc, _TypeMismatch):
        return str(exc)
    if isinstance(exc, KeyError):
        return "required, missing"
    if isinstance(exc, ForbiddenExtraKeysError):
        return _LINES.join(unknown_key_messages(exc.extra_fields, exc.cl))
    if isinstance(exc, (TypeError, ValueError)) and type_ is not None:
        name = getattr(type_, "__name__", str(type_))
        return f"invalid value for {name}: {exception_message(exc)}"
    return exception_message(exc) or type(exc).__name__


def structure_errors(exc: Exception, path: str) -> list[str]:
    """Turn a cattrs error into ``<path>: <message>`` lines."""
    if not isinstance(exc, (ClassValidationError, IterableValidationError)):
        return [f"{path}: {text}" for text in _format_exception(exc, None).split(_LINES)]
    lines = []
    for message in cattrs.transform_error(exc, path=path, format_exception=_format_exception):
        text, _, where = message.rpartition(" @ ")
        where = where.replace("]['", ".").replace("['", ".").replace("']", "")
        lines.extend(f"{where}: {part}" for part in text.split(_LINES))
    return lines


def structure_at(conv: cattrs.Converter, value: Any, cls: Any, path: str) -> tuple[Any, list[str]]:
    """Structure ``value`` into ``cls``; on failure return ``(None, problems)``."""
    try:
        return conv.structure(value, cls), []
    except (ClassValidationError, IterableValidationError) as exc:
        return None, structure_errors(exc, path)
    except (_TypeMismatch, ForbiddenExtraKeysError, TypeError, ValueError, KeyError) as exc:
        return None, [f"{path}: {text}" for text in _format_exception(exc, cls).split(_LINES)]


# --- resolved recipe ----------------------------------------------------------------------


@attrs.define(frozen=True)
class Component:
    """A component named in the recipe, with its structured config."""

    kind: str
    use: str
    config: Any
    registered: RegisteredComponent
    path: str
    slots: Mapping[str, Component | ComponentChain] = attrs.field(factory=dict)

    def build(self) -> Any:
        """A fresh component object made by the spec's factory."""
        return self.registered.spec.factory(self.config)

    def to_dict(self, conv: cattrs.Converter) -> dict[str, Any]:
        out: dict[str, Any] = {"use": self.use, "params": conv.unstructure(self.config)}
        for slot, comp in self.slots.items():
            out[slot] = comp.to_dict(conv)
        return out

    def walk(self) -> list[Component]:
        """This component and every component in its slots, depth first (the chains'
        parts in their order): whose code and checks an arm depends on."""
        out = [self]
        for comp in self.slots.values():
            out.extend(comp.walk())
        return out


#: Most components one slot's list may chain.
MAX_CHAIN = 8


@attrs.define(frozen=True)
class ComponentChain:
    """Several components of one kind given as a list in one slot (for a kind in
    ``CHAIN_KINDS``), in the recipe's order: ``build`` makes each part, and the code
    that uses the slot composes them (for filters: ``FilterChain`` in
    ``synthlearn.generation.filtering``)."""

    kind: str
    path: str
    parts: tuple[Component, ...]

    @property
    def use(self) -> str:
        """The parts' names joined by ``+`` (how reports and messages name the chain)."""
        return "+".join(part.use for part in self.parts)

    def build(self) -> list[Any]:
        """A fresh object of each part, in order."""
        return [part.build() for part in self.parts]

    def to_dict(self, conv: cattrs.Converter) -> list[dict[str, Any]]:
        """The recipe form: a list of the parts' forms."""
        return [part.to_dict(conv) for part in self.parts]

    def walk(self) -> list[Component]:
        """Every part, with the components in its slots."""
        return [comp for part in self.parts for comp in part.walk()]


@attrs.define(frozen=True)
class Arm:
    """One arm of the comparison: its display name, its component (kind ``arm``) and
    the downstream model it trains."""

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

MAX_RECIPE_BYTES = 1 << 20
"""The largest recipe file read (1 MiB): a recipe is a page of YAML, not a data file."""

MAX_RECIPE_VALUES = 100_000
"""The most values (mappings, lists, scalars) a recipe may expand to: YAML aliases can
make a small file describe an enormous tree."""


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A YAML mapping names the same key twice (YAML would silently keep the last)."""


class RecipeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` (only the safe constructors: no Python objects) that refuses a
    mapping with a duplicate key instead of keeping its last value."""

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # ``<<: *base``: explicit keys may override merged ones
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                try:  # by type too: ``yes`` (True) and ``1`` are different YAML keys
                    first = seen.get((type(key), key))
                except TypeError:
                    continue  # an unhashable key: the safe constructor reports it
                if first is not None:
                    raise DuplicateKeyError(
                        None, None, f"duplicate key {key!r} (first on line {first})",
                        key_node.start_mark)
                seen[(type(key), key)] = line
        return super().construct_mapping(node, deep=deep)


def _load_yaml(text: str) -> Any:
    """``text`` read by ``RecipeLoader``; YAML errors propagate (a too-long integer and a
    too-deep nesting become ``yaml.YAMLError`` too)."""
    try:
        return yaml.load(text, Loader=RecipeLoader)  # noqa: S506 (a SafeLoader subclass)
    except RecursionError:
        raise yaml.YAMLError("nested too deeply") from None
    except (ValueError, OverflowError) as exc:  # e.g. an integer of 5000 digits
        message = str(exc).split(";")[0].splitlines()[0]
        raise yaml.YAMLError(f"a value cannot be read: {message}") from None


def _read_text(path: Path) -> str:
    """The file's text, decoded as UTF-8 (a BOM is dropped); one line if it can't be."""
    where = str(path)
    if path.is_dir():
        raise SynthlearnError("is a directory, not a recipe file", where=where)
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_RECIPE_BYTES + 1)
    except FileNotFoundError:
        raise SynthlearnError("recipe file not found", where=where) from None
    except OSError as exc:
        raise SynthlearnError(f"cannot read recipe: {exc.strerror or exc}", where=where) from None
    if len(raw) > MAX_RECIPE_BYTES:
        raise SynthlearnError(f"larger than {MAX_RECIPE_BYTES >> 20} MiB: not a recipe file",
                              where=where)
    try:
        return raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise SynthlearnError(
            f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); a recipe "
            "is a YAML text file saved as UTF-8", where=f"{where}:{line}") from None


def _yaml_problem(exc: yaml.YAMLError, text: str) -> tuple[str, int | None]:
    """The one-line problem of a YAML error and its 1-based line, when known."""
    mark = getattr(exc, "problem_mark", None)
    line = mark.line + 1 if mark is not None else None
    if isinstance(exc, yaml.reader.ReaderError):
        line = text.count("\n", 0, exc.position) + 1
        return f"unacceptable character #x{exc.character:04x}", line
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    if isinstance(exc, yaml.constructor.ConstructorError) and "constructor for the tag" in problem:
        problem += " (a recipe is plain YAML: no Python tags)"
    return problem, line


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a recipe file (UTF-8 YAML, safe constructors only, no duplicate keys); one
    clear error naming the file (and line) if it can't be read."""
    path = Path(path)
    text = _read_text(path)
    try:
        data = _load_yaml(text)
    except yaml.YAMLError as exc:
        problem, line = _yaml_problem(exc, text)
        where = f"{path}:{line}" if line is not None else str(path)
        if isinstance(exc, DuplicateKeyError):
            raise SynthlearnError(problem, where=where) from None
        raise SynthlearnError(f"not valid YAML: {problem}", where=where) from None
    if data is None:
        raise SynthlearnError("empty recipe file; a recipe is a YAML mapping (name:, data:, "
                              "arms:, ...)", where=str(path))
    if not isinstance(data, dict):
        raise SynthlearnError(f"a recipe must be a YAML mapping (name:, data:, arms:, ...), "
                              f"got {_describe(data)}", where=str(path))
    return data


_SEGMENT = re.compile(r"([A-Za-z_][\w-]*)|\[(\d+)\]")


def parse_override(text: str) -> tuple[list[str | int], Any, str]:
    """``arms[1].params.rounds=10`` -> (['arms', 1, 'params', 'rounds'], 10, path).
    The value is read as YAML by the recipe loader (duplicate keys are errors); text
    that is not valid YAML is taken as a string."""
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
    path = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts)
    try:
        value = _load_yaml(raw) if raw.strip() else ""
    except DuplicateKeyError as exc:
        raise SynthlearnError(f"--set {path}: {exc.problem}") from None
    except yaml.YAMLError:
        value = raw
    return parts, value, path


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


MAX_NAME_BYTES = 100
"""The longest recipe or arm name (UTF-8 bytes): it becomes part of file names, which
most file systems cap at 255 bytes."""


def _arm_file_name_problems(path: str, name: str, taken: dict[str, int]) -> list[str]:
    """An arm's name becomes file names (``roc-<slug>.png``, ``artifacts/<slug>/``):
    refuse one that is too long, or whose slug equals another arm's (ignoring case, as
    macOS and Windows do), since their figures and artifacts would overwrite each other."""
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        return [f"{path}.name: arm name too long for a file name: "
                f"{len(name.encode('utf-8'))} bytes, at most {MAX_NAME_BYTES}"]
    mine = slug(name).casefold()
    for other, j in taken.items():
        if slug(other).casefold() == mine:
            return [f"{path}.name: arm names {name!r} and {other!r} ($.arms[{j}]) would "
                    f"share file names ({slug(name)!r}); rename one"]
    return []


def _key_problems(data: Any) -> list[str]:
    """Mapping keys that are not strings (``yes:``/``on:`` are booleans in YAML), and a
    tree too large to check (aliases can expand a small file enormously)."""
    problems: list[str] = []
    stack: list[tuple[Any, str]] = [(data, "$")]
    for _ in range(MAX_RECIPE_VALUES + 1):
        if not stack:
            return problems
        node, where = stack.pop()
        children: list[tuple[Any, str]] = []
        if isinstance(node, Mapping):
            for key, value in node.items():
                if isinstance(key, str):
                    children.append((value, f"{where}.{key}"))
                    continue
                note = (" (YAML reads unquoted yes, no, on, off as true or false)"
                        if isinstance(key, bool) else "")
                problems.append(f"{where}: key {_describe(key)} is not a string{note}; "
                                "quote it")
        elif isinstance(node, (list, tuple)):
            children = [(value, f"{where}[{i}]") for i, value in enumerate(node)]
        stack.extend(reversed(children))
    return [f"$: the recipe expands to more than {MAX_RECIPE_VALUES} values (YAML aliases?)"]


def _default_arm_names(refs: list[ArmRef | None]) -> list[str | None]:
    """Each arm's name: its own, else its method unless another unnamed arm uses the
    same method or an arm is explicitly named so (then ``<use>-<index>``)."""
    unnamed = [a.use for a in refs if a is not None and not a.name]
    explicit = {a.name for a in refs if a is not None and a.name}
    names: list[str | None] = []
    for i, ref in enumerate(refs):
        if ref is None:
            names.append(None)
            continue
        unique = unnamed.count(ref.use) == 1 and ref.use not in explicit
        names.append(ref.name or (ref.use if unique else f"{ref.use}-{i}"))
    return names


class _Checker:
    """One pass over a recipe: structures each section on its own and resolves every
    component it can, collecting every problem in ``problems``."""

    def __init__(self, plugins: PluginSet, bases: PathBases) -> None:
        self.plugins = plugins
        self.bases = bases
        self.conv = make_converter()
        self.problems: list[str] = []

    # -- shape

    def section(self, value: Any, cls: type, where: str) -> Any:
        """``cls`` built field by field from mapping ``value``: a field that fails is
        ``None`` (and reported), the others are checked all the same. ``None`` when
        ``value`` is not a mapping at all."""
        if not isinstance(value, Mapping):
            self.problems.extend(structure_at(self.conv, value, cls, where)[1])
            return None
        fields = _resolved_types(cls)
        unknown = [k for k in value if k not in {f.name for f in fields}]
        if unknown:
            self.problems.extend(f"{where}: {message}"
                                 for message in unknown_key_messages(unknown, cls))
        kwargs: dict[str, Any] = {}
        for field in fields:
            here = f"{where}.{field.name}"
            if field.name in value:
                kwargs[field.name] = self.field(value[field.name], field.type, here)
            elif field.default is attrs.NOTHING:
                self.problems.append(f"{here}: required, missing")
                kwargs[field.name] = None
        return cls(**kwargs)

    def field(self, value: Any, type_: Any, where: str) -> Any:
        """One field: nested sections field by field, lists item by item (an item that
        fails is ``None``), anything else whole."""
        if type_ in (SitesSection, OutputSection):
            return self.section(value, type_, where)
        if typing.get_origin(type_) is list and isinstance(value, list):
            (item_type,) = typing.get_args(type_)
            return [self.field(item, item_type, f"{where}[{i}]") for i, item in enumerate(value)]
        structured, errs = structure_at(self.conv, value, type_, where)
        self.problems.extend(errs)
        return structured

    # -- components

    def resolve(self, ref: ComponentRef | None, kind: str, path: str,
                slots: Mapping[str, Any] | None = None) -> Component | None:
        """Look ``ref`` up among the installed components of ``kind``, structure its
        params (input paths made absolute) and its slots, and build it once."""
        if ref is None:
            return None
        registered = self.plugins.get(kind, ref.use)
        if registered is None:
            hint = did_you_mean(ref.use, self.plugins.components[kind])
            self.problems.append(f"{path}.use: unknown {kind} {ref.use!r}"
                                 f"{hint + ' ' if hint else '; '}installed: "
                                 f"{self.plugins.describe_names(kind)}")
            return None
        params = with_input_paths(ref.params, registered.spec.config, f"{path}.params",
                                  self.bases)
        config, errs = structure_at(self.conv, params, registered.spec.config,
                                    f"{path}.params")
        self.problems.extend(errs)
        resolved_slots = self.slots(registered, ref.use, kind, path, slots or {})
        if config is None or resolved_slots is None:
            return None
        component = Component(kind, ref.use, config, registered, path, resolved_slots)
        return self.built(component)

    def slots(self, registered: RegisteredComponent, use: str, kind: str, path: str,
              raw: Mapping[str, Any]) -> dict[str, Component | ComponentChain] | None:
        """The components in the slots ``registered`` declares, from ``raw`` (the arm's
        other keys); ``None`` if one of them has a problem."""
        declared = registered.spec.slots
        ok = True
        for slot in raw:
            if slot not in declared:
                keys = [*ARM_KEYS, *declared]
                self.problems.append(f"{path}.{slot}: {kind} {use!r} takes no {slot!r} "
                                     f"(its keys: {', '.join(keys)})"
                                     f"{did_you_mean(slot, keys)}")
                ok = False
        resolved: dict[str, Component | ComponentChain] = {}
        for slot, slot_kind in declared.items():
            if slot in raw and isinstance(raw[slot], list):
                chain = self.chain(raw[slot], slot_kind, f"{path}.{slot}")
                if chain is None:
                    ok = False
                else:
                    resolved[slot] = chain
                continue
            if slot in raw:
                sub, errs = structure_at(self.conv, raw[slot], ComponentRef, f"{path}.{slot}")
                self.problems.extend(errs)
                if sub is None:
                    ok = False
                    continue
            elif (default := registered.spec.slot_defaults.get(slot)) is not None:
                sub = ComponentRef(default)
            elif slot in registered.spec.slot_defaults:
                continue  # optional slot
            else:
                self.problems.append(f"{path}.{slot}: required by {kind} {use!r}, missing")
                ok = False
                continue
            comp = self.resolve(sub, slot_kind, f"{path}.{slot}")
            if comp is None:
                ok = False
            else:
                resolved[slot] = comp
        return resolved if ok else None

    def chain(self, entries: list[Any], kind: str, path: str
              ) -> Component | ComponentChain | None:
        """A slot of ``kind`` given as a list: each entry resolved at ``path[i]``, in
        order (one entry is that component alone); None after a problem."""
        if kind not in CHAIN_KINDS:
            self.problems.append(f"{path}: takes one {kind} ({{use: name, params: {{...}}}}), "
                                 f"not a list")
            return None
        if not 1 <= len(entries) <= MAX_CHAIN:
            self.problems.append(f"{path}: a list of {len(entries)}; give 1 to {MAX_CHAIN} "
                                 f"{kind}s, or leave the key out")
            return None
        parts = []
        for index, entry in enumerate(entries):
            where = f"{path}[{index}]"
            sub, errs = structure_at(self.conv, entry, ComponentRef, where)
            self.problems.extend(errs)
            parts.append(None if sub is None else self.resolve(sub, kind, where))
        if any(part is None for part in parts):
            return None
        if len(parts) == 1:
            return parts[0]
        return ComponentChain(kind, path, tuple(p for p in parts if p is not None))

    def built(self, component: Component) -> Component | None:
        """``component`` once its factory accepted its config (its own checks) and the
        object it made meets its kind's contract (``synthlearn.loading.contract``)."""
        try:
            obj = component.build()
        except (SynthlearnError, ValueError) as exc:  # the component's own checks
            self.problems.append(f"{component.path}.params: {exception_message(exc)}")
            return None
        except Exception as exc:
            self.problems.append(f"{component.path}: {component.kind} {component.use!r} "
                                 f"(distribution {component.registered.distribution}) "
                                 f"failed to build: {type(exc).__name__}: {exc}")
            return None
        broken = contract.problems(component.kind, obj)
        reg = component.registered
        origin = f"{reg.distribution} {reg.version}".strip()
        self.problems.extend(f"{component.path}: {origin} ({component.kind} "
                             f"{component.use!r}): {what}" for what in broken)
        return None if broken else component


def resolve_component(plugins: PluginSet, kind: str, entry: Any, where: str
                      ) -> Component | ComponentChain:
    """One component from its recipe form (``{"use": ..., "params": {...}, <slot>: ...}``,
    what ``Component.to_dict`` writes; a list of them for a kind in ``CHAIN_KINDS``,
    what ``ComponentChain.to_dict`` writes), resolved as a recipe check resolves it: an
    installed component of ``kind``, params structured strictly, slots resolved, the
    object built and checked against its kind's contract. Every problem is a line of
    one ``RecipeError``, at ``where`` (a YAML-like path)."""
    checker = _Checker(plugins, PathBases())
    if isinstance(entry, list):
        chain = checker.chain(entry, kind, where)
        if chain is None or checker.problems:
            raise RecipeError(checker.problems or [f"{where}: cannot resolve the {kind}s"])
        return chain
    if not isinstance(entry, Mapping):
        raise RecipeError([f"{where}: expected a mapping with 'use', got "
                           f"{type(entry).__name__}"])
    raw = dict(entry)
    head = {key: raw.pop(key) for key in ("use", "params") if key in raw}
    ref, problems = structure_at(checker.conv, head, ComponentRef, where)
    component = None if ref is None else checker.resolve(ref, kind, where, slots=raw)
    problems += checker.problems
    if component is None or problems:
        raise RecipeError(problems or [f"{where}: cannot resolve {kind} {head.get('use')!r}"])
    return component


def check_recipe(data: dict[str, Any], plugins: PluginSet, *, recipe_dir: str | Path | None = None,
                 overridden: Iterable[str] = ()) -> Recipe:
    """Check raw recipe data against the installed plugins; raise ``RecipeError`` listing
    every problem, or return the resolved ``Recipe``.

    Relative input paths are resolved against ``recipe_dir`` (the recipe file's folder),
    except under the YAML paths in ``overridden`` (set by ``--set``) and when
    ``recipe_dir`` is None (a recipe built in code): those against the current directory.
    """
    base = None if recipe_dir is None else Path(os.path.abspath(recipe_dir))
    check = _Checker(plugins, PathBases(base, tuple(overridden)))
    problems = check.problems
    problems.extend(_key_problems(data))
    if problems:
        raise RecipeError(problems)
    spec = check.section(data, RecipeFile, "$")
    if spec is None:
        raise RecipeError(problems)
    sites = spec.sites or SitesSection(count=None, partition=None)  # type: ignore[arg-type]

    data_c = check.resolve(spec.data, "dataset", "$.data")
    partition = check.resolve(sites.partition, "partition", "$.sites.partition")
    model = check.resolve(spec.model, "model", "$.model")
    runner = check.resolve(spec.runner, "runner", "$.runner")
    if sites.count is not None and sites.count < 1:
        problems.append(f"$.sites.count: must be at least 1, got {sites.count}")
    if spec.arms == []:
        problems.append("$.arms: at least one arm is needed")
    if spec.name is None:
        pass
    elif not spec.name.strip() or not re.fullmatch(r"[\w.-]+", spec.name):
        problems.append(f"$.name: use letters, digits, '.', '_' or '-' (it names the run "
                        f"directory), got {spec.name!r}")
    elif len(spec.name.encode("utf-8")) > MAX_NAME_BYTES:
        problems.append(f"$.name: too long for a directory name: "
                        f"{len(spec.name.encode('utf-8'))} bytes, at most {MAX_NAME_BYTES}")
    if spec.seed is not None and spec.seed < 0:
        problems.append(f"$.seed: must be >= 0, got {spec.seed}")

    arms: list[Arm] = []
    refs = spec.arms or []
    taken: dict[str, int] = {}
    for i, (ref, name) in enumerate(zip(refs, _default_arm_names(refs), strict=True)):
        if ref is None or name is None:
            continue
        path = f"$.arms[{i}]"
        slots = dict(ref.slots)
        model_raw = slots.pop("model", None)
        comp = check.resolve(ComponentRef(ref.use, ref.params), "arm", path, slots)
        arm_model = model
        if model_raw is not None:
            model_ref, errs = structure_at(check.conv, model_raw, ComponentRef, f"{path}.model")
            problems.extend(errs)
            arm_model = check.resolve(model_ref, "model", f"{path}.model")
        if name in taken:
            problems.append(f"{path}.name: arm name {name!r} is already used by "
                            f"$.arms[{taken[name]}]; give each arm its own name")
        else:
            problems.extend(_arm_file_name_problems(path, name, taken))
        taken[name] = i
        if comp is not None and arm_model is not None:
            arms.append(Arm(name, comp, arm_model))
    attacks = [check.resolve(ref, "attack", f"$.attacks[{i}]")
               for i, ref in enumerate(spec.attacks or [])]

    if problems:
        raise RecipeError(problems)
    assert data_c and partition and model and runner and spec.output
    return Recipe(
        name=spec.name,
        seed=spec.seed,
        data=data_c,
        sites=sites.count,
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
    """Read, override and check a recipe file. Relative input paths written in the file
    resolve against its folder, those given by ``overrides`` against the current one."""
    overrides = overrides or []
    data = apply_overrides(read_yaml(path), overrides)
    return check_recipe(data, plugins, recipe_dir=Path(path).parent,
                        overridden=[parse_override(text)[2] for text in overrides])
