"""The public API: what plugins may import, that it is documented, and a core without
import cycles.

* The in-tree plugins and the template import only ``synthlearn``, ``synthlearn.api``
  (and ``synthlearn.testing`` in their tests); read with ``ast``, not by importing them,
  so a violation is named by file and line.
* Every name in ``synthlearn.api.__all__`` resolves and has a docstring.
* The core's import graph (module-level and in-function imports, ``if TYPE_CHECKING:``
  blocks left out) has no cycle.
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Iterator
from pathlib import Path

import pytest
import synthlearn
import synthlearn.api as api
from conftest import REPO

CORE = REPO / "framework" / "synthlearn"
PLUGIN_SOURCES = sorted([*REPO.glob("plugins/*/synthlearn_*/**/*.py"),
                         *REPO.glob("templates/plugin/synthlearn_*/**/*.py")])
PLUGIN_TESTS = sorted([*REPO.glob("plugins/*/tests/**/*.py"),
                       *REPO.glob("templates/plugin/tests/**/*.py")])
ALLOWED = ("synthlearn", "synthlearn.api", "synthlearn.testing")


# --- reading imports -----------------------------------------------------------------------


def _is_type_checking(test: ast.expr) -> bool:
    """``if TYPE_CHECKING:`` or ``if typing.TYPE_CHECKING:``."""
    return ((isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
            or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def _import_nodes(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement in ``tree``, at any depth (functions, methods, ``try``),
    except in the body of an ``if TYPE_CHECKING:`` block (its ``else`` counts)."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
            continue
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _module_name(path: Path, root: Path) -> str:
    """The dotted name of ``path`` under the sys.path entry ``root``."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_names(path: Path, module: str) -> Iterator[tuple[str, str | None, int]]:
    """``(module, name, line)`` for each import in ``path`` (whose dotted name is
    ``module``): ``import a.b`` gives ``("a.b", None)``, ``from a.b import c`` gives
    ``("a.b", "c")``; relative imports are made absolute."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in _import_nodes(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None, node.lineno
            continue
        base = node.module or ""
        if node.level:
            anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
            base = ".".join([*anchor, *([base] if base else [])])
        for alias in node.names:
            yield base, alias.name, node.lineno


# --- (a) plugins use only the public API ---------------------------------------------------


def _core_module(module: str) -> bool:
    return module == "synthlearn" or module.startswith("synthlearn.")


def _import_root(path: Path) -> Path:
    """The folder ``path``'s module is imported from: above its outermost package."""
    folder = path.parent
    while (folder / "__init__.py").exists():
        folder = folder.parent
    return folder


def public_api_violations(paths: list[Path], root: Path = REPO) -> list[str]:
    """``file:line: imports synthlearn.x`` (``file`` relative to ``root``) for each import
    of a core module other than the public ones (``from synthlearn import x`` must name
    one of the top-level package's own names, not a submodule)."""
    problems: dict[tuple[str, int, str], str] = {}
    for path in paths:
        module = _module_name(path, _import_root(path))
        for target, name, line in imported_names(path, module):
            if not _core_module(target):
                continue
            full = f"{target}.{name}" if name and target == "synthlearn" else target
            if full not in ALLOWED and not (target == "synthlearn" and name and
                                            name in synthlearn.__all__):
                file = str(path.relative_to(root))
                problems[file, line, full] = (f"{file}:{line}: imports {full}, which is "
                                              f"not public ({', '.join(ALLOWED)})")
    return [problems[key] for key in sorted(problems)]


def test_plugin_sources_are_found() -> None:
    """The walk sees every in-tree plugin and the template (it would pass vacuously
    if the glob matched nothing)."""
    names = {p.relative_to(REPO).parts[1] for p in PLUGIN_SOURCES}
    assert {"gan", "kr", "fedavg", "mia", "plugin"} <= names


