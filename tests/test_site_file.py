"""``synthlearn sites export`` and ``read_site_file``: each site's data in a file of its
own, read back exactly, and every malformed or changed file refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from synthlearn import DataError, SynthlearnError
from synthlearn.api import Payload
from synthlearn.sitework.site_file import export_sites, read_site_file, site_payload
from synthlearn.testing import small_recipe, tiny_dataset, tiny_sites


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory):
    dataset = tiny_dataset()
    sites = tiny_sites(dataset, 3)
    out = tmp_path_factory.mktemp("sites") / "export"
    manifest = export_sites(sites, dataset, "tiny", 7, out)
    return dataset, sites, out, manifest


def test_every_site_reads_back_exactly(exported) -> None:
    dataset, sites, out, manifest = exported
    assert sorted(p.name for p in out.iterdir()) == [
        "server.safetensors", "site-0.safetensors", "site-1.safetensors",
        "site-2.safetensors", "sites.json"]
    assert [e["n"] for e in manifest["sites"]] == [len(s.data) for s in sites]
    for site in sites:
        read = read_site_file(out / f"site-{site.id}.safetensors")
        assert read.site.id == site.id and (read.recipe, read.seed) == ("tiny", 7)
        assert np.array_equal(read.site.data.images, site.data.images)
        assert np.array_equal(read.site.data.labels, site.data.labels)
        assert sorted(read.site.data.attributes) == sorted(site.data.attributes) != []
        assert read.site.data.fingerprint() == site.data.fingerprint()
        assert read.class_names == dataset.class_names
        assert [a.name for a in read.attributes] == [a.name for a in dataset.attributes]
    on_disk = json.loads((out / "sites.json").read_text())
    assert on_disk == manifest and on_disk["class_names"] == list(dataset.class_names)


def test_a_folder_with_anything_in_it_is_never_written_over(exported, tmp_path: Path) -> None:
    dataset, sites, out, _ = exported
    with pytest.raises(SynthlearnError, match="never written over"):
        export_sites(sites, dataset, "tiny", 7, out)
    assert len(list(out.iterdir())) == 5
    (tmp_path / "empty").mkdir()
    export_sites(sites[:1], dataset, "tiny", 7, tmp_path / "empty")  # an empty one is fine
    assert sorted(p.name for p in (tmp_path / "empty").iterdir()) == [
        "server.safetensors", "site-0.safetensors", "sites.json"]
    assert [p.name for p in tmp_path.iterdir()] == ["empty"]  # no staging folder left


def _rewrite(exported, tmp_path: Path, change) -> Path:
    dataset, sites, _, _ = exported
    payload = site_payload(sites[0], dataset.class_names, dataset.attributes, "tiny", 7)
    tensors, meta = dict(payload.tensors), dict(payload.meta)
    change(tensors, meta)
    path = tmp_path / "site-0.safetensors"
    path.write_bytes(Payload(tensors, meta).to_bytes())
    return path


def _flip_a_pixel(t, m):
    t["images"] = t["images"].clone()
    t["images"][0, 0, 0, 0] ^= 1


@pytest.mark.parametrize(("change", "message"), [
    (_flip_a_pixel, "the data does not match its fingerprint"),
    (lambda t, m: t.update(labels=t["labels"].to(torch.int32)),
     "tensor 'labels' is torch.int32"),
    (lambda t, m: t.update(labels=t["labels"] + 5), "labels outside the 2 classes"),
    (lambda t, m: m.update(n=10 ** 9), "tensor 'images' is torch.uint8"),
    (lambda t, m: m.update(format="npz"), "format 'npz'"),
    (lambda t, m: m.update(version=True), "version True"),
    (lambda t, m: m.update(image_shape=[1, 10 ** 9, 16]), "'image_shape' must be"),
    (lambda t, m: t.pop(next(k for k in t if k.startswith("attribute."))), "is missing"),
    (lambda t, m: t.update(extra=torch.zeros(1)), "tensor 'extra' is unexpected"),
    (lambda t, m: m.update(attributes=[{"name": "x"}]), "malformed attribute entry"),
])
def test_a_changed_or_malformed_file_is_one_line_naming_it(exported, tmp_path: Path, change,
                                                           message: str) -> None:
    path = _rewrite(exported, tmp_path, change)
    with pytest.raises(DataError) as failed:
        read_site_file(path)
    assert str(failed.value).startswith(f"{path}: ") and message in str(failed.value)
    assert "\n" not in str(failed.value)


def test_not_a_site_file_at_all(tmp_path: Path) -> None:
    (tmp_path / "x.safetensors").write_bytes(b"\x80\x04pickle")
    with pytest.raises(DataError, match="not a valid synthlearn payload"):
        read_site_file(tmp_path / "x.safetensors")
    with pytest.raises(DataError, match="cannot read the site file"):
        read_site_file(tmp_path / "missing.safetensors")


def test_the_export_command(write_recipe, cli, tmp_path: Path) -> None:
    recipe = write_recipe(small_recipe())
    result = cli("sites", "export", str(recipe), "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert "site 2: 60 images" in result.stdout
    assert read_site_file(tmp_path / "out" / "site-1.safetensors").site.id == 1
    again = cli("sites", "export", str(recipe), "--out", str(tmp_path / "out"))
    assert again.returncode == 2
    assert again.stderr.strip() == (f"error: {tmp_path / 'out'}: exists and is not an empty "
                                    "folder: site files are never written over")
