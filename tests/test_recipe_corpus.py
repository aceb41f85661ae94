"""A corpus of malformed recipes: each is refused with one ``error:`` line per problem
(exit status 2, no traceback); and relative paths in a recipe resolve against its folder.

Every file in ``tests/corpus/recipes`` starts with comment lines that say what to expect:

* ``# expect: TEXT`` once per problem: exactly one ``error:`` line contains TEXT (a
  ``...`` in TEXT stands for anything, so parts must appear in that order);
* ``# args: ...`` extra command-line arguments (``--set``), read as a shell would;
* ``# needs: NAME`` a component from a plugin distribution: skipped when not installed.

The corpus also loads ``tests/corpus/corpus_plugin.py`` (through ``SYNTHLEARN_PLUGINS``),
a plugin with a required slot, a moved param and nested configs holding input paths.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest
import yaml
from conftest import REPO, SHARED_DATA, small_recipe
from synthlearn.cli import main
from synthlearn.errors import RecipeError, SynthlearnError
from synthlearn.loading.manager import load_plugins
from synthlearn.recipe import (
    absolute_path,
    check_recipe,
    did_you_mean,
    load_recipe,
    make_converter,
    parse_override,
    read_yaml,
    structure_at,
)

CORPUS = Path(__file__).parent / "corpus"
RECIPES = sorted((CORPUS / "recipes").glob("*.yaml"))


@pytest.fixture(autouse=True)
def corpus_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test here sees the corpus plugin next to the installed ones."""
    monkeypatch.syspath_prepend(str(CORPUS))
    monkeypatch.setenv("SYNTHLEARN_PLUGINS", "corpus_plugin")


@pytest.fixture(scope="module")
def installed() -> set[str]:
    """Names of every installed component (any kind)."""
    return {name for comps in load_plugins().components.values() for name in comps}


def header(path: Path) -> dict[str, list[str]]:
    """The ``# key: value`` comment lines a corpus file starts with (read as bytes: some
    files are not UTF-8 past their header)."""
    found: dict[str, list[str]] = {"expect": [], "args": [], "needs": []}
    for raw in path.read_bytes().split(b"\n"):
        match = re.match(rb"# (expect|args|needs): (.*)", raw)
        if match is None:
            break
        found[match.group(1).decode()].append(match.group(2).decode())
    return found


def matches(expected: str, line: str) -> bool:
    """Whether ``line`` holds the parts of ``expected`` (split at ``...``) in order."""
    pattern = ".*".join(re.escape(part.strip()) for part in expected.split("..."))
    return re.search(pattern, line) is not None