def test_in_tree_plugins_import_only_the_public_api() -> None:
    problems = public_api_violations(PLUGIN_SOURCES)
    assert not problems, "\n".join(problems)


def test_plugin_tests_import_only_the_public_api_and_the_kit() -> None:
    """A plugin's own tests (``plugins/<name>/tests``, the template's) go through
    ``synthlearn.testing`` (``run_recipe``, fixtures, conformance checks), not the core's
    internals, so they keep working when those change."""
    problems = public_api_violations(PLUGIN_TESTS)
    assert not problems, "\n".join(problems)


def test_the_import_check_names_file_and_line(tmp_path: Path) -> None:
    """A plugin reaching into the core is reported with its file and line, in-function
    imports included; the public modules and ``from synthlearn import <light name>`` are
    not."""
    plugin = tmp_path / "plugins" / "probe" / "synthlearn_probe" / "mod.py"
    plugin.parent.mkdir(parents=True)
    (plugin.parent / "__init__.py").write_text("", encoding="utf-8")
    plugin.write_text("import numpy\n"
                      "from synthlearn import ComponentSpec, hookimpl\n"
                      "from synthlearn.api import Payload\n"
                      "import synthlearn.testing\n"
                      "def f():\n"
                      "    from synthlearn.arms.synthetic import draw_pool\n"
                      "from synthlearn import recipe\n"
                      "from . import sibling\n", encoding="utf-8")
    assert public_api_violations([plugin], tmp_path) == [
        "plugins/probe/synthlearn_probe/mod.py:6: imports synthlearn.arms.synthetic, which "
        "is not public (synthlearn, synthlearn.api, synthlearn.testing)",
        "plugins/probe/synthlearn_probe/mod.py:7: imports synthlearn.recipe, which is not "
        "public (synthlearn, synthlearn.api, synthlearn.testing)",
    ]


# --- (b) the API is complete and documented ------------------------------------------------


@pytest.mark.parametrize("name", api.__all__)
def test_every_public_name_resolves_and_has_a_docstring(name: str) -> None:
    obj = getattr(api, name)
    if inspect.isclass(obj) or inspect.isfunction(obj) or inspect.ismodule(obj):
        doc = inspect.getdoc(obj)
    else:  # a constant or marker: the ``#:`` comment or docstring where it is assigned
        doc = _constant_doc(name)
    assert doc and doc.strip(), f"synthlearn.api.{name} has no docstring"


def _constant_doc(name: str) -> str | None:
    """The ``#:`` comment above, or the string literal below, ``name``'s assignment in
    the module ``synthlearn.api`` takes it from."""
    tree = ast.parse(Path(api.__file__).read_text(encoding="utf-8"))
    origin = next(node.module for node in tree.body if isinstance(node, ast.ImportFrom)
                  and any((a.asname or a.name) == name for a in node.names))
    assert origin is not None
    path = CORE.parent / (origin.replace(".", "/") + ".py")
    if not path.exists():
        path = CORE.parent / origin.replace(".", "/") / "__init__.py"
    lines = path.read_text(encoding="utf-8").splitlines()
    body = ast.parse("\n".join(lines)).body
    for i, node in enumerate(body):
        targets = (node.targets if isinstance(node, ast.Assign)
                   else [node.target] if isinstance(node, ast.AnnAssign) else [])
        if not any(isinstance(t, ast.Name) and t.id == name for t in targets):
            continue
        comment = [ln.strip().removeprefix("#:").strip()
                   for ln in lines[: node.lineno - 1][-3:] if ln.strip().startswith("#:")]
        after = body[i + 1] if i + 1 < len(body) else None
        if (isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)):
            comment.append(after.value.value)
        return " ".join(comment)
    return None


def test_all_lists_exactly_what_the_module_exports() -> None:
    """Every public name bound in ``synthlearn.api`` is in ``__all__``, once, and the
    top-level package's light names are there too."""
    bound = {name for name in vars(api) if name.isidentifier() and not name.startswith("_")
             } - {"annotations"}  # not the names pytest's assertion rewriting may add
    assert len(api.__all__) == len(set(api.__all__))
    assert set(api.__all__) == bound
    assert set(synthlearn.__all__) - {"__version__", "hookspec"} <= set(api.__all__)


