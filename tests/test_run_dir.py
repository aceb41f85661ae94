"""The run directory is never lost or half-written, and the CLI never shows a traceback
for a user's mistake: ``--out`` at a symlink, two runs in one second, SIGTERM, arm names
that share file names, unwritable places, ``--debug``, over-long names, negative seeds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from datetime import datetime
from pathlib import Path

import pytest
import yaml
from conftest import small_recipe
from synthlearn import hookimpl
from synthlearn.cli import main
from synthlearn.errors import RecipeError
from synthlearn.execution.run import Run
from synthlearn.execution.run_dir import INCOMPLETE
from synthlearn.loading.manager import load_plugins
from synthlearn.recipe import check_recipe
from synthlearn.text import slug


def tiny(**changes: object) -> dict:
    """A one-arm recipe that runs in a second or two."""
    return small_recipe(**{
        "data": {"use": "phantom", "params": {"n_train": 60, "n_test": 30, "size": 16}},
        "model": {"use": "timm", "params": {"arch": "resnet10t", "epochs": 1,
                                             "batch_size": 32, "device": "cpu"}},
        "arms": ["centralized"], **changes})


def write(tmp_path: Path, recipe: dict, name: str = "recipe.yaml") -> Path:
    """The recipe as YAML, its output (and no cache) inside ``tmp_path``."""
    recipe = {"output": {"dir": str(tmp_path / "runs"), "cache": None}, **recipe}
    path = tmp_path / name
    path.write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
    return path


def plugin_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str,
                  body: str) -> None:
    """Load ``body`` as the plugin module ``name`` (through ``SYNTHLEARN_PLUGINS``)."""
    mods = tmp_path / "mods"
    mods.mkdir(exist_ok=True)
    (mods / f"{name}.py").write_text(textwrap.dedent(body), encoding="utf-8")
    monkeypatch.syspath_prepend(str(mods))
    monkeypatch.setenv("SYNTHLEARN_PLUGINS", name)


def complete(run_dir: Path) -> bool:
    """A finished run: metrics.json and report.md written, no INCOMPLETE marker."""
    return ((run_dir / "metrics.json").is_file() and (run_dir / "report.md").is_file()
            and not (run_dir / INCOMPLETE).exists())


# --- 1. --out at a symlink --------------------------------------------------------------


def test_out_at_a_symlink_to_an_empty_directory_keeps_the_run(tmp_path: Path, capsys) -> None:
    target = tmp_path / "target"
    target.mkdir()
    link = tmp_path / "link"
    link.symlink_to(target)
    assert main(["run", str(write(tmp_path, tiny())), "--out", str(link), "--quiet"]) == 0
    assert capsys.readouterr().err == ""
    assert link.is_symlink() and complete(target)
    # a symlink to a directory that holds something is refused, nothing touched
    (target / "keep.txt").write_text("mine")
    other = tmp_path / "other"
    other.symlink_to(target)
    assert main(["run", str(write(tmp_path, tiny())), "--out", str(other), "--quiet"]) == 2
    assert capsys.readouterr().err == (f"error: {other}: already exists and is not empty; "
                                       f"choose another --out\n")


def test_a_failed_run_gives_back_the_empty_out_directory(tmp_path: Path, capsys,
                                                        monkeypatch) -> None:
    plugin_module(tmp_path, monkeypatch, "acme_fails_at_once", FAILING.format(
        error="SynthlearnError('no', where='$.arms[0]')"))
    out = tmp_path / "mine"
    out.mkdir()
    assert main(["run", str(write(tmp_path, tiny(arms=["failing"]))), "--out", str(out),
                 "--quiet"]) == 2
    assert capsys.readouterr().err == "error: $.arms[0]: no\n"
    assert out.is_dir() and list(out.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "mods", "recipe.yaml"]


# --- 2. two runs started in the same second ---------------------------------------------


class _FrozenClock(datetime):
    @classmethod
    def now(cls, tz=None):  # noqa: ANN001, ANN206 - datetime's own signature
        return cls(2030, 1, 2, 3, 4, 5)


class _SecondRunMidway:
    """At the end of the first run's arm, runs a whole second run of the same recipe
    (the clock stopped: both get the same timestamp), and records what the first run's
    directory held at that moment."""

    def __init__(self, recipe_data: dict, runs: Path) -> None:
        self.recipe_data = recipe_data
        self.runs = runs
        self.first_dir_during_run: list[list[str]] = []
        self.second: Path | None = None

    @hookimpl
    def synthlearn_on_arm_end(self, arm: str, metrics: dict) -> None:
        if self.second is not None:
            return
        self.first_dir_during_run = [sorted(p.name for p in d.iterdir())
                                     for d in self.runs.iterdir()]
        plugins = load_plugins()
        self.second = Run(check_recipe(self.recipe_data, plugins), plugins,
                          quiet=True).execute()


def test_two_runs_in_the_same_second_get_two_directories(tmp_path: Path,
                                                         monkeypatch) -> None:
    monkeypatch.setattr("synthlearn.execution.run_dir.datetime", _FrozenClock)
    runs = tmp_path / "runs"
    data = {**tiny(), "output": {"dir": str(runs), "cache": None}}
    plugins = load_plugins()
    midway = _SecondRunMidway(data, runs)
    plugins.manager.register(midway)
    first = Run(check_recipe(data, plugins), plugins, quiet=True).execute()
    # while running, the first run's directory held only its INCOMPLETE marker
    assert midway.first_dir_during_run == [[INCOMPLETE]]
    assert midway.second is not None and midway.second != first
    assert sorted(p.name for p in runs.iterdir()) == ["small-20300102-030405",
                                                      "small-20300102-030405-2"]
    assert complete(first) and complete(midway.second)


# --- 3. SIGTERM --------------------------------------------------------------------------


def test_sigterm_removes_the_unfinished_run_and_says_so(tmp_path: Path) -> None:
    long = tiny(model={"use": "timm", "params": {"arch": "resnet10t", "epochs": 500,
                                                 "batch_size": 32, "device": "cpu"}})
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNTHLEARN_")}
    proc = subprocess.Popen([sys.executable, "-m", "synthlearn.cli", "run",
                             str(write(tmp_path, long))], stderr=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env)
    try:
        lines = []
        for line in proc.stderr:  # wait until training has started
            lines.append(line)
            if line.startswith("[arm 1/1]"):
                break
        assert (tmp_path / "runs").is_dir() and len(list((tmp_path / "runs").iterdir())) == 1
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 143, "".join(lines) + rest
    assert rest.strip().splitlines()[-1] == "terminated; finished site work stays cached"
    assert "Traceback" not in rest
    assert list((tmp_path / "runs").iterdir()) == []  # nothing left, hidden or not


# --- 4. arm names that share file names --------------------------------------------------


def test_arm_names_whose_file_names_collide_are_refused(tmp_path: Path, capsys) -> None:
    arms = [{"use": "centralized", "name": "x/y"}, {"use": "local", "name": "x_y"}]
    assert main(["validate", str(write(tmp_path, tiny(arms=arms)))]) == 2
    assert capsys.readouterr().err == (
        "error: $.arms[1].name: arm names 'x_y' and 'x/y' ($.arms[0]) would share file "
        "names ('x_y'); rename one\n")
    # names differing only in case share files on macOS and Windows
    with pytest.raises(RecipeError, match=r"\$\.arms\[1\]\.name: arm names 'Big' and 'big'"):
        check_recipe(tiny(arms=[{"use": "centralized", "name": "big"},
                                {"use": "local", "name": "Big"}]), load_plugins())
    # distinct names stay distinct file names; no slug is hidden, '.' or '..'
    assert slug("x/y") == "x_y" and slug("fedavg (mu=0.1)") == "fedavg__mu_0.1_"
    assert [slug(n) for n in (".", "..", ".hidden", "")] == ["_", "_.", "_hidden", "arm"]


# --- 5. unwritable places are refused before any training ------------------------------


def test_out_under_a_regular_file_is_one_line_before_training(tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    out = blocker / "run"
    assert main(["run", str(write(tmp_path, tiny())), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {out}: cannot create the run directory: Not a directory\n"
    # output.dir under a regular file: the same, for the default run directory
    recipe = write(tmp_path, {**tiny(), "output": {"dir": str(blocker / "runs"),
                                                   "cache": None}})
    assert main(["run", str(recipe)]) == 2
    assert capsys.readouterr().err == (f"error: {blocker / 'runs'}: cannot create the output "
                                       f"directory: Not a directory\n")
    # --out naming a regular file
    assert main(["run", str(recipe), "--out", str(blocker)]) == 2
    assert capsys.readouterr().err == (f"error: {blocker}: exists and is not a directory; "
                                       f"choose another --out\n")
    assert blocker.read_text() == "not a directory"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_places_are_one_line_before_training(tmp_path: Path, capsys) -> None:
    recipe = write(tmp_path, tiny())
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        assert main(["run", str(recipe), "--out", str(locked / "run")]) == 2
        err = capsys.readouterr().err
        assert err == (f"error: {locked / 'run'}: cannot create the run directory: "
                       f"Permission denied\n")
        assert main(["run", str(recipe), "--out", str(locked)]) == 2  # read-only --out
        assert capsys.readouterr().err == (f"error: {locked / INCOMPLETE}: cannot write in "
                                           f"the run directory: Permission denied\n")
    finally:
        locked.chmod(0o755)
    assert list(locked.iterdir()) == []


# --- 6. --debug, file-system errors, internal errors -------------------------------------

FAILING = """
import attrs
from synthlearn import ComponentSpec, SynthlearnError, hookimpl

