"""``synthlearn describe`` and the docs' parameter tables, generated from the config
classes' field docs (issue 17)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import pytest
from synthlearn.loading.manager import load_plugins
from synthlearn.schema.describe import TABLE, stale_tables, update_docs
from synthlearn.schema.params import param_rows, undocumented

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "docs" / "recipes.md", *sorted((ROOT / "plugins").glob("*/README.md"))]


@pytest.fixture(scope="module")
def plugins() -> Any:
    loaded = load_plugins()
    loaded.raise_problems()
    return loaded


def test_describe_prints_params_types_defaults_docs_and_slots(cli: Any) -> None:
    result = cli("describe", "arm", "synthetic")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith("arm synthetic: ")
    assert "distribution: synthlearn " in out
    assert "  share: str (one of samples, generator) = samples\n" in out
    assert "synthetic images cross" in out  # the field's doc
    assert "  generator: a generator (default gan)" in out


def test_a_plugin_component_names_its_distribution(cli: Any, plugins: Any) -> None:
    if "gan" not in plugins.components["generator"]:
        pytest.skip("the gan plugin is not installed")
    out = cli("describe", "generator", "gan").stdout
    assert "distribution: synthlearn-gan " in out
    assert "  steps: int = 2500\n      training budget in generator updates" in out


@pytest.mark.parametrize("args, line", [
    (("describe", "arm", "centralised"), "error: unknown arm 'centralised'; did you mean "
                                         "'centralized'? installed: "),
    (("describe", "arms", "local"), "error: unknown kind 'arms'; did you mean 'arm'? kinds: "),
    (("describe", "arm"), "error: describe: give KIND NAME"),
])
def test_an_unknown_kind_or_name_is_one_line_with_a_hint(cli: Any, args: tuple[str, ...],
                                                         line: str) -> None:
    result = cli(*args)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(line), result.stderr
    assert "Traceback" not in result.stderr


def test_markdown_is_the_docs_block(cli: Any) -> None:
    out = cli("describe", "--markdown", "partition", "dirichlet").stdout
    assert out.splitlines()[0] == "<!-- params:partition:dirichlet -->"
    assert "| `alpha` | float | `0.5` | per class, site shares ~ Dirichlet(alpha)" in out
    assert out.endswith("<!-- /params -->\n")
    none = cli("describe", "--markdown", "arm", "local").stdout
    assert "`local` takes no params." in none


def test_every_in_tree_param_is_documented(plugins: Any) -> None:
    missing = [f"{kind} {name}: {', '.join(undocumented(comp.spec.config))}"
               for kind, comps in plugins.components.items()
               for name, comp in comps.items() if undocumented(comp.spec.config)]
    assert missing == []


def test_the_docs_tables_are_current(plugins: Any) -> None:
    """Fails when a config class changed and the tables were not regenerated: run
    ``synthlearn describe --update-docs docs/recipes.md plugins/*/README.md``."""
    assert sum(len(TABLE.findall(p.read_text(encoding="utf-8"))) for p in DOCS) >= 10
    assert stale_tables(DOCS, plugins) == []


def test_a_stale_table_is_found_and_regenerated(tmp_path: Path, plugins: Any) -> None:
    doc = tmp_path / "README.md"
    doc.write_text("# x\n\n<!-- params:partition:dirichlet -->\n| old |\n<!-- /params -->\n"
                   "after\n", encoding="utf-8")
    assert stale_tables([doc], plugins) == [f"{doc}: params:partition:dirichlet"]
    assert update_docs([doc], plugins) == [str(doc)]
    text = doc.read_text(encoding="utf-8")
    assert "| old |" not in text and "`min_per_site`" in text and text.endswith("after\n")
    assert stale_tables([doc], plugins) == []
    doc.write_text("<!-- params:generator:nope -->\n<!-- /params -->\n", encoding="utf-8")
    assert stale_tables([doc], plugins) == [
        f"{doc}: params:generator:nope: no such component installed"]


def test_rows_read_types_defaults_and_validators() -> None:
    @attrs.define
    class Config:
        mode: str = attrs.field(default="a", validator=attrs.validators.in_(("a", "b")),
                                metadata={"doc": "the mode"})
        rate: float | None = attrs.field(
            default=None, validator=attrs.validators.optional(attrs.validators.gt(0.0)))
        names: list[str] = attrs.field(factory=list)

    rows = param_rows(Config)
    assert [(r.name, r.type, r.default, r.doc) for r in rows] == [
        ("mode", "str (one of a, b)", "a", "the mode"),
        ("rate", "float | None (> 0.0)", "null", ""),
        ("names", "list[str]", "[]", "")]
