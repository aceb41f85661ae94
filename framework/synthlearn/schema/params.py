"""A component's params as rows (name, type, default, doc), read from its attrs config
class: the one source of ``synthlearn describe``, the recipe schema's descriptions and
the docs' parameter tables.

A param is documented by ``metadata={"doc": "..."}`` on its attrs field (or
``synthlearn.schema.from_attrs.doc_field``); what a validator allows (``in_``, ``ge``,
...) is added to its type.
"""

from __future__ import annotations

import types
import typing
from typing import Any

import attrs

from synthlearn.schema.from_attrs import field_doc, resolved_fields, validator_schema


@attrs.frozen
class ParamRow:
    """One param of a component."""

    name: str
    type: str
    default: str
    doc: str


def type_name(tp: Any) -> str:
    """A short readable name for a type hint: ``int``, ``float | None``, ``list[str]``."""
    if isinstance(tp, str):
        return tp
    if tp is type(None):
        return "None"
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in typing.get_args(tp))
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin is not None:
        args = ", ".join("..." if a is Ellipsis else type_name(a) for a in typing.get_args(tp))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    return getattr(tp, "__name__", str(tp))


def _allowed(field: attrs.Attribute) -> str:
    found = validator_schema(field.validator)
    parts = []
    if "enum" in found:
        parts.append("one of " + ", ".join("null" if v is None else str(v)
                                           for v in found["enum"]))
    signs = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=",
             "exclusiveMaximum": "<"}
    parts += [f"{signs[k]} {found[k]}" for k in signs if k in found]
    return "; ".join(parts)


def default_text(field: attrs.Attribute) -> str:
    """The default as a recipe would write it (``required`` when there is none)."""
    default = field.default
    if default is attrs.NOTHING:
        return "required"
    if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
        if default.takes_self:
            return "computed"
        default = default.factory()
    if default is None:
        return "null"
    if isinstance(default, bool):
        return "true" if default else "false"
    if isinstance(default, (list, tuple)):
        return "[" + ", ".join(str(v) for v in default) + "]"
    return str(default)


def param_rows(config: type) -> list[ParamRow]:
    """The params of a component whose config is attrs class ``config``."""
    if not attrs.has(config):
        return []
    rows = []
    for field in resolved_fields(config):
        kind = type_name(field.type)
        allowed = _allowed(field)
        rows.append(ParamRow(field.name, f"{kind} ({allowed})" if allowed else kind,
                             default_text(field), field_doc(field)))
    return rows


def undocumented(config: type) -> list[str]:
    """The params of ``config`` without a doc."""
    return [row.name for row in param_rows(config) if not row.doc]
