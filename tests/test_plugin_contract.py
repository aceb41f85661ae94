"""The plugin contract, as a plugin author meets it: each way a plugin can break it is
one clear line naming the distribution (and the YAML path), never a traceback.

Every plugin here is a throwaway distribution (``write_distribution``) found through its
entry point, exactly as a pip-installed one is."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import small_recipe, write_distribution
from synthlearn.arms.context import ArmContext
from synthlearn.loading.events import FrozenDict, read_only
from synthlearn.loading.manager import load_plugins

# --------------------------------------------------------------- the object's contract

NO_RUN = """
from synthlearn import ComponentSpec, NoParams, hookimpl

class Bar:
    '''An arm that forgot its run method.'''
    private = True

    def __init__(self, config):
        self.config = config

@hookimpl
def synthlearn_register_arms():
    return [ComponentSpec("bar", NoParams, Bar, "an arm without run")]
"""


def test_arm_object_without_run_is_one_line_at_validate_and_run(tmp_path: Path, write_recipe,
                                                                cli) -> None:
    site = write_distribution(tmp_path / "site", "synthlearn-foo", "foo_plugin", NO_RUN)
    env = {"PYTHONPATH": str(site)}
    path = write_recipe(small_recipe(arms=[{"use": "centralized"}, {"use": "local"},
                                           {"use": "bar"}]))
    expected = "error: $.arms[2]: synthlearn-foo 1.0 (arm 'bar'): missing run(ctx)"
    result = cli("validate", str(path), env=env)
    assert result.returncode == 2
    assert result.stderr.strip() == expected
    out = tmp_path / "run"
    result = cli("run", str(path), "--out", str(out), "--quiet", env=env)
    assert result.returncode == 2
    assert result.stderr.strip() == expected
    assert not out.exists()  # stopped before any work


EMPTY = """
from synthlearn import ComponentSpec, NoParams, hookimpl

class Empty:
    '''Offers nothing its kind needs.'''

    def __init__(self, config):
        self.config = config

def _specs():
    return [ComponentSpec("empty", NoParams, Empty, "offers nothing")]

@hookimpl
def synthlearn_register_datasets():
    return _specs()

@hookimpl
def synthlearn_register_partitions():
    return _specs()

@hookimpl
def synthlearn_register_conditionings():
    return _specs()

@hookimpl
def synthlearn_register_generators():
    return _specs()

@hookimpl
def synthlearn_register_arms():
    return _specs()

@hookimpl
def synthlearn_register_models():
    return _specs()

@hookimpl
def synthlearn_register_attacks():
    return _specs()

@hookimpl
def synthlearn_register_runners():
    return _specs()
"""

MISSING = {  # kind -> (YAML path, what its Protocol needs and the object lacks)
    "dataset": ("$.data", ["load(seed)"]),
    "partition": ("$.sites.partition", ["split(train, n_sites, rng)"]),
    "model": ("$.model", ["attribute 'training' (TrainSettings)",
                          "build(in_chans, num_classes, image_size)", "describe()"]),
    "runner": ("$.runner", ["execute(task, sites, envs, inbound)"]),
    "arm": ("$.arms[0]", ["attribute 'private' (bool)", "run(ctx)"]),
    "generator": ("$.arms[1].generator", [
        "fit(data, conditions, num_classes, seed, *, progress, desc)",
        "sample(conditions, seed)", "state()", "load(payload, source)"]),
    "conditioning": ("$.arms[1].conditioning", [
        "summarize(data, num_classes, attributes)", "encode(labels, attributes, stats)",
        "sample(stats, n, rng)"]),
    "attack": ("$.attacks[0]", ["score(ctx)"]),
}


def test_every_kind_missing_its_protocol_methods_is_named_in_one_pass(tmp_path: Path,
                                                                      write_recipe,
                                                                      cli) -> None:
    """One component of each kind whose object has nothing: every missing member of
    every kind is its own line, all in one run of the checker."""
    site = write_distribution(tmp_path / "site", "synthlearn-empty", "empty_plugin", EMPTY,
                              version="0.3")
    recipe = small_recipe(
        data={"use": "empty"}, sites={"count": 3, "partition": {"use": "empty"}},
        model={"use": "empty"}, runner={"use": "empty"}, attacks=[{"use": "empty"}],
        arms=[{"use": "empty"}, {"use": "synthetic", "generator": {"use": "empty"},
                                 "conditioning": {"use": "empty"}}])
    result = cli("validate", str(write_recipe(recipe)), env={"PYTHONPATH": str(site)})
    assert result.returncode == 2
    expected = {f"error: {path}: synthlearn-empty 0.3 ({kind} 'empty'): missing {what}"
                for kind, (path, missing) in MISSING.items() for what in missing}
    assert set(result.stderr.strip().splitlines()) == expected


BAD_SIGNATURES = """
from synthlearn import ComponentSpec, NoParams, hookimpl

