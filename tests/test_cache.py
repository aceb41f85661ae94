"""The site-output cache is never trusted blindly: entries are verified against their
digest and key, diverged results are neither stored nor reused, edited code makes new
entries, a failed write leaves nothing behind, and an unusable cache path stops a run
before any training."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

import pytest
import torch
from conftest import small_recipe, write_distribution
from synthlearn import cli
from synthlearn.data.types import ImageData
from synthlearn.errors import SynthlearnError
from synthlearn.execution.run import Run
from synthlearn.loading import code_identity
from synthlearn.loading.manager import load_plugins
from synthlearn.recipe import check_recipe
from synthlearn.sitework.cache import SiteCache
from synthlearn.sitework.exchange import Payload

KEY_A = "a" * 64
KEY_B = "b" * 64


def tiny_recipe(cache: Path | None, arms: list | None = None,
                runs: Path | None = None) -> dict:
    """Three sites of 20 phantom images of 16x16, one epoch: seconds per run. Run
    directories go beside the cache unless ``runs`` is given."""
    recipe = small_recipe(
        data={"use": "phantom", "params": {"n_train": 60, "n_test": 40, "size": 16}},
        model={"use": "timm", "params": {"arch": "resnet10t", "epochs": 1,
                                         "batch_size": 32, "device": "cpu"}},
        arms=arms or ["local"])
    runs = runs or (cache.parent / "runs" if cache is not None else Path("runs"))
    recipe["output"] = {"dir": str(runs),
                        "cache": None if cache is None else str(cache)}
    return recipe


def run_recipe(data: dict, out: Path) -> dict:
    plugins = load_plugins()
    Run(check_recipe(data, plugins), plugins, quiet=True).execute(str(out))
    return json.loads((out / "metrics.json").read_text())


def entries(cache: Path) -> list[Path]:
    return sorted(cache.rglob("*.safetensors"))


def site_figures(metrics: dict) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "wall_s"} for row in metrics["arms"][0]["sites"]]


def rewrite_entry(path: Path, payload: Payload) -> None:
    """Replace an entry's payload and re-sign its record, as a forger who knows the
    format would: only the content checks can catch it."""
    data = payload.to_bytes()
    path.write_bytes(data)
    record_path = path.with_suffix(".json")
    record = json.loads(record_path.read_text())
    record.update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
    record_path.write_text(json.dumps(record))


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """One run of the local arm with a cache: its cache directory and its figures."""
    root = tmp_path_factory.mktemp("clean")
    metrics = run_recipe(tiny_recipe(root / "cache"), root / "run")
    assert metrics["arms"][0]["cached_sites"] == 0
    assert len(entries(root / "cache")) == 3
    return root / "cache", metrics


@pytest.fixture
def cache_copy(clean: tuple[Path, dict], tmp_path: Path) -> Path:
    """A private copy of the clean run's cache, to tamper with."""
    shutil.copytree(clean[0], tmp_path / "cache")
    return tmp_path / "cache"


# --- entries verified end to end -----------------------------------------------------