@attrs.define(frozen=True)
class Cfg:
    pass

class Failing:
    private = True
    def __init__(self, config):
        pass
    def run(self, ctx):
        raise {error}

@hookimpl
def synthlearn_register_arms():
    return [ComponentSpec("failing", Cfg, Failing, "always fails")]
"""


def test_user_error_is_one_line_and_debug_adds_the_traceback(tmp_path: Path, capsys,
                                                             monkeypatch) -> None:
    plugin_module(tmp_path, monkeypatch, "acme_user_error", FAILING.format(
        error="SynthlearnError('site 1 has too few images', where='$.arms[0]')"))
    recipe = str(write(tmp_path, tiny(arms=["failing"])))
    assert main(["run", recipe, "--quiet"]) == 2
    assert capsys.readouterr().err == "error: $.arms[0]: site 1 has too few images\n"
    for argv in (["--debug", "run", recipe, "--quiet"], ["run", "--debug", recipe, "--quiet"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("Traceback (most recent call last):")
        assert "acme_user_error.py" in err
        assert err.endswith("\nerror: $.arms[0]: site 1 has too few images\n")
    assert list((tmp_path / "runs").iterdir()) == []


def test_internal_error_names_where_and_exits_1(tmp_path: Path, capsys, monkeypatch) -> None:
    plugin_module(tmp_path, monkeypatch, "acme_bug", FAILING.format(error="ZeroDivisionError("
                                                                     "'division by zero')"))
    recipe = str(write(tmp_path, tiny(arms=["failing"])))
    assert main(["run", recipe, "--quiet"]) == 1
    assert capsys.readouterr().err == (
        "error: internal error in acme_bug.Failing.run: ZeroDivisionError: division by zero "
        "(run with --debug for the traceback)\n")
    assert main(["run", recipe, "--quiet", "--debug"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and err.endswith(
        "error: internal error in acme_bug.Failing.run: ZeroDivisionError: division by zero\n")
    assert list((tmp_path / "runs").iterdir()) == []


def test_file_system_error_is_one_line_naming_the_file(tmp_path: Path, capsys,
                                                       monkeypatch) -> None:
    plugin_module(tmp_path, monkeypatch, "acme_disk_full", FAILING.format(
        error="OSError(28, 'No space left on device', '/data/site-0.bin')"))
    assert main(["run", str(write(tmp_path, tiny(arms=["failing"]))), "--quiet"]) == 2
    assert capsys.readouterr().err == "error: /data/site-0.bin: No space left on device\n"


# --- 7. names too long for a file name, negative seeds -----------------------------------


def test_over_long_names_and_negative_seed_are_refused_at_validate(tmp_path: Path,
                                                                   capsys) -> None:
    long_arm = [{"use": "centralized", "name": "a" * 101}]
    recipe = write(tmp_path, tiny(name="n" * 101, seed=-1, arms=long_arm))
    assert main(["validate", str(recipe)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "error: $.name: too long for a directory name: 101 bytes, at most 100",
        "error: $.seed: must be >= 0, got -1",
        "error: $.arms[0].name: arm name too long for a file name: 101 bytes, at most 100",
    ]
    # at the limit (in UTF-8 bytes) it is fine
    recipe = write(tmp_path, tiny(name="é" * 50, arms=[{"use": "centralized",
                                                         "name": "b" * 100}]))
    assert main(["validate", str(recipe)]) == 0
    assert main(["run", str(recipe), "--set", "name=" + "é" * 51]) == 2
    assert "$.name: too long for a directory name: 102 bytes" in capsys.readouterr().err


def test_validate_refuses_output_locations_a_run_could_not_write(tmp_path: Path,
                                                                capsys) -> None:
    """`validate` says ok only when the run could write its results and its cache: both
    locations are checked in one pass, and nothing is created."""
    blocker = tmp_path / "a-file"
    blocker.write_text("in the way")
    recipe = tiny(output={"dir": str(blocker / "runs"), "cache": str(blocker)})
    assert main(["validate", str(write(tmp_path, recipe))]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [f"error: $.output.dir: cannot write {blocker / 'runs'}: {blocker} is a "
                   "file, not a directory",
                   f"error: $.output.cache: cannot write {blocker}: {blocker} is a file, "
                   "not a directory"]
    fine = tiny(output={"dir": str(tmp_path / "new" / "runs"), "cache": None})
    assert main(["validate", str(write(tmp_path, fine, "fine.yaml"))]) == 0
    assert capsys.readouterr().out.startswith("ok (")
    assert not (tmp_path / "new").exists()  # validate creates nothing
