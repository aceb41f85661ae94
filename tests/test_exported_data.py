"""``data: {use: exported}``: a deployment's server holds the held-out splits and the
sites' manifest of ``synthlearn sites export``, never a site's images; what needs those
images at the server is refused in one line, and a changed or hostile export too."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import attrs
import numpy as np
import pytest
from synthlearn import DataError
from synthlearn.sitework.site_file import export_sites, read_export
from synthlearn.testing import small_recipe, tiny_dataset, tiny_sites


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory):
    dataset = tiny_dataset()
    dataset = attrs.evolve(dataset, validation=dataset.test.subset(np.arange(20)))
    sites = tiny_sites(dataset, 3)
    out = tmp_path_factory.mktemp("export") / "sites"
    export_sites(sites, dataset, "tiny", 7, out)
    return dataset, sites, out


def _server_only(export, tmp_path: Path) -> Path:
    """What the researcher keeps: the manifest and the held-out splits, no site file."""
    _, _, out = export
    folder = tmp_path / "server"
    folder.mkdir()
    for name in ("sites.json", "server.safetensors"):
        shutil.copy(out / name, folder / name)
    return folder


def test_the_server_reads_its_splits_and_the_sites_by_counts_only(export, tmp_path) -> None:
    dataset, sites, _ = export
    read = read_export(_server_only(export, tmp_path))
    assert read.test.fingerprint() == dataset.test.fingerprint()
    assert read.validation.fingerprint() == dataset.validation.fingerprint()
    assert sorted(read.test.attributes) == sorted(dataset.test.attributes) != []
    assert (read.class_names, read.attributes) == (dataset.class_names, dataset.attributes)
    assert (read.channels, read.image_size) == (dataset.channels, dataset.image_size)
    assert len(read.train) == 0 and read.n_train == len(dataset.train)
    assert read.train_class_counts() == dataset.train.class_counts(2)
    for remote, site in zip(read.remote_sites, sites, strict=True):
        assert (remote.site, len(remote)) == (site.id, len(site.data))
        assert remote.fingerprint() == site.data.fingerprint()
        assert remote.class_counts(2) == site.data.class_counts(2)
        with pytest.raises(DataError, match=f"^site {site.id}: this step needs the site's "
                                            "images at the server"):
            _ = remote.images


def _recipe(folder: Path, **changes) -> dict:
    recipe = small_recipe(data={"use": "exported", "params": {"dir": str(folder)}},
                          runner={"use": "flower", "params": {"superlink": "127.0.0.1:9092",
                                                              "insecure": True}})
    recipe.update(changes)
    return recipe


def test_a_recipe_on_an_export_gets_the_export_sites(export, tmp_path, write_recipe, cli
                                                    ) -> None:
    pytest.importorskip("synthlearn_flower", reason="the flower runner is not installed")
    folder = _server_only(export, tmp_path)
    ok = cli("validate", str(write_recipe(_recipe(folder))))
    assert ok.returncode == 0, ok.stderr
    assert "120 training images over 3 sites" in ok.stdout  # the sites the export made
    refused = cli("validate", str(write_recipe(_recipe(
        folder, attacks=[{"use": "loss"}], sites={"count": 4}))))
    assert refused.returncode == 2
    assert refused.stderr.splitlines() == [
        "error: $.sites.count: the export holds 3 sites, the recipe asks for 4",
        "error: $.attacks: a membership audit needs the sites' images at the server (its "
        "members, and controls that re-fit on them); with `data: exported` they stay at the "
        "nodes: audit the same recipe on the dataset itself"]


def test_the_local_runner_is_refused_before_any_work(export, tmp_path, write_recipe, cli
                                                    ) -> None:
    recipe = _recipe(_server_only(export, tmp_path), runner={"use": "local"})
    result = cli("run", str(write_recipe(recipe)), "--quiet")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: $.runner: `data: exported` keeps every site's images at its node, so site "
        "work cannot run in this process: use a runner that reaches the nodes (`runner: "
        "{use: flower}`)")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def _edit_manifest(folder: Path, change) -> None:
    path = folder / "sites.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def _rehash(manifest: dict, folder: Path) -> None:
    blob = (folder / "server.safetensors").read_bytes()
    manifest["server"].update(bytes=len(blob), sha256=hashlib.sha256(blob).hexdigest())


@pytest.mark.parametrize(("change", "file", "message"), [
    (lambda m: m["sites"][0].update(n=10 ** 12), "sites.json",
     "sites[0]: 'class_counts' must be 2 counts that sum to n"),
    (lambda m: m["sites"][1].update(class_counts=[-1, 41]), "sites.json",
     "'class_counts' must be 2 counts"),
    (lambda m: m.update(sites=[m["sites"][0]] * 2), "sites.json", "a site is listed twice"),
    (lambda m: m.update(sites=[]), "sites.json", "'sites' must be a list of 1 to"),
    (lambda m: m["sites"][0].update(fingerprint="x"), "sites.json", "'fingerprint' must be"),
    (lambda m: m.pop("server"), "sites.json", "'server' must name server.safetensors"),
    (lambda m: m.update(class_names=["a", "b"]), "sites.json", "class names differ"),
    (lambda m: m["server"].update(sha256="0" * 64), "server.safetensors",
     "its SHA-256 differs from the manifest's"),
    (lambda m: m["server"].update(bytes=3), "server.safetensors", "the manifest says 3"),
])
def test_a_changed_or_hostile_export_is_one_line_naming_its_file(export, tmp_path, change,
                                                                 file: str, message: str
                                                                 ) -> None:
    folder = _server_only(export, tmp_path)
    _edit_manifest(folder, change)
    with pytest.raises(DataError) as failed:
        read_export(folder)
    text = str(failed.value)
    assert text.startswith(f"{folder / file}: ") and message in text and "\n" not in text


def test_a_server_file_changed_after_export_is_refused(export, tmp_path) -> None:
    folder = _server_only(export, tmp_path)
    blob = bytearray((folder / "server.safetensors").read_bytes())
    blob[-1] ^= 1  # one pixel of the last split's images
    (folder / "server.safetensors").write_bytes(bytes(blob))
    with pytest.raises(DataError, match="SHA-256 differs"):
        read_export(folder)
    _edit_manifest(folder, lambda m: _rehash(m, folder))  # a manifest that covers it up
    with pytest.raises(DataError, match="data does not match its fingerprint"):
        read_export(folder)
    with pytest.raises(DataError, match="cannot read the export's manifest"):
        read_export(tmp_path / "nowhere")
