"""A validator for the subset of JSON Schema (draft 2020-12) that synthlearn emits.

``jsonschema`` is not a dependency; the schemas ``synthlearn schema`` prints use only
these keywords, and this module checks documents against them so tests (and users
without an editor) can: ``type``, ``enum``, ``const``, ``properties``, ``required``,
``additionalProperties``, ``items``, ``prefixItems``, ``minItems``, ``maxItems``,
``minimum``, ``exclusiveMinimum``, ``maximum``, ``exclusiveMaximum``, ``pattern``,
``anyOf``, ``oneOf``, ``allOf``, ``if``/``then``/``else``, ``not`` and local ``$ref``
(``#/$defs/...``). Annotations (``description``, ``default``, ``title``) are ignored.
A keyword outside the subset raises ``ValueError``, so a schema cannot silently check
less than it says.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

ANNOTATIONS = frozenset({"$schema", "$id", "$defs", "title", "description", "default",
                         "examples", "$comment", "markdownDescription"})
KEYWORDS = frozenset({"type", "enum", "const", "properties", "required",
                      "additionalProperties", "items", "prefixItems", "minItems", "maxItems",
                      "minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum", "pattern",
                      "anyOf", "oneOf", "allOf", "if", "then", "else", "not", "$ref"})


def _is_type(value: Any, name: str) -> bool:
    if name == "null":
        return value is None
    if name == "boolean":
        return isinstance(value, bool)
    if name == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and math.isfinite(value) and value.is_integer())
    if name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if name == "string":
        return isinstance(value, str)
    if name == "array":
        return isinstance(value, (list, tuple))
    if name == "object":
        return isinstance(value, Mapping)
    raise ValueError(f"unknown JSON Schema type {name!r}")


def _same(a: Any, b: Any) -> bool:
    """JSON equality: 1 == 1.0, but true is not 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b


def _where(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if re.fullmatch(r"[A-Za-z_][\w-]*", key) else f"{path}[{key!r}]"


class Validator:
    """Checks documents against one schema document (its ``$defs`` resolve ``$ref``)."""

    def __init__(self, schema: Mapping[str, Any]) -> None:
        self.root = schema

    def errors(self, document: Any) -> list[str]:
        """Every problem as ``<path>: <what>`` (``$`` is the document); empty when valid."""
        return self._check(self.root, document, "$")

    def _resolve(self, ref: str) -> Mapping[str, Any]:
        if not ref.startswith("#/"):
            raise ValueError(f"only local $ref are supported, got {ref!r}")
        node: Any = self.root
        for part in ref[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return node

    def _check(self, schema: Any, value: Any, path: str) -> list[str]:
        if schema is True or schema == {}:
            return []
        if schema is False:
            return [f"{path}: not allowed here"]
        unknown = set(schema) - KEYWORDS - ANNOTATIONS
        if unknown:
            raise ValueError(f"schema keyword(s) not supported: {', '.join(sorted(unknown))}")
        out: list[str] = []
        if "$ref" in schema:
            out += self._check(self._resolve(schema["$ref"]), value, path)
        if "type" in schema:
            names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
            if not any(_is_type(value, n) for n in names):
                return out + [f"{path}: expected {' or '.join(names)}, got {_short(value)}"]
        if "enum" in schema and not any(_same(value, e) for e in schema["enum"]):
            out.append(f"{path}: {_short(value)} is not one of "
                       f"{', '.join(_short(e) for e in schema['enum'])}")
        if "const" in schema and not _same(value, schema["const"]):
            out.append(f"{path}: expected {_short(schema['const'])}, got {_short(value)}")
        out += self._number(schema, value, path)
        if "pattern" in schema and isinstance(value, str) and not re.search(
                schema["pattern"], value):
            out.append(f"{path}: {_short(value)} does not match {schema['pattern']}")
        if isinstance(value, Mapping):
            out += self._object(schema, value, path)
        if isinstance(value, (list, tuple)):
            out += self._array(schema, value, path)
        out += self._combinators(schema, value, path)
        return out

    def _number(self, schema: Mapping[str, Any], value: Any, path: str) -> list[str]:
        if not _is_type(value, "number"):
            return []
        out = []
        tests = (("minimum", lambda b: value >= b, ">="),
                 ("exclusiveMinimum", lambda b: value > b, ">"),
                 ("maximum", lambda b: value <= b, "<="),
                 ("exclusiveMaximum", lambda b: value < b, "<"))
        for key, ok, op in tests:
            if key in schema and not ok(schema[key]):
                out.append(f"{path}: must be {op} {schema[key]}, got {value}")
        return out

    def _object(self, schema: Mapping[str, Any], value: Mapping[str, Any], path: str
                ) -> list[str]:
        out = [f"{path}: missing {key!r}" for key in schema.get("required", [])
               if key not in value]
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            if key in props:
                out += self._check(props[key], item, _where(path, key))
            elif extra is False:
                known = ", ".join(props) or "none"
                out.append(f"{_where(path, key)}: unknown key (known: {known})")
            else:
                out += self._check(extra, item, _where(path, key))
        return out

    def _array(self, schema: Mapping[str, Any], value: Any, path: str) -> list[str]:
        out = []
        if len(value) < schema.get("minItems", 0):
            out.append(f"{path}: at least {schema['minItems']} item(s), got {len(value)}")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            out.append(f"{path}: at most {schema['maxItems']} item(s), got {len(value)}")
        prefix = schema.get("prefixItems", [])
        for i, item in enumerate(value):
            sub = prefix[i] if i < len(prefix) else schema.get("items", True)
            out += self._check(sub, item, _where(path, i))
        return out

    def _combinators(self, schema: Mapping[str, Any], value: Any, path: str) -> list[str]:
        out: list[str] = []
        for sub in schema.get("allOf", []):
            out += self._check(sub, value, path)
        if "anyOf" in schema:
            results = [self._check(sub, value, path) for sub in schema["anyOf"]]
            if all(results):
                out += _closest(results, path)
        if "oneOf" in schema:
            results = [self._check(sub, value, path) for sub in schema["oneOf"]]
            passed = sum(not r for r in results)
            if passed == 0:
                out += _closest(results, path)
            elif passed > 1:
                out.append(f"{path}: matches {passed} alternatives, expected exactly one")
        if "if" in schema:
            branch = "then" if not self._check(schema["if"], value, path) else "else"
            if branch in schema:
                out += self._check(schema[branch], value, path)
        if "not" in schema and not self._check(schema["not"], value, path):
            out.append(f"{path}: matches a schema it must not")
        return out


def _closest(results: list[list[str]], path: str) -> list[str]:
    """The problems of the alternative that came closest: one whose type matched (its
    problems lie deeper than a type mismatch at ``path``), with the fewest problems."""
    wrong_type = f"{path}: expected "
    matched = [r for r in results if not (len(r) == 1 and r[0].startswith(wrong_type))]
    return min(matched or results, key=len)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def validate(schema: Mapping[str, Any], document: Any) -> list[str]:
    """The problems of ``document`` under ``schema`` (empty when it is valid)."""
    return Validator(schema).errors(document)
