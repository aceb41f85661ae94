"""Recipe checking: every problem with its YAML path, overrides, the resolved recipe."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import small_recipe
from synthlearn.errors import RecipeError, SynthlearnError
from synthlearn.loading.manager import load_plugins
from synthlearn.recipe import apply_overrides, check_recipe, load_recipe, parse_override


@pytest.fixture(scope="module")
def plugins():
    return load_plugins()


def problems_of(data: dict, plugins) -> list[str]:
    with pytest.raises(RecipeError) as info:
        check_recipe(data, plugins)
    return info.value.problems


def test_small_recipe_resolves_with_defaults(plugins) -> None:
    recipe = check_recipe(small_recipe(), plugins)
    assert [a.name for a in recipe.arms] == ["centralized", "local"]
    assert recipe.runner.use == "local"
    assert recipe.model.config.arch == "test_resnet"
    resolved = recipe.to_dict()
    assert resolved["data"]["params"]["n_train"] == 180
    assert resolved["data"]["params"]["classes"] == 2  # default filled in
    assert resolved["sites"]["partition"] == {"use": "iid", "params": {}}
    assert resolved["arms"][0] == {"name": "centralized", "use": "centralized", "params": {}}
    # the resolved form is itself a valid recipe that resolves to the same thing
    assert check_recipe(resolved, plugins).to_dict() == resolved


def test_wrong_types_are_reported_with_their_paths(plugins) -> None:
    data = small_recipe(seed="zero")
    data["model"]["params"]["epochs"] = "ten"
    data["model"]["params"]["lr"] = "fast"
    data["sites"]["count"] = 2.5
    problems = problems_of(data, plugins)
    assert "$.seed: expected int, got 'zero'" in problems
    assert "$.sites.count: expected int, got 2.5" in problems
    # with the top level sound, exactly the component problems (both come in one pass)
    data = small_recipe()
    data["model"]["params"]["epochs"] = "ten"
    data["model"]["params"]["lr"] = "fast"
    assert problems_of(data, plugins) == [
        "$.model.params.epochs: expected int, got 'ten'",
        "$.model.params.lr: expected number, got 'fast'",
    ]


def test_unknown_keys_and_missing_keys(plugins) -> None:
    data = small_recipe(colour="blue")
    del data["name"]
    problems = problems_of(data, plugins)
    assert "$.name: required, missing" in problems
    assert "$: unknown key(s): colour" in problems
    data = small_recipe()
    data["data"]["params"]["n_trian"] = 10
    assert problems_of(data, plugins) == [
        "$.data.params: unknown key 'n_trian'; did you mean 'n_train'?"]


def test_unknown_component_lists_installed_names(plugins) -> None:
    data = small_recipe(arms=[{"use": "centralized"}, {"use": "fedavgg", "params": {}}])
    installed = ", ".join(f"{name} ({c.distribution})"
                          for name, c in sorted(plugins.components["arm"].items()))
    assert installed.startswith("centralized (synthlearn), ")  # with every installed plugin
    hint = "; did you mean 'fedavg'? " if "fedavg" in plugins.components["arm"] else "; "
    assert problems_of(data, plugins) == [
        f"$.arms[1].use: unknown arm 'fedavgg'{hint}installed: {installed}"
    ]


def test_all_problems_are_reported_not_just_the_first(plugins) -> None:
    data = small_recipe(arms=[{"use": "nope"}, {"use": "local", "generator": {"use": "gan"}}])
    data["sites"]["partition"] = {"use": "dirichlet", "params": {"alpha": "low"}}
    problems = problems_of(data, plugins)
    installed = ", ".join(f"{name} ({c.distribution})"
                          for name, c in sorted(plugins.components["arm"].items()))
    assert problems == [
        "$.sites.partition.params.alpha: expected number, got 'low'",
        f"$.arms[0].use: unknown arm 'nope'; installed: {installed}",
        "$.arms[1].generator: arm 'local' takes no 'generator' (its keys: use, name, "
        "params, model, dp)",
    ]


def test_component_checks_run_at_validation(plugins) -> None:
    data = small_recipe()
    data["model"]["params"]["arch"] = "resnet19"
    (problem,) = problems_of(data, plugins)
    assert problem.startswith("$.model.params: unknown timm architecture 'resnet19'")


def test_arm_names_default_and_clash(plugins) -> None:
    recipe = check_recipe(small_recipe(arms=["local", "local", "centralized"]), plugins)
    assert [a.name for a in recipe.arms] == ["local-0", "local-1", "centralized"]
    data = small_recipe(arms=[{"use": "local", "name": "x"}, {"use": "centralized", "name": "x"}])
    assert problems_of(data, plugins) == [
        "$.arms[1].name: arm name 'x' is already used by $.arms[0]; give each arm its own name"
    ]


def test_per_arm_model_override(plugins) -> None:
    data = small_recipe(arms=["centralized", {"use": "local", "model": {
        "use": "timm", "params": {"arch": "resnet18", "epochs": 1}}}])
    recipe = check_recipe(data, plugins)
    assert recipe.arms[0].model.config.arch == "test_resnet"
    assert recipe.arms[1].model.config.arch == "resnet18"
    assert recipe.to_dict()["arms"][1]["model"]["params"]["arch"] == "resnet18"


def test_overrides_parse_and_apply() -> None:
    assert parse_override("arms[1].params.rounds=10") == (
        ["arms", 1, "params", "rounds"], 10, "$.arms[1].params.rounds")
    assert parse_override("$.seed=3")[1] == 3
    assert parse_override("data.params.root=~/x")[1] == "~/x"
    data = apply_overrides(small_recipe(), ["model.params.epochs=5", "seed=7",
                                            "arms[0].name=pooled", "output.dir=elsewhere"])
    assert data["model"]["params"]["epochs"] == 5
    assert data["seed"] == 7
    assert data["arms"][0] == {"use": "centralized", "name": "pooled"}
    assert data["output"] == {"dir": "elsewhere"}
    with pytest.raises(SynthlearnError, match=r"\$.arms has no item \[5\] \(it has 2\)"):
        apply_overrides(small_recipe(), ["arms[5].params.x=1"])
    with pytest.raises(SynthlearnError, match="expected PATH=VALUE"):
        apply_overrides(small_recipe(), ["seed"])


def test_overrides_are_validated_like_the_file(tmp_path: Path, write_recipe, plugins) -> None:
    path = write_recipe(small_recipe())
    recipe = load_recipe(path, plugins, ["model.params.epochs=4"])
    assert recipe.model.config.epochs == 4
    with pytest.raises(RecipeError) as info:
        load_recipe(path, plugins, ["model.params.epochs=four"])
    assert info.value.problems == ["$.model.params.epochs: expected int, got 'four'"]


def test_cli_validate_messages(tmp_path: Path, write_recipe, cli) -> None:
    good = write_recipe(small_recipe())
    ok = cli("validate", str(good))
    assert (ok.returncode, ok.stderr) == (0, "")
    assert ok.stdout.strip() == ("ok (phantom: 180 training images over 3 sites, "
                                 "90 test images; 2 arms)")
    bad = cli("validate", str(good), "--set", "arms[0].params.rounds=ten")
    assert bad.returncode == 2
    assert bad.stderr.strip() == "error: $.arms[0].params: unknown key(s): rounds"
    missing = cli("validate", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2
    assert missing.stderr.strip() == f"error: {tmp_path / 'nope.yaml'}: recipe file not found"
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\narms: [unclosed\n")
    result = cli("validate", str(broken))
    assert result.returncode == 2 and "not valid YAML" in result.stderr
    assert "Traceback" not in result.stderr
    no_file = cli("validate", str(good), "--set", "data.use=medmnist",
                      "--set", f"data.params={{root: {tmp_path}}}")
    assert no_file.returncode == 2
    assert no_file.stderr.strip().startswith(
        f"error: $.data: MedMNIST file not found: {tmp_path / 'pneumoniamnist.npz'}")
    too_many = cli("validate", str(good), "--set", "sites.count=500")
    assert too_many.returncode == 2
    assert too_many.stderr.startswith("error: $.sites.partition: ")
    hostile = tmp_path / "hostile.yaml"
    hostile.write_text("name: !!python/object/apply:os.system ['echo pwned']\n")
    result = cli("validate", str(hostile))
    assert result.returncode == 2 and "not valid YAML" in result.stderr


def test_components_must_be_names_or_mappings(plugins) -> None:
    problems = problems_of(small_recipe(data=5, arms=["local", 7]), plugins)
    assert problems == [
        "$.data: expected a component ({use: name, params: {...}}), got 5",
        "$.arms[1]: expected an arm ({use: name, params: {...}}), got 7",
    ]


TEMPLATES = sorted((Path(__file__).parents[1] / "templates" / "recipes").glob("*.yaml"))


@pytest.mark.parametrize("path", TEMPLATES, ids=[p.stem for p in TEMPLATES])
def test_every_template_recipe_resolves(path: Path, plugins) -> None:
    recipe = load_recipe(path, plugins)
    assert recipe.name == path.stem  # the run directory is named after the file
    assert len({arm.name for arm in recipe.arms}) == len(recipe.arms) >= 1


def test_sampling_fields_are_left_out_of_what_a_fit_depends_on() -> None:
    import attrs
    from synthlearn import sampling_field
    from synthlearn.params import fitting_params

    @attrs.frozen
    class Config:
        steps: int = 10
        guidance: float = sampling_field(default=2.0, metadata={"doc": "scale"})

    assert attrs.fields(Config).guidance.metadata["doc"] == "scale"
    assert fitting_params(Config(), {"steps": 10, "guidance": 2.0}) == {"steps": 10}
    assert fitting_params(object(), {"steps": 10}) == {"steps": 10}  # not attrs: all kept