class Odd:
    '''An arm whose run takes no context and whose private flag is a word.'''
    private = "yes"

    def __init__(self, config):
        self.config = config

    def run(self):
        return None

class Picky:
    '''An attack whose describe wants an argument the core never passes.'''

    def __init__(self, config):
        self.config = config

    def score(self, ctx):
        return None

    def describe(self, verbose):
        return {}

@hookimpl
def synthlearn_register_arms():
    return [ComponentSpec("odd", NoParams, Odd, "wrong signatures")]

@hookimpl
def synthlearn_register_attacks():
    return [ComponentSpec("picky", NoParams, Picky, "an optional method, wrong")]
"""


def test_methods_that_cannot_take_the_core_call_are_named(tmp_path: Path, write_recipe,
                                                          cli) -> None:
    """A method present with the wrong signature (an optional one too) and an attribute
    of the wrong type are problems, each naming the call the core makes."""
    site = write_distribution(tmp_path / "site", "synthlearn-odd", "odd_plugin", BAD_SIGNATURES)
    recipe = small_recipe(arms=[{"use": "odd"}], attacks=[{"use": "picky"}])
    result = cli("validate", str(write_recipe(recipe)), env={"PYTHONPATH": str(site)})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: $.arms[0]: synthlearn-odd 1.0 (arm 'odd'): 'private' must be a bool, got str",
        "error: $.arms[0]: synthlearn-odd 1.0 (arm 'odd'): run() cannot take the core's "
        "call run(ctx): too many positional arguments",
        "error: $.attacks[0]: synthlearn-odd 1.0 (attack 'picky'): describe(verbose) cannot "
        "take the core's call describe(): missing a required argument: 'verbose'",
    ]


# ------------------------------------------------------------------------- event hooks

RAISING = """
from synthlearn import hookimpl

@hookimpl
def synthlearn_on_site_done(arm, site, outputs):
    raise RuntimeError("site hook broke")

@hookimpl
def synthlearn_on_round_end(arm, round, metrics):
    raise RuntimeError("round hook broke")

@hookimpl
def synthlearn_on_arm_end(arm, metrics):
    raise KeyError("arm hook broke")

@hookimpl
def synthlearn_on_run_end(run_dir, metrics):
    raise RuntimeError("run hook broke")
"""

RECORDING = """
from synthlearn import hookimpl

SEEN = []

@hookimpl
def synthlearn_on_arm_end(arm, metrics):
    SEEN.append(arm)

@hookimpl
def synthlearn_on_run_end(run_dir, metrics):
    (run_dir.parent / "seen.txt").write_text(",".join(SEEN))
"""


def test_raising_event_hooks_are_reported_and_the_results_kept(tmp_path: Path, write_recipe,
                                                               cli) -> None:
    """Each raising event hook is one warning naming the hook, its plugin and its
    distribution (stderr and metrics.json); the run ends with status 0, writes its
    results, and other plugins' hooks still run."""
    site = write_distribution(tmp_path / "site", "synthlearn-watch", "watch_plugin", RAISING,
                              entry="watch")
    write_distribution(site, "synthlearn-record", "record_plugin", RECORDING, entry="record")
    recipe = small_recipe(arms=[{"use": "local"},
                                {"use": "fedavg", "params": {"rounds": 1}}])
    out = tmp_path / "run"
    result = cli("run", str(write_recipe(recipe)), "--out", str(out), "--quiet",
                 env={"PYTHONPATH": str(site)})
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    for hook, error in [("synthlearn_on_site_done", "RuntimeError: site hook broke"),
                        ("synthlearn_on_round_end", "RuntimeError: round hook broke"),
                        ("synthlearn_on_arm_end", "KeyError: 'arm hook broke'"),
                        ("synthlearn_on_run_end", "RuntimeError: run hook broke")]:
        line = (f"event hook {hook} of plugin 'watch' (distribution synthlearn-watch 1.0) "
                f"failed: {error}; it was skipped and the results are unaffected")
        assert result.stderr.count(f"warning: {line}\n") == 1, (hook, result.stderr)
        assert line in metrics["warnings"]
    assert [a["name"] for a in metrics["arms"]] == ["local", "fedavg"]
    assert all(0.0 <= a["metrics"]["accuracy"] <= 1.0 for a in metrics["arms"])
    assert (out / "report.md").is_file()
    assert (tmp_path / "seen.txt").read_text() == "local,fedavg"  # the other plugin ran


