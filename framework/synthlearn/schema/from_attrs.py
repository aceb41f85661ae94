"""JSON Schema (draft 2020-12) from attrs classes and their type hints.

A field's description is its ``metadata["doc"]`` (the one place a param or a metrics
field is documented; ``synthlearn describe`` and the docs' tables read the same). Two
more metadata keys shape the JSON a class is written as: ``"key"`` names the JSON
property when it is not a Python identifier (``tpr_at_fpr_0.01``), and ``"rest": True``
marks a ``dict[str, X]`` field whose entries are written beside the named ones (open
objects such as an attack's extra figures). A field whose type includes ``Absent`` is
left out of the JSON while it holds ``ABSENT`` and is not required by the schema.
"""

from __future__ import annotations

import contextlib
import enum
import json
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

DRAFT = "https://json-schema.org/draft/2020-12/schema"

#: The metadata key holding a field's documentation.
DOC = "doc"


class Absent(enum.Enum):
    """The type of ``ABSENT``: a field holding it is not written at all (as opposed to
    ``None``, written as JSON null)."""

    ABSENT = "absent"

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT = Absent.ABSENT


def doc_field(doc: str, **kwargs: Any) -> Any:
    """``attrs.field(**kwargs)`` documented by ``doc`` (``metadata["doc"]``)."""
    metadata = {**(kwargs.pop("metadata", None) or {}), DOC: doc}
    return attrs.field(metadata=metadata, **kwargs)


def field_doc(field: attrs.Attribute) -> str:
    """A field's documentation (empty when it has none)."""
    return " ".join(str(field.metadata.get(DOC, "")).split())


def json_key(field: attrs.Attribute) -> str:
    """The JSON property a field is written as."""
    return str(field.metadata.get("key", field.name))


def is_rest(field: attrs.Attribute) -> bool:
    """Whether the field's entries are written beside the named fields."""
    return bool(field.metadata.get("rest"))


def resolved_fields(cls: type) -> tuple[attrs.Attribute, ...]:
    """``attrs.fields(cls)`` with string annotations resolved to types."""
    # a hint that names something unimportable stays a string: schema {}
    with contextlib.suppress(NameError, TypeError):
        attrs.resolve_types(cls)
    return attrs.fields(cls)


def summary(cls: type) -> str:
    """The first paragraph of a class's docstring, on one line."""
    text = (cls.__doc__ or "").strip()
    return " ".join(text.split("\n\n")[0].split())


def _union_args(tp: Any) -> tuple[Any, ...] | None:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return typing.get_args(tp)
    return None


def _non_absent(args: Sequence[Any]) -> list[Any]:
    return [a for a in args if a is not Absent]


def may_be_absent(tp: Any) -> bool:
    """Whether a field of type ``tp`` can be left out (its type includes ``Absent``)."""
    args = _union_args(tp)
    return bool(args) and Absent in args  # type: ignore[operator]


def json_default(value: Any) -> tuple[bool, Any]:
    """``(True, value)`` when ``value`` can stand in a schema as JSON, else ``(False, None)``."""
    if isinstance(value, tuple):
        value = list(value)
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False, None
    return True, value


class SchemaBuilder:
    """Builds schemas of types, collecting attrs classes under ``$defs``."""

    def __init__(self) -> None:
        self.defs: dict[str, dict[str, Any]] = {}

    def def_name(self, cls: type) -> str:
        return f"{cls.__module__}.{cls.__qualname__}"

    def ref(self, cls: type) -> dict[str, Any]:
        """A ``$ref`` to the schema of attrs class ``cls`` (added to ``$defs`` once)."""
        name = self.def_name(cls)
        if name not in self.defs:
            self.defs[name] = {}  # reserved first: a class may refer to itself
            self.defs[name] = self.class_schema(cls)
        return {"$ref": f"#/$defs/{name}"}

    def class_schema(self, cls: type) -> dict[str, Any]:
        """The schema of the JSON object attrs class ``cls`` is written as: every field
        a property (described by its doc, with its default), unknown keys refused
        unless a ``rest`` field takes them."""
        props: dict[str, Any] = {}
        required: list[str] = []
        rest: Any = False
        for field in resolved_fields(cls):
            if is_rest(field):
                args = typing.get_args(field.type)
                rest = self.type_schema(args[1]) if len(args) == 2 else {}
                continue
            schema = {**self.type_schema(field.type), **validator_schema(field.validator)}
            doc = field_doc(field)
            if doc:
                schema["description"] = doc
            if field.default is not attrs.NOTHING and not isinstance(field.default,
                                                                     attrs.Factory):
                ok, value = json_default(field.default)
                if ok:
                    schema["default"] = value
            props[json_key(field)] = schema
            if not may_be_absent(field.type) and (field.default is attrs.NOTHING
                                                  or field.metadata.get("required")):
                required.append(json_key(field))
        out: dict[str, Any] = {"type": "object"}
        title = summary(cls)
        if title:
            out["description"] = title
        out["properties"] = props
        if required:
            out["required"] = required
        if rest != {}:  # {}: anything may stand beside the named fields
            out["additionalProperties"] = rest
        return out

    def type_schema(self, tp: Any) -> dict[str, Any]:
        """The schema of one type hint (unknown types: ``{}``, anything)."""
        if tp is Any or isinstance(tp, (str, typing.ForwardRef)):
            return {}
        if tp is type(None) or tp is None:
            return {"type": "null"}
        if tp is bool:
            return {"type": "boolean"}
        if tp is int:
            return {"type": "integer"}
        if tp is float:
            return {"type": "number"}
        if tp is str:
            return {"type": "string"}
        if isinstance(tp, type) and attrs.has(tp):
            return self.ref(tp)
        args = _union_args(tp)
        if args is not None:
            options = [self.type_schema(a) for a in _non_absent(args)]
            simple = [o.get("type") for o in options]
            if all(set(o) == {"type"} and isinstance(t, str) for o, t in zip(options, simple,
                                                                                strict=True)):
                return {"type": simple if len(simple) > 1 else simple[0]}
            return options[0] if len(options) == 1 else {"anyOf": options}
        origin = typing.get_origin(tp)
        targs = typing.get_args(tp)
        if origin is typing.Literal:
            return {"enum": list(targs)}
        if origin is tuple and targs and targs[-1] is not Ellipsis:
            return {"type": "array", "prefixItems": [self.type_schema(a) for a in targs],
                    "minItems": len(targs), "maxItems": len(targs)}
        if origin in (list, tuple, set, frozenset) or (
                isinstance(origin, type) and issubclass(origin, Sequence)
                and origin is not str):
            return {"type": "array", "items": self.type_schema(targs[0]) if targs else {}}
        if origin is dict or (isinstance(origin, type) and issubclass(origin, Mapping)):
            out: dict[str, Any] = {"type": "object"}
            if len(targs) == 2 and targs[1] is not Any:
                out["additionalProperties"] = self.type_schema(targs[1])
            return out
        if tp in (list, tuple):
            return {"type": "array"}
        if tp is dict:
            return {"type": "object"}
        return {}