def test_flipped_bytes_are_recomputed(clean, cache_copy: Path, tmp_path: Path,
                                      capsys) -> None:
    victim = entries(cache_copy)[1]
    data = bytearray(victim.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(b ^ 0xFF for b in data[middle : middle + 64])
    victim.write_bytes(bytes(data))
    again = run_recipe(tiny_recipe(cache_copy), tmp_path / "again")
    assert again["arms"][0]["cached_sites"] == 2
    assert site_figures(again) == site_figures(clean[1])
    assert again["arms"][0]["metrics"]["auc"] == clean[1]["arms"][0]["metrics"]["auc"]
    err = capsys.readouterr().err
    assert f"warning: {victim}: cache entry does not match its digest; recomputing" in err
    assert err.count("cache entry") == 1  # the two intact entries were reused silently
    assert f"{victim}: cache entry" in " ".join(again["warnings"])
    # the recomputed entry replaced the bad one and is intact again
    assert SiteCache(cache_copy).get(victim.stem) == victim.read_bytes()


def test_entry_copied_over_another_sites_is_recomputed(clean, cache_copy: Path,
                                                       tmp_path: Path, capsys) -> None:
    source, victim = entries(cache_copy)[:2]
    shutil.copyfile(source, victim)  # the payload and its (valid) record, both copied
    shutil.copyfile(source.with_suffix(".json"), victim.with_suffix(".json"))
    again = run_recipe(tiny_recipe(cache_copy), tmp_path / "again")
    assert again["arms"][0]["cached_sites"] == 2
    assert site_figures(again) == site_figures(clean[1])
    assert (f"warning: {victim}: cache entry was stored under another key"
            in capsys.readouterr().err)


def test_nan_entry_is_recomputed_not_a_divergence(clean, cache_copy: Path, tmp_path: Path,
                                                  capsys) -> None:
    victim = entries(cache_copy)[0]
    payload = Payload.from_bytes(victim.read_bytes(), str(victim))
    name = next(n for n, t in sorted(payload.tensors.items()) if t.is_floating_point())
    payload.tensors[name] = torch.full_like(payload.tensors[name], float("nan"))
    rewrite_entry(victim, payload)
    again = run_recipe(tiny_recipe(cache_copy), tmp_path / "again")
    assert again["arms"][0]["cached_sites"] == 2
    assert site_figures(again) == site_figures(clean[1])
    assert (f"warning: {victim}: cache entry holds non-finite values (NaN or inf) in {name}"
            in capsys.readouterr().err)


def test_old_format_entry_without_record_is_recomputed(clean, cache_copy: Path,
                                                       tmp_path: Path, capsys) -> None:
    victim = entries(cache_copy)[2]
    victim.with_suffix(".json").unlink()
    again = run_recipe(tiny_recipe(cache_copy), tmp_path / "again")
    assert again["arms"][0]["cached_sites"] == 2
    assert site_figures(again) == site_figures(clean[1])
    assert f"warning: {victim}: cache entry has no digest record" in capsys.readouterr().err


# --- entries verified, unit by unit ------------------------------------------------


def small_payload(value: float = 1.0) -> Payload:
    return Payload({"w": torch.full((4,), value), "n": torch.arange(3)}, {"n": 3})


def tamper_record(cache: SiteCache, text: str) -> None:
    cache._record_path(KEY_A).write_text(text)


@pytest.mark.parametrize(("tamper", "reason"), [
    (lambda c: tamper_record(c, "{not json"), "has an unreadable digest record"),
    (lambda c: tamper_record(c, "[1, 2]"), "has an unreadable digest record"),
    (lambda c: c._path(KEY_A).write_bytes(b"garbage"), "does not match its digest"),
    (lambda c: (c._path(KEY_A).write_bytes(b"garbage"), tamper_record(c, json.dumps(
        {"key": KEY_A, "sha256": hashlib.sha256(b"garbage").hexdigest()}))),
     "is not a valid payload"),
    (lambda c: rewrite_entry(c._path(KEY_A), small_payload(float("inf"))),
     "holds non-finite values (NaN or inf) in w"),
])
def test_bad_entry_is_discarded_with_a_line(tmp_path: Path, capsys, tamper, reason) -> None:
    cache = SiteCache(tmp_path)
    cache.put(KEY_A, small_payload().to_bytes())
    assert cache.get(KEY_A) == small_payload().to_bytes()
    tamper(cache)
    assert cache.get(KEY_A) is None
    path = cache._path(KEY_A)
    assert capsys.readouterr().err == f"warning: {path}: cache entry {reason}; recomputing\n"
    assert not path.exists() and not cache._record_path(KEY_A).exists()


def test_put_refuses_a_diverged_payload(tmp_path: Path, capsys) -> None:
    cache = SiteCache(tmp_path)
    cache.put(KEY_A, small_payload(float("nan")).to_bytes())
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
    assert "site output not cached: it holds non-finite values (NaN or inf) in w" in \
        capsys.readouterr().err
    assert cache.get(KEY_A) is None


def test_record_without_payload_is_a_quiet_miss(tmp_path: Path, capsys) -> None:
    """What a kill between the record and the payload leaves: nothing to warn about."""
    cache = SiteCache(tmp_path)
    cache.put(KEY_A, small_payload().to_bytes())
    cache._path(KEY_A).unlink()
    assert cache.get(KEY_A) is None
    assert capsys.readouterr().err == ""


# --- a full disk leaves nothing behind ----------------------------------------------


@pytest.mark.parametrize("failing_write", [1, 2])  # the record's, the payload's
def test_failed_write_leaves_no_temp_file(tmp_path: Path, monkeypatch, failing_write) -> None:
    real_fdopen = os.fdopen
    writes = []

    class FullDisk:
        def __init__(self, handle) -> None:
            self.handle = handle

        def __enter__(self) -> FullDisk:
            return self

        def __exit__(self, *exc: object) -> None:
            self.handle.close()

        def write(self, data: bytes) -> int:
            writes.append(len(data))
            if len(writes) == failing_write:
                self.handle.write(data[: len(data) // 2])
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return self.handle.write(data)

    monkeypatch.setattr(os, "fdopen", lambda fd, *a, **k: FullDisk(real_fdopen(fd, *a, **k)))
    cache = SiteCache(tmp_path / "cache")
    with pytest.raises(SynthlearnError) as caught:
        cache.put(KEY_A, small_payload().to_bytes())
    assert str(caught.value) == (f"{tmp_path / 'cache'}: cannot write the site-output "
                                 "cache: No space left on device (the partial entry was "
                                 "removed)")
    assert [p for p in (tmp_path / "cache").rglob("*") if p.is_file()] == []
    monkeypatch.undo()
    assert cache.get(KEY_A) is None  # and the next run simply recomputes it


# --- an unusable cache path stops the run before training ---------------------------


def write_yaml(path: Path, recipe: dict) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
    return path


@pytest.mark.parametrize(("cache_at", "message"), [
    ("a-file", "output.cache names a file, not a directory; point it at a directory "
               "(or set it to null)"),
    ("a-file/cache", "cannot create the site-output cache directory (output.cache): "
                     "Not a directory"),
])
def test_unusable_cache_path_is_one_line_before_training(tmp_path: Path, capsys, cache_at,
                                                         message) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    recipe = tiny_recipe(tmp_path / cache_at, runs=tmp_path / "runs")
    path = write_yaml(tmp_path / "recipe.yaml", recipe)
    out = tmp_path / "runs" / "x"
    assert cli.main(["run", str(path), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {tmp_path / cache_at}: {message}\n"
    assert not (tmp_path / "runs").exists()
    assert (tmp_path / "a-file").read_text() == "not a directory"


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root writes into read-only directories; the path-under-a-file "
                           "case covers an unwritable cache there")
def test_read_only_cache_directory_is_one_line(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(SynthlearnError, match="is not writable: Permission denied"):
            SiteCache(folder).check_usable()
    finally:
        folder.chmod(0o700)


# --- edited code makes new entries ----------------------------------------------------

PROBE = """
import attrs
import torch
from synthlearn import ComponentSpec, hookimpl
from synthlearn.arms.context import ArmResult
from synthlearn.sitework.exchange import Payload
from synthlearn.sitework.sites import SiteTask

VALUE = {value}


@attrs.define(frozen=True)
class Cfg:
    rounds: int = 1


def work(site, config, inbound, env):
    def compute():
        return Payload({{"value": torch.tensor([VALUE])}}, {{"made": "memo"}})

    kept = env.memo({{"probe": site.id, "data": site.data.fingerprint()}}, compute)
    return Payload({{"value": kept.tensors["value"] * 10}}, {{"made": "task"}})


class Probe:
    private = True

    def __init__(self, config):
        self.config = config

    def run(self, ctx):
        for r in range(self.config.rounds):
            got = ctx.run_sites(SiteTask(f"round-{{r}}", work, self.config,
                                         shares="one number", round=r))
        values = [float(p.tensors["value"][0]) for _, p in sorted(got.items())]
        return ArmResult(model=ctx.build_model("probe"), details={{"values": values}})


@hookimpl
def synthlearn_register_arms():
    return [ComponentSpec("probe", Cfg, Probe, "sends one number per site")]
"""


@pytest.fixture
def probe(tmp_path: Path, monkeypatch):
    """A throwaway plugin distribution ``acme-probe`` (module ``acme_probe``) on sys.path;
    ``probe(value)`` (re)writes its source as a new process would see it."""
    root = tmp_path / "site"
    write_distribution(root, "acme-probe", "acme_probe", PROBE.format(value=1.0))
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)

    def edit(value: float) -> None:
        (root / "acme_probe.py").write_text(PROBE.format(value=value), encoding="utf-8")
        sys.modules.pop("acme_probe", None)  # as a new process: re-import, re-hash
        code_identity.forget()

    yield edit
    sys.modules.pop("acme_probe", None)
    code_identity.forget()


def test_editing_a_plugin_invalidates_its_entries(tmp_path: Path, probe) -> None:
    cache = tmp_path / "cache"
    data = tiny_recipe(cache, arms=["probe"])
    first = run_recipe(data, tmp_path / "first")
    assert first["arms"][0]["details"]["values"] == [10.0, 10.0, 10.0]
    assert run_recipe(data, tmp_path / "same")["arms"][0]["cached_sites"] == 3
    probe(2.0)
    edited = run_recipe(data, tmp_path / "edited")
    assert edited["arms"][0]["cached_sites"] == 0
    assert edited["arms"][0]["details"]["values"] == [20.0, 20.0, 20.0]
    assert len(entries(cache)) == 12  # 3 task + 3 memo entries for each version


def test_versions_carry_the_code_identity(probe) -> None:
    import acme_probe  # noqa: F401  (imported as loading the plugin would)

    plugins = load_plugins()
    versions = code_identity.code_versions([plugins.get("arm", "probe")])
    assert set(versions) == {"synthlearn", "acme-probe"}
    before = versions["acme-probe"]
    assert before.startswith("1.0+src.") and len(before) == len("1.0+src.") + 12
    assert versions["synthlearn"].startswith("0.1.0+src.")
    probe(1.5)
    import acme_probe  # noqa: F401, F811

    assert code_identity.code_versions([plugins.get("arm", "probe")])["acme-probe"] \
        != before


def test_tampered_memo_entry_is_recomputed(tmp_path: Path, probe, capsys) -> None:
    cache = tmp_path / "cache"
    data = tiny_recipe(cache, arms=["probe"])
    run_recipe(data, tmp_path / "first")
    made = {p: Payload.from_bytes(p.read_bytes(), str(p)).meta["made"] for p in entries(cache)}
    memo = sorted(p for p, kind in made.items() if kind == "memo")
    for path, kind in made.items():  # the tasks must run again to consult the memo
        if kind == "task":
            path.unlink()
    rewrite_entry(memo[0], Payload({"value": torch.tensor([float("nan")])}, {"made": "memo"}))
    memo[1].write_bytes(Payload({"value": torch.tensor([5.0])}, {"made": "memo"}).to_bytes())
    capsys.readouterr()
    again = run_recipe(data, tmp_path / "again")
    assert again["arms"][0]["details"]["values"] == [10.0, 10.0, 10.0]
    err = capsys.readouterr().err
    assert f"warning: {memo[0]}: cache entry holds non-finite values" in err
    assert f"warning: {memo[1]}: cache entry does not match its digest; recomputing" in err


# --- the data fingerprint is computed once per image set ------------------------------


def test_fingerprint_is_computed_once_per_image_set(tmp_path: Path, probe,
                                                    monkeypatch) -> None:
    hashed: list[int] = []
    real = ImageData._hash

    def counting(self: ImageData) -> str:
        hashed.append(id(self))
        return real(self)

    monkeypatch.setattr(ImageData, "_hash", counting)
    data = tiny_recipe(None, arms=[{"use": "probe", "params": {"rounds": 4}}],
                       runs=tmp_path / "runs")
    metrics = run_recipe(data, tmp_path / "run")
    assert metrics["arms"][0]["details"]["values"] == [10.0, 10.0, 10.0]
    # 3 sites x 4 rounds (and whatever else keys on data): each image set hashed once
    assert len(hashed) >= 3 and len(hashed) == len(set(hashed))
    one = ImageData(images=torch.zeros(2, 1, 4, 4, dtype=torch.uint8).numpy(),
                    labels=torch.zeros(2, dtype=torch.int64).numpy())
    assert one.fingerprint() == one.fingerprint() == one._hash()