MUTATING = """
import json
from synthlearn import hookimpl

@hookimpl
def synthlearn_on_arm_end(arm, metrics):
    (TRACE / f"{arm}.json").write_text(json.dumps(metrics))  # a tracker may serialise it
    dict.__setitem__(metrics["metrics"], "accuracy", 2.0)  # forcing its copy changes nothing
    dict.__setitem__(metrics, "hacked", True)
    metrics["metrics"]["accuracy"] = 3.0  # an ordinary change is refused

@hookimpl
def synthlearn_on_run_end(run_dir, metrics):
    dict.__setitem__(metrics, "hacked", True)
    list.append(metrics["warnings"], "hacked")
    metrics["arms"][0]["name"] = "renamed"
"""


def test_mutating_event_hooks_cannot_change_metrics_json(tmp_path: Path, write_recipe,
                                                         cli) -> None:
    trace = tmp_path / "trace"
    trace.mkdir()
    source = f"from pathlib import Path\nTRACE = Path({str(trace)!r})\n{MUTATING}"
    site = write_distribution(tmp_path / "site", "synthlearn-mutate", "mutate_plugin", source,
                              entry="mutate")
    out = tmp_path / "run"
    result = cli("run", str(write_recipe(small_recipe(arms=[{"use": "local"}]))), "--out",
                 str(out), "--quiet", env={"PYTHONPATH": str(site)})
    assert result.returncode == 0, result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    text = (out / "metrics.json").read_text()
    assert "hacked" not in text and "renamed" not in text
    arm = metrics["arms"][0]
    assert arm["name"] == "local" and 0.0 <= arm["metrics"]["accuracy"] <= 1.0
    traced = json.loads((trace / "local.json").read_text())
    assert traced["metrics"]["accuracy"] == arm["metrics"]["accuracy"]
    refused = ("event hook synthlearn_on_arm_end of plugin 'mutate' (distribution "
               "synthlearn-mutate 1.0) failed: TypeError: read-only: an event hook gets a "
               "copy it must not change; it was skipped and the results are unaffected")
    assert refused in metrics["warnings"]
    assert any("synthlearn_on_run_end of plugin 'mutate'" in w and "TypeError" in w
               for w in metrics["warnings"])


def test_read_only_copies_are_deep_json_able_and_detached() -> None:
    live = {"a": [1, {"b": 2}], "c": np.arange(3), "d": {"e"}}
    frozen = read_only(live)
    assert isinstance(frozen, FrozenDict) and isinstance(frozen["a"][1], FrozenDict)
    assert frozen["a"] == [1, {"b": 2}]  # equal to what it copies
    assert json.loads(json.dumps({k: frozen[k] for k in ("a",)})) == {"a": [1, {"b": 2}]}
    with pytest.raises(TypeError, match="read-only"):
        frozen["a"][1]["b"] = 3
    with pytest.raises(TypeError, match="read-only"):
        frozen["a"].append(3)
    with pytest.raises(TypeError, match="read-only"):
        frozen.update(x=1)
    with pytest.raises(ValueError):
        frozen["c"][0] = 9
    dict.__setitem__(frozen["a"][1], "b", 99)  # forced: only the copy changes
    assert live == {"a": [1, {"b": 2}], "c": live["c"], "d": {"e"}}
    assert live["c"].tolist() == [0, 1, 2]


# ---------------------------------------------------------------------- plugin loading

BAD_ARGUMENT = """
from synthlearn import hookimpl

@hookimpl
def synthlearn_on_arm_end(arm, metricz):
    pass
"""


