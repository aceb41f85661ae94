"""The JSON Schema of recipes, built from the installed plugins.

Every component section accepts ``{use: <name>, params: {...}}`` (or a bare name);
``use`` is an enum of the installed components of the section's kind, and for each of
them an ``if``/``then`` pair gives ``params`` that component's config class (its
fields, types, defaults and docs; unknown keys refused) and, for arms, the slots it
declares (a slot it does not declare is refused). yaml-language-server reads it to
complete and check recipes (docs/recipes.md: "Checking recipes in an editor").
"""

from __future__ import annotations

from typing import Any

from synthlearn.components import CHAIN_KINDS, KINDS
from synthlearn.loading.manager import PluginSet
from synthlearn.schema.from_attrs import DRAFT, SchemaBuilder, summary

#: The recipe sections that name a component, and the kind each names.
SECTION_KINDS: dict[str, str] = {"data": "dataset", "partition": "partition",
                                 "model": "model", "arms": "arm", "attacks": "attack",
                                 "runner": "runner"}

_PARAMS_NULL = {"type": "null", "description": "``params:`` with every entry commented out"}


class _RecipeSchema:
    def __init__(self, plugins: PluginSet) -> None:
        self.plugins = plugins
        self.builder = SchemaBuilder()

    def params_ref(self, kind: str, name: str) -> dict[str, Any]:
        config = self.plugins.components[kind][name].spec.config
        return {"anyOf": [self.builder.ref(config), _PARAMS_NULL]}

    def component(self, kind: str) -> dict[str, Any]:
        """``$defs`` entry of one kind's component section."""
        comps = self.plugins.components.get(kind, {})
        names = sorted(comps)
        use = {"enum": names, "description": f"an installed {kind}: " + ", ".join(
            f"{n} ({comps[n].distribution}): {comps[n].spec.summary}" for n in names)}
        props: dict[str, Any] = {"use": use, "params": {
            "type": ["object", "null"], "description": "the component's params"}}
        if kind == "arm":
            props["name"] = {"type": "string", "description": "the arm's name (default: "
                             "its use, numbered when repeated)"}
            props["model"] = {"$ref": "#/$defs/model",
                              "description": "a model of the arm's own"}
            for name in names:
                for slot, slot_kind in comps[name].spec.slots.items():
                    one = {"$ref": f"#/$defs/{slot_kind}"}
                    props.setdefault(slot, {"description": f"a {slot_kind}", **one}
                                     if slot_kind not in CHAIN_KINDS else {
                        "description": f"a {slot_kind}, or a list of them applied in order",
                        "anyOf": [one, {"type": "array", "items": one, "minItems": 1}]})
        branches = []
        for name in names:
            spec = comps[name].spec
            then: dict[str, Any] = {"properties": {"params": {
                **self.params_ref(kind, name), "description": summary(spec.config)
                or spec.summary}}}
            if kind == "arm":
                for slot in props:
                    if slot in ("use", "name", "params", "model"):
                        continue
                    if slot not in spec.slots:
                        then["properties"][slot] = False
                required = [s for s in spec.slots if s not in spec.slot_defaults]
                if required:
                    then["required"] = required
            branches.append({"if": {"properties": {"use": {"const": name}},
                                    "required": ["use"]}, "then": then})
        mapping: dict[str, Any] = {"type": "object", "properties": props,
                                   "required": ["use"], "additionalProperties": False}
        if branches:
            mapping["allOf"] = branches
        return {"anyOf": [{"type": "string", "enum": names,
                           "description": f"a {kind} without params"}, mapping]}

    def document(self) -> dict[str, Any]:
        kinds = list(dict.fromkeys([*KINDS, *SECTION_KINDS.values(),
                                    *self.plugins.components]))
        components = {kind: self.component(kind) for kind in kinds}
        ref = {kind: {"$ref": f"#/$defs/{kind}"} for kind in kinds}
        properties = {
            "name": {"type": "string", "pattern": r"^[\w.-]+$",
                     "description": "names the run directory"},
            "seed": {"type": "integer", "minimum": 0, "default": 0,
                     "description": "one seed for everything"},
            "data": {**ref["dataset"], "description": "the dataset"},
            "sites": {"type": "object", "additionalProperties": False,
                      "description": "how many sites, and how the training split is divided",
                      "properties": {
                          "count": {"type": "integer", "minimum": 1, "default": 3},
                          "partition": {**ref["partition"], "default": "iid"}}},
            "model": {**ref["model"], "default": "timm",
                      "description": "the downstream classifier every arm trains"},
            "arms": {"type": "array", "minItems": 1, "items": ref["arm"],
                     "description": "the arms compared"},
            "attacks": {"type": "array", "items": ref["attack"],
                        "description": "membership attacks run against every arm"},
            "runner": {**ref["runner"], "default": "local",
                       "description": "where site work runs"},
            "output": {"type": "object", "additionalProperties": False,
                       "properties": {
                           "dir": {"type": "string", "default": "runs",
                                   "description": "where run directories go"},
                           "cache": {"type": ["string", "null"],
                                     "default": ".synthlearn-cache",
                                     "description": "site-output cache (null: none)"}}},
        }
        return {"$schema": DRAFT, "title": "synthlearn recipe",
                "description": "A synthlearn recipe, with the params of every installed "
                               "component (generated by `synthlearn schema recipe`).",
                "type": "object", "properties": properties,
                "required": ["name", "data", "arms"], "additionalProperties": False,
                "$defs": {**components, **self.builder.defs}}


def recipe_schema(plugins: PluginSet) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of recipes for the installed ``plugins``."""
    return _RecipeSchema(plugins).document()