_BOUNDS = {">=": "minimum", ">": "exclusiveMinimum", "<=": "maximum", "<": "exclusiveMaximum"}


def validator_schema(validator: Any) -> dict[str, Any]:
    """What JSON Schema can say of an attrs validator: ``in_`` an ``enum``, the number
    comparisons (``ge``, ``gt``, ``le``, ``lt``) bounds, ``and_`` / a list of them
    everything its parts say, ``optional`` the same with null allowed; a validator
    written as a function says nothing here (its field's doc should)."""
    if validator is None:
        return {}
    if isinstance(validator, (list, tuple)):
        parts = list(validator)
    else:
        parts = list(getattr(validator, "_validators", None) or [validator])
    out: dict[str, Any] = {}
    for part in parts:
        inner = getattr(part, "validator", None)
        if inner is not None and type(part).__name__ == "_OptionalValidator":
            found = validator_schema(inner)
            if "enum" in found:
                found["enum"] = [*found["enum"], None]
            out.update(found)
            continue
        options = getattr(part, "options", None)
        if options is not None and type(part).__name__ == "_InValidator":
            ok, values = json_default(list(options))
            if ok:
                out["enum"] = values
            continue
        op, bound = getattr(part, "compare_op", None), getattr(part, "bound", None)
        if op in _BOUNDS and isinstance(bound, (int, float)):
            out[_BOUNDS[op]] = bound
    return out


def document_schema(cls: type, *, title: str, schema_id: str | None = None,
                    extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A complete schema document whose root is attrs class ``cls``."""
    builder = SchemaBuilder()
    root = builder.class_schema(cls)
    doc: dict[str, Any] = {"$schema": DRAFT}
    if schema_id:
        doc["$id"] = schema_id
    doc["title"] = title
    doc.update(root)
    if extra:
        doc.update(extra)
    if builder.defs:
        doc["$defs"] = builder.defs
    return doc


def to_json(value: Any) -> Any:
    """An attrs instance (and the lists and dicts around it) as JSON data: fields under
    their JSON keys in field order, ``rest`` entries beside them, ``ABSENT`` left out."""
    if isinstance(value, type) or value is None:
        return value
    if attrs.has(type(value)):
        out: dict[str, Any] = {}
        for field in attrs.fields(type(value)):
            item = getattr(value, field.name)
            if item is ABSENT:
                continue
            if is_rest(field):
                out.update({k: to_json(v) for k, v in item.items()})
            else:
                out[json_key(field)] = to_json(item)
        return out
    if isinstance(value, Mapping):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    return value


def from_json(cls: type, data: Mapping[str, Any]) -> Any:
    """An instance of attrs class ``cls`` from JSON data written by ``to_json``: known
    keys fill their fields (nested attrs classes and lists of them too), the others go
    to the ``rest`` field; a key left over without one raises ``ValueError``."""
    fields = resolved_fields(cls)
    by_key = {json_key(f): f for f in fields if not is_rest(f)}
    rest_field = next((f for f in fields if is_rest(f)), None)
    kwargs: dict[str, Any] = {}
    rest: dict[str, Any] = {}
    for key, value in data.items():
        field = by_key.get(key)
        if field is None:
            if rest_field is None:
                raise ValueError(f"{cls.__name__} has no field {key!r}")
            rest[key] = value
            continue
        kwargs[field.name] = _from_json_typed(field.type, value)
    if rest_field is not None:
        kwargs[rest_field.name] = rest
    return cls(**kwargs)


def _from_json_typed(tp: Any, value: Any) -> Any:
    args = _union_args(tp)
    candidates = _non_absent(args) if args is not None else [tp]
    for option in candidates:
        if isinstance(option, type) and attrs.has(option) and isinstance(value, Mapping):
            return from_json(option, value)
        inner = typing.get_args(option)
        if (typing.get_origin(option) is dict and len(inner) == 2
                and isinstance(inner[1], type) and attrs.has(inner[1])
                and isinstance(value, Mapping)):
            return {k: from_json(inner[1], v) for k, v in value.items()}
        if (typing.get_origin(option) is list and inner and isinstance(inner[0], type)
                and attrs.has(inner[0]) and isinstance(value, list)):
            return [from_json(inner[0], v) for v in value]
    return value