# --- (c) no import cycle in the core -------------------------------------------------------


def core_modules() -> dict[str, Path]:
    return {_module_name(p, CORE.parent): p for p in sorted(CORE.rglob("*.py"))}


def import_graph(modules: dict[str, Path], root: Path = REPO) -> dict[str, dict[str, str]]:
    """``graph[a][b]`` = ``"file:line"`` (relative to ``root``) where module ``a`` of
    ``modules`` imports module ``b`` of ``modules``.

    ``from p import x`` points at ``p.x`` when that is a module, else at ``p``; importing
    a module also runs its parent packages' ``__init__``, so those count too, except the
    importer's own ancestors (already being imported when it runs)."""
    graph: dict[str, dict[str, str]] = {m: {} for m in modules}
    for module, path in modules.items():
        ancestors = {".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)}
        for target, name, line in imported_names(path, module):
            full = f"{target}.{name}" if name and f"{target}.{name}" in modules else target
            if full not in modules:
                continue
            where = f"{path.relative_to(root)}:{line}"
            graph[module].setdefault(full, where)
            parts = full.split(".")
            for i in range(1, len(parts)):
                parent = ".".join(parts[:i])
                if parent in modules and parent not in ancestors and parent != module:
                    graph[module].setdefault(parent, where)
    return graph


def find_cycles(graph: dict[str, dict[str, str]]) -> list[list[str]]:
    """One cycle (``[a, b, ..., a]``) per strongly connected group of modules that import
    each other, found with Tarjan's algorithm, then a shortest cycle through its first
    member by breadth-first search."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1 or node in graph[node]:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    cycles = []
    for group in groups:
        start, members = group[0], set(group)
        paths = {start: [start]}
        queue = [start]
        while queue:
            node = queue.pop(0)
            for nxt in sorted(graph[node]):
                if nxt == start:
                    cycles.append([*paths[node], start])
                    queue = []
                    break
                if nxt in members and nxt not in paths:
                    paths[nxt] = [*paths[node], nxt]
                    queue.append(nxt)
    return cycles


def describe_cycle(cycle: list[str], graph: dict[str, dict[str, str]]) -> str:
    return " -> ".join(cycle) + "  (" + ", ".join(
        graph[a][b] for a, b in zip(cycle, cycle[1:], strict=False)) + ")"


def test_the_core_has_no_import_cycle() -> None:
    graph = import_graph(core_modules())
    cycles = find_cycles(graph)
    assert not cycles, "import cycles in the core:\n" + "\n".join(
        describe_cycle(c, graph) for c in cycles)


def test_the_cycle_check_finds_in_function_imports_and_skips_type_checking(
        tmp_path: Path) -> None:
    """A cycle closed by an import inside a function is found and named with its files
    and lines; one closed only under ``if TYPE_CHECKING:`` is not a cycle."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("", encoding="utf-8")
    (pkg / "a.py").write_text("from pkg.b import thing\n", encoding="utf-8")
    (pkg / "b.py").write_text("def thing():\n    from pkg import a\n", encoding="utf-8")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nimport pkg.d\n"
                              "if TYPE_CHECKING:\n    import pkg.e\n", encoding="utf-8")
    (pkg / "d.py").write_text("", encoding="utf-8")
    (pkg / "e.py").write_text("import pkg.c\n", encoding="utf-8")
    modules = {_module_name(p, tmp_path): p for p in sorted(pkg.glob("*.py"))}
    graph = import_graph(modules, tmp_path)
    assert [describe_cycle(c, graph) for c in find_cycles(graph)] == [
        "pkg.a -> pkg.b -> pkg.a  (pkg/a.py:1, pkg/b.py:2)"]