def validate(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``synthlearn validate`` in this process: (status, stdout, stderr)."""
    status = main(["validate", *argv])
    out = capsys.readouterr()
    return status, out.out, out.err


def test_the_corpus_is_large_and_annotated() -> None:
    assert len(RECIPES) >= 40
    for path in RECIPES:
        assert header(path)["expect"], f"{path.name} has no '# expect:' line"


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_malformed_recipe_gives_one_line_per_problem(path: Path, installed: set[str],
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    spec = header(path)
    missing = [name for name in spec["needs"] if name not in installed]
    if missing:
        pytest.skip(f"needs component(s) {', '.join(missing)}, not installed")
    args = [word for line in spec["args"] for word in shlex.split(line)]
    status, out, err = validate(capsys, str(path), *args)
    lines = err.splitlines()
    assert status == 2, err
    assert out == ""
    assert "Traceback" not in err
    assert all(line.startswith("error: ") for line in lines), err
    assert len(lines) == len(spec["expect"]), err
    unmatched = list(lines)
    for expected in spec["expect"]:
        hit = next((line for line in unmatched if matches(expected, line)), None)
        assert hit is not None, f"no error line matches {expected!r}:\n{err}"
        unmatched.remove(hit)


def test_zero_byte_file_and_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_bytes(b"")
    assert validate(capsys, str(empty)) == (
        2, "", f"error: {empty}: empty recipe file; a recipe is a YAML mapping (name:, data:, "
        "arms:, ...)\n")
    assert validate(capsys, str(tmp_path)) == (
        2, "", f"error: {tmp_path}: is a directory, not a recipe file\n")
    big = tmp_path / "big.yaml"
    big.write_bytes(b"#" * (2 << 20))
    status, _, err = validate(capsys, str(big))
    assert (status, err) == (2, f"error: {big}: larger than 1 MiB: not a recipe file\n")


def test_utf8_bom_and_merge_keys_are_accepted(tmp_path: Path) -> None:
    """Overriding a merged key is not a duplicate; a BOM is not an error."""
    path = tmp_path / "merge.yaml"
    path.write_bytes("\ufeffbase: &base {epochs: 1, lr: 0.1}\nmodel: {<<: *base, epochs: 3}\n"
                     .encode())
    assert read_yaml(path)["model"] == {"epochs": 3, "lr": 0.1}


def test_overrides_are_read_by_the_same_loader() -> None:
    with pytest.raises(SynthlearnError, match=r"--set \$.data.params: duplicate key 'size'"):
        parse_override("data.params={size: 8, size: 16}")
    assert parse_override("data.params={size: 8}")[1] == {"size": 8}
    assert parse_override("name=[a, b")[1] == "[a, b"  # not YAML: taken as text
    assert parse_override("seed=!!python/object/apply:os.system ['x']")[1] == (
        "!!python/object/apply:os.system ['x']")  # never constructed


def test_plugin_configs_get_strict_lists_and_finite_floats() -> None:
    """``make_converter`` is what plugins use for their own nested params."""
    from synthlearn.generation.conditioning import PhenotypicConfig

    conv = make_converter()
    assert conv.structure({"attributes": ["scanner"]}, PhenotypicConfig).attributes == [
        "scanner"]
    for bad in ("scanner", {"scanner": 1}, 3):
        assert structure_at(conv, {"attributes": bad}, PhenotypicConfig, "$.p") == (
            None, [f"$.p.attributes: expected a list, got {bad!r}"])
    for bad, shown in ((float("inf"), "inf"), (float("-inf"), "-inf"), (float("nan"), "nan"),
                       (10**400, "1" + "0" * 36 + "...")):
        assert structure_at(conv, bad, float, "$.lr") == (
            None, [f"$.lr: expected a finite number, got {shown}"])
    assert conv.structure(3, float) == 3.0


def test_did_you_mean() -> None:
    assert did_you_mean("centralised", ["centralized", "local"]) == (
        "; did you mean 'centralized'?")
    assert did_you_mean("site", ["sites", "seed", "name"]) == "; did you mean 'sites'?"
    assert did_you_mean("colour", ["sites", "seed", "name"]) == ""


# --- relative paths -------------------------------------------------------------------------


def image_folder(root: Path) -> Path:
    """A tiny ``root/<class>/*.png`` folder: 2 classes, 6 grey 8x8 images each."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for i in range(6):
            pixels = rng.integers(0, 256, (8, 8), dtype=np.uint8)
            Image.fromarray(pixels, mode="L").save(root / name / f"{i}.png")
    return root


def folder_recipe(tmp_path: Path, root: str) -> Path:
    """``tmp_path/recipes/r.yaml`` reading an image folder at ``root`` (as written)."""
    recipe = small_recipe(data={"use": "imagefolder", "params": {"root": root, "size": 8}},
                          sites={"count": 2})
    path = tmp_path / "recipes" / "r.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
    return path


def test_relative_root_resolves_against_the_recipe_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    folder = image_folder(tmp_path / "data" / "images")
    path = folder_recipe(tmp_path, "../data/images")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for cwd in (tmp_path, elsewhere, path.parent):
        monkeypatch.chdir(cwd)
        recipe = load_recipe(os.path.relpath(path), load_plugins())
        assert recipe.data.config.root == str(folder)
        # the run directory's recipe.yaml holds the absolute path; outputs stay relative
        assert recipe.to_dict()["data"]["params"]["root"] == str(folder)
        assert (recipe.output_dir, recipe.cache_dir) == ("runs", ".synthlearn-cache")
    status, out, err = validate(capsys, str(path))
    assert (status, err) == (0, "")
    assert out.startswith("ok (images: 10 training images over 2 sites")


def test_set_paths_resolve_against_the_current_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = image_folder(tmp_path / "here" / "images")
    path = folder_recipe(tmp_path, "not-used")
    monkeypatch.chdir(tmp_path / "here")
    plugins = load_plugins()
    for override in ("data.params.root=images", "data.params={root: images}",
                     "data={use: imagefolder, params: {root: images}}"):
        recipe = load_recipe(path, plugins, [override])
        assert recipe.data.config.root == str(folder), override
    # a recipe built in code has no file: the current directory
    recipe = check_recipe(small_recipe(data={"use": "imagefolder",
                                             "params": {"root": "images"}}), plugins)
    assert recipe.data.config.root == str(folder)
    # other overrides leave the file's paths relative to the file
    recipe = load_recipe(path, plugins, ["data.params.size=8"])
    assert recipe.data.config.root == str(path.parent / "not-used")


def test_home_and_variables_are_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                         ) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CORPUS_DATA", str(tmp_path / "data"))
    assert absolute_path("~/x", Path("/elsewhere")) == str(tmp_path / "home" / "x")
    assert absolute_path("$CORPUS_DATA/x", Path("/elsewhere")) == str(tmp_path / "data" / "x")
    assert absolute_path("/abs/x", Path("/elsewhere")) == "/abs/x"
    # medmnist's default root (~/.medmnist) is expanded too, so recipe.yaml is absolute
    recipe = check_recipe(small_recipe(data={"use": "medmnist", "params": {"download": False}}),
                          load_plugins())
    assert recipe.data.config.root == str(tmp_path / "home" / ".medmnist")


def test_plugin_input_paths_in_nested_configs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                              ) -> None:
    recipe_dir = tmp_path / "recipes"
    monkeypatch.chdir(tmp_path)
    data = small_recipe(data={"use": "paired_data", "params": {
        "sources": [{"root": "a"}, {"root": "/abs/b", "weight": 2.0}],
        "main": {"root": "../m"}, "tags": ["x"]}})
    config = check_recipe(data, load_plugins(), recipe_dir=recipe_dir).data.config
    assert [s.root for s in config.sources] == [str(recipe_dir / "a"), "/abs/b"]
    assert config.main.root == str(tmp_path / "m")
    assert config.labels == str(tmp_path / "labels.csv")  # a default: the current directory
    assert config.tags == ["x"]  # not a path: untouched
    over = check_recipe(data, load_plugins(), recipe_dir=recipe_dir,
                        overridden=["$.data.params.sources[0]"]).data.config
    assert [s.root for s in over.sources] == [str(tmp_path / "a"), "/abs/b"]
    assert over.main.root == str(tmp_path / "m")


@pytest.mark.skipif(not (SHARED_DATA / "pneumoniamnist.npz").exists(),
                    reason="needs ../shared/data/pneumoniamnist.npz")
@pytest.mark.parametrize("cwd", [REPO, Path("/tmp")], ids=["repo", "tmp"])
def test_templates_validate_from_anywhere(cwd: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(cwd)
    template = REPO / "templates" / "recipes" / "catphishing.yaml"
    status, out, err = validate(capsys, os.path.relpath(template))
    assert (status, err) == (0, "")
    assert out.startswith("ok (pneumoniamnist: ")
    recipe = load_recipe(template, load_plugins())
    assert recipe.data.config.root == str(SHARED_DATA.resolve())


def test_any_value_anywhere_is_checked_not_a_crash() -> None:
    """Whatever a top-level key holds, the check returns a recipe or a ``RecipeError``."""
    odd = [None, 0, -1, 1.5, float("nan"), "", "x", [], [1], ["x"], {}, {"a": 1}, True]
    plugins = load_plugins()
    refused = 0
    for value in odd:
        for key in ("name", "seed", "data", "sites", "model", "arms", "attacks", "runner",
                    "output"):
            try:
                check_recipe(small_recipe(**{key: value}), plugins)
            except RecipeError as exc:
                refused += 1
                assert all(p.startswith("$") for p in exc.problems), exc.problems
    assert refused > 100
