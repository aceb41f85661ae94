"""``synthlearn describe``: one component's summary, params, slots and distribution,
as text or as the Markdown table the docs carry.

The docs' parameter tables sit between ``<!-- params:KIND:NAME -->`` and
``<!-- /params -->`` and are generated from the config classes
(``synthlearn describe --update-docs FILE...``); ``stale_tables`` names each one that
no longer matches, for the test that keeps them current.
"""

from __future__ import annotations

import re
from pathlib import Path

from synthlearn.components import CHAIN_KINDS, KINDS, RegisteredComponent
from synthlearn.errors import SynthlearnError
from synthlearn.loading.manager import PluginSet
from synthlearn.recipe import did_you_mean
from synthlearn.schema.from_attrs import summary
from synthlearn.schema.params import param_rows

TABLE = re.compile(r"(<!-- params:(?P<kind>[\w-]+):(?P<name>[\w.-]+) -->\n)(?P<body>.*?)"
                   r"(<!-- /params -->)", re.DOTALL)


def lookup(plugins: PluginSet, kind: str, name: str) -> RegisteredComponent:
    """The installed component ``name`` of ``kind``; a ``SynthlearnError`` naming what
    is installed (with a did-you-mean) when there is none."""
    if kind not in KINDS:
        raise SynthlearnError(f"unknown kind {kind!r}{did_you_mean(kind, KINDS) or ';'} kinds: "
                              f"{', '.join(KINDS)}")
    found = plugins.components.get(kind, {}).get(name)
    if found is None:
        names = plugins.components.get(kind, {})
        raise SynthlearnError(f"unknown {kind} {name!r}{did_you_mean(name, names) or ';'} "
                              f"installed: {plugins.describe_names(kind) or 'none'}")
    return found


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(comp: RegisteredComponent) -> str:
    """The params of ``comp`` as a Markdown table (a line saying so when it has none)."""
    rows = param_rows(comp.spec.config)
    if not rows:
        return f"`{comp.spec.name}` takes no params.\n"
    lines = ["| param | type | default | what it does |", "|---|---|---|---|"]
    lines += [f"| `{r.name}` | {_cell(r.type)} | `{_cell(r.default)}` | {_cell(r.doc)} |"
              for r in rows]
    return "\n".join(lines) + "\n"


def describe_text(comp: RegisteredComponent) -> str:
    """A plain-text description: summary, distribution, params, slots."""
    spec = comp.spec
    lines = [f"{comp.kind} {spec.name}: {spec.summary}",
             f"distribution: {comp.distribution} {comp.version} (plugin {comp.plugin})"]
    about = summary(spec.config)
    if about:
        lines.append(f"config: {spec.config.__qualname__}: {about}")
    rows = param_rows(spec.config)
    lines.append("params:" if rows else "params: none")
    for r in rows:
        lines.append(f"  {r.name}: {r.type} = {r.default}")
        if r.doc:
            lines.append(f"      {r.doc}")
    if spec.slots:
        lines.append("slots:")
        for slot, kind in spec.slots.items():
            if slot not in spec.slot_defaults:
                how = "required"
            elif spec.slot_defaults[slot] is None:
                how = "optional"
            else:
                how = f"default {spec.slot_defaults[slot]}"
            many = ", or a list of them applied in order" if kind in CHAIN_KINDS else ""
            lines.append(f"  {slot}: a {kind}{many} ({how})")
    return "\n".join(lines)


def describe_markdown(comp: RegisteredComponent) -> str:
    """The docs' block for ``comp``: its table between the marker comments."""
    return (f"<!-- params:{comp.kind}:{comp.spec.name} -->\n{markdown_table(comp)}"
            "<!-- /params -->\n")


def _tables(text: str, plugins: PluginSet, where: str) -> tuple[str, list[str]]:
    """``text`` with every marked table regenerated, and the markers naming a component
    that is not installed."""
    missing: list[str] = []

    def fill(match: re.Match[str]) -> str:
        kind, name = match["kind"], match["name"]
        comp = plugins.components.get(kind, {}).get(name)
        if comp is None:
            missing.append(f"{where}: params:{kind}:{name}: no such component installed")
            return match[0]
        return f"{match[1]}{markdown_table(comp)}{match[5]}"

    return TABLE.sub(fill, text), missing


def update_docs(paths: list[Path], plugins: PluginSet) -> list[str]:
    """Regenerate the marked tables in ``paths``; return the files changed."""
    changed = []
    for path in paths:
        text = path.read_text(encoding="utf-8")
        new, missing = _tables(text, plugins, str(path))
        if missing:
            raise SynthlearnError("; ".join(missing))
        if new != text:
            path.write_text(new, encoding="utf-8")
            changed.append(str(path))
    return changed


def stale_tables(paths: list[Path], plugins: PluginSet) -> list[str]:
    """``<file>: params:KIND:NAME`` for every marked table that differs from what the
    config classes say now (or names a component not installed)."""
    stale = []
    for path in paths:
        text = path.read_text(encoding="utf-8")
        new, missing = _tables(text, plugins, str(path))
        stale += missing
        old_tables = {(m["kind"], m["name"]): m["body"] for m in TABLE.finditer(text)}
        for m in TABLE.finditer(new):
            if old_tables.get((m["kind"], m["name"])) != m["body"]:
                stale.append(f"{path}: params:{m['kind']}:{m['name']}")
    return stale
