"""Component params: the pieces of recipe checking a component's config class uses.

A component's ``params:`` are structured into its attrs config class by the converter
``make_converter`` returns (strict: no coercion, no unknown keys, finite numbers, lists
that are lists); a field made with ``input_path_field`` is a path the component reads,
made absolute before the component sees it. Both are public (``synthlearn.api``).

This module depends on nothing but attrs and cattrs, so data sources, arms and the
recipe can all use it without importing each other.
"""

from __future__ import annotations

import math
import typing
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import cattrs
from cattrs.cols import (
    homogenous_tuple_structure_factory,
    is_any_set,
    is_frozenset,
    is_mapping,
    is_mutable_sequence,
    is_sequence,
    list_structure_factory,
)

# --- path fields ---------------------------------------------------------------------------

PATH_METADATA = "path"
"""The attrs metadata key that marks a config field as a path (value ``"input"``)."""


def input_path_field(default: Any = attrs.NOTHING, **kwargs: Any) -> Any:
    """An attrs field for a path a component reads (a data folder, a file).

    A relative value written in the recipe file is resolved against the recipe file's
    directory, one given by ``--set`` (or in a recipe built in code) against the current
    directory; ``~`` and environment variables are expanded. The component gets, and the
    run's ``recipe.yaml`` keeps, the absolute path. Use it in place of ``attrs.field``::

        root: str = input_path_field(default="~/.medmnist")
    """
    metadata = {**(kwargs.pop("metadata", None) or {}), PATH_METADATA: "input"}
    return attrs.field(default=default, metadata=metadata, **kwargs)


SAMPLING_METADATA = "sampling_only"
"""The attrs metadata key that marks a generator param as changing only how images are
drawn from a fitted generator (value ``True``)."""


def sampling_field(default: Any = attrs.NOTHING, **kwargs: Any) -> Any:
    """An attrs field for a generator param that only changes how images are drawn from
    the fitted generator (sampler steps, guidance scale, sampler), not the fit.

    Such params are left out of the key under which a site keeps its fitted generator, so
    arms (or recipes) that differ only in them fit once per site and each only samples;
    the side that samples reads them from its own config. Use it in place of
    ``attrs.field``::

        guidance: float = sampling_field(default=2.0, metadata={"doc": "..."})
    """
    metadata = {**(kwargs.pop("metadata", None) or {}), SAMPLING_METADATA: True}
    return attrs.field(default=default, metadata=metadata, **kwargs)


def int_at_least(low: int) -> Callable[[Any, attrs.Attribute, Any], None]:
    """An attrs validator: an integer (not a bool) no smaller than ``low``."""

    def check(_instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"'{attribute.name}' must be an integer >= {low}, got {value!r}")

    return check