def test_hookimpl_with_a_wrong_argument_keeps_pluggys_reason(tmp_path: Path, write_recipe,
                                                             cli) -> None:
    site = write_distribution(tmp_path / "site", "synthlearn-typo", "typo_plugin",
                              BAD_ARGUMENT, entry="typo")
    env = {"PYTHONPATH": str(site)}
    listing = cli("plugins", env=env)
    assert listing.returncode == 1
    assert ("Argument(s) {'metricz'} are declared in the hookimpl but can not be found in "
            "the hookspec") in listing.stdout
    result = cli("validate", str(write_recipe(small_recipe())), env=env)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: plugin 'typo' from distribution synthlearn-typo is broken: "
        "PluginValidationError: Plugin 'typo' for hook 'synthlearn_on_arm_end'; hookimpl "
        "definition: synthlearn_on_arm_end(arm, metricz); Argument(s) {'metricz'} are "
        "declared in the hookimpl but can not be found in the hookspec (fix or uninstall it, "
        "or skip it with SYNTHLEARN_BLOCK_PLUGINS=typo)")


LEGACY = """
from synthlearn import ComponentSpec, NoParams, hookimpl

class Legacy:
    '''An arm registered through the old hook name.'''
    private = True

    def __init__(self, config):
        self.config = config

    def run(self, ctx):
        raise NotImplementedError

@hookimpl
def synthlearn_register_poolings():
    return [ComponentSpec("legacy", NoParams, Legacy, "an arm from before the rename")]
"""

LEGACY_WARNING = ("plugin 'legacy' from distribution synthlearn-legacy 2.1 implements "
                  "synthlearn_register_poolings, a deprecated name: rename it "
                  "synthlearn_register_arms")


@pytest.mark.filterwarnings("ignore:plugin 'legacy':DeprecationWarning")  # for Python callers
def test_deprecated_registration_hook_still_registers_and_warns_once(tmp_path: Path,
                                                                     write_recipe,
                                                                     cli) -> None:
    site = write_distribution(tmp_path / "site", "synthlearn-legacy", "legacy_plugin", LEGACY,
                              entry="legacy", version="2.1")
    env = {"PYTHONPATH": str(site)}
    listing = cli("plugins", "--json", env=env)
    assert listing.returncode == 0
    arms = {a["name"]: a["distribution"] for a in json.loads(listing.stdout)["components"]["arm"]}
    assert arms["legacy"] == "synthlearn-legacy"
    assert listing.stderr == f"warning: {LEGACY_WARNING}\n"
    result = cli("validate", str(write_recipe(small_recipe(arms=[{"use": "legacy"}]))),
                 env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok (")
    assert result.stderr == f"warning: {LEGACY_WARNING}\n"


def test_deprecated_hook_warns_python_callers(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    site = write_distribution(tmp_path / "site", "synthlearn-legacy", "legacy_plugin_py",
                              LEGACY, entry="legacy", version="2.1")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(__import__("sys").modules, "legacy_plugin_py", raising=False)
    with pytest.warns(DeprecationWarning, match="synthlearn-legacy 2.1 implements "
                                                "synthlearn_register_poolings"):
        plugins = load_plugins()
    assert plugins.get("arm", "legacy").distribution == "synthlearn-legacy"
    assert plugins.deprecations == [LEGACY_WARNING]


def test_old_python_names_still_work_with_a_deprecation_warning() -> None:
    import synthlearn.interfaces as interfaces
    from synthlearn.sitework.sites import SiteEnv

    with pytest.warns(DeprecationWarning, match="use synthlearn.interfaces.Arm"):
        assert interfaces.PoolingArm is interfaces.Arm
    env = SiteEnv(seed=0, model_component=None, num_classes=2, in_chans=1,  # type: ignore[arg-type]
                  image_size=(8, 8), slots={"generator": "g"})  # type: ignore[dict-item]
    with pytest.warns(DeprecationWarning, match="use SiteEnv.slots"):
        assert env.parts == {"generator": "g"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert env.slots == {"generator": "g"}
    ctx = ArmContext(arm=SimpleNamespace(model="the model component"),  # type: ignore[arg-type]
                     arm_object=None, seed=0, sites=[], num_classes=2, in_chans=1,
                     image_size=(8, 8), runner=None, cache=None,  # type: ignore[arg-type]
                     hook=None, evaluator=None)  # type: ignore[arg-type]
    with pytest.warns(DeprecationWarning, match="use ArmContext.model_component"):
        assert ctx.model == "the model component"
    assert ctx.model_component == "the model component"