def positive_or_none(_instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    """An attrs validator: a positive number, or None."""
    if value is not None and (isinstance(value, bool) or not value > 0):
        raise ValueError(f"'{attribute.name}' must be positive or null, got {value!r}")


def device_name(_instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    """An attrs validator: a torch device a component may be told to use, ``auto`` (CUDA
    when present, else the CPU), ``cpu``, ``cuda`` or ``cuda:N``."""
    if isinstance(value, str) and (value in ("auto", "cpu", "cuda") or (
            value.startswith("cuda:") and value[5:].isdigit())):
        return
    raise ValueError(f"'{attribute.name}' must be 'auto', 'cpu', 'cuda' or 'cuda:N' "
                     f"(got {value!r})")


def in_open_unit(_instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    """An attrs validator: a number strictly between 0 and 1 (a rate, a quantile, δ)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value < 1.0:
        raise ValueError(f"'{attribute.name}' must be in (0, 1), got {value!r}")


def fitting_params(config: Any, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` (a generator config unstructured) without its ``sampling_field`` params:
    what a fit depends on."""
    if not attrs.has(type(config)):
        return params
    sampling = {f.name for f in attrs.fields(type(config)) if f.metadata.get(SAMPLING_METADATA)}
    return {name: value for name, value in params.items() if name not in sampling}


# --- strict structuring ------------------------------------------------------------------


class TypeMismatch(ValueError):
    """A value of the wrong type for a config field; its message is the whole story
    (``expected int, got '10'``)."""


def describe_value(value: Any) -> str:
    """``repr(value)``, cut to 40 characters, for messages."""
    try:
        text = repr(value)
    except ValueError:  # an int too long to print
        text = f"<a {type(value).__name__}>"
    return text if len(text) <= 40 else text[:37] + "..."


def _strict(expected: type, accept: tuple[type, ...], name: str):
    def structure(value: Any, _type: Any) -> Any:
        if isinstance(value, bool) and expected is not bool:
            raise TypeMismatch(f"expected {name}, got {describe_value(value)}")
        if not isinstance(value, accept):
            raise TypeMismatch(f"expected {name}, got {describe_value(value)}")
        return expected(value)

    return structure


def _finite_float(value: Any, _type: Any) -> float:
    """A number (int or float, not bool) that is neither NaN nor infinite."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeMismatch(f"expected number, got {describe_value(value)}")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise TypeMismatch(f"expected a finite number, got {describe_value(value)}")
    return number


def _is_collection(type_: Any) -> bool:
    """Lists, sequences, tuples and sets (not ``str``, not mappings)."""
    if type_ in (str, bytes):
        return False
    return bool(is_sequence(type_) or is_any_set(type_)
                or typing.get_origin(type_) is tuple)


def _strict_collection(conv: cattrs.Converter) -> Callable[[Any], Any]:
    """A hook factory for collections that accepts only YAML lists (never a string,
    which cattrs would split into characters, nor a mapping, whose keys it would take)."""

    def factory(type_: Any) -> Any:
        args = typing.get_args(type_)
        if is_any_set(type_):
            make = frozenset if is_frozenset(type_) else set
            items = list[args[0]] if args else list  # type: ignore[valid-type]
            inner = lambda value, _t: make(conv.structure(list(value), items))  # noqa: E731
        elif typing.get_origin(type_) is tuple and args and args[-1] is not Ellipsis:
            inner = conv.gen_structure_hetero_tuple(type_)
        elif is_mutable_sequence(type_):
            inner = list_structure_factory(type_, conv)
        else:
            inner = homogenous_tuple_structure_factory(type_, conv)

        def structure(value: Any, t: Any) -> Any:
            if not isinstance(value, (list, tuple, set, frozenset)):
                raise TypeMismatch(f"expected a list, got {describe_value(value)}")
            return inner(value, t)

        return structure

    return factory


def _strict_mapping(conv: cattrs.Converter) -> Callable[[Any], Any]:
    """A hook factory for ``dict[...]`` fields that accepts only YAML mappings."""

    def factory(type_: Any) -> Any:
        inner = conv.gen_structure_mapping(type_)

        def structure(value: Any, t: Any) -> Any:
            if not isinstance(value, Mapping):
                raise TypeMismatch(f"expected a mapping, got {describe_value(value)}")
            return inner(value, t)

        return structure

    return factory


def _strict_attrs(conv: cattrs.Converter) -> Callable[[Any], Any]:
    """A hook factory for attrs classes that names their keys when given a non-mapping."""

    def factory(cls: type) -> Any:
        inner = conv.gen_structure_attrs_fromdict(cls)

        def structure(value: Any, t: Any) -> Any:
            if not isinstance(value, Mapping):
                keys = ", ".join(f.name for f in attrs.fields(cls))
                shape = f"a mapping with keys {keys}" if keys else "a mapping ({})"
                raise TypeMismatch(f"expected {shape}, got {describe_value(value)}")
            return inner(value, t)

        return structure

    return factory


def make_converter() -> cattrs.Converter:
    """A cattrs converter that never coerces ('10' is not an int, 1.5 is not an int, a
    string is not a list, ``.inf`` is not a number) and rejects unknown keys. Plugins
    may use it to structure their own nested params (the recipe adds its own hooks for
    component references, ``synthlearn.recipe.make_converter``)."""
    conv = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    conv.register_structure_hook(int, _strict(int, (int,), "int"))
    conv.register_structure_hook(float, _finite_float)
    conv.register_structure_hook(str, _strict(str, (str,), "string"))
    conv.register_structure_hook(bool, _strict(bool, (bool,), "true or false"))
    conv.register_structure_hook_factory(attrs.has, _strict_attrs(conv))
    conv.register_structure_hook_factory(_is_collection, _strict_collection(conv))
    conv.register_structure_hook_factory(
        lambda t: is_mapping(t) and not attrs.has(t), _strict_mapping(conv))
    return conv
