"""Hostile and corrupt files: generator files (``synthlearn sample``), site payloads and
MedMNIST ``.npz`` files.

A corpus of malformed files goes through the real CLI in one subprocess (torch imported
once) under an address-space limit a little above what valid files need, measured in
that process: each gives exactly one ``error:`` line naming the file and exit status 2,
never a traceback, and none makes the process allocate more than the limit. The unit
tests below pin each check on its own.
"""

from __future__ import annotations

import copy
import json
import struct
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from conftest import REPO, small_recipe
from synthlearn.data.medmnist import MedMNISTConfig, MedMNISTDataset
from synthlearn.errors import DataError, SynthlearnError
from synthlearn.generation.conditioning import (
    CategoricalConditioning,
    CategoricalConfig,
    PhenotypicConditioning,
    PhenotypicConfig,
    check_stats,
)
from synthlearn.loading.manager import load_plugins
from synthlearn.recipe import check_recipe
from synthlearn.sitework.exchange import META_KEY, Payload, load_state

pytest.importorskip("synthlearn_gan", reason="the synthlearn-gan plugin is not installed")

from synthlearn.arms.synthetic import synthesize  # noqa: E402
from synthlearn.data.phantom import PhantomConfig, PhantomDataset  # noqa: E402
from synthlearn.generation.sharing import draw_pool  # noqa: E402
from synthlearn.sitework.sites import Site, SiteEnv  # noqa: E402
from synthlearn_gan import GanConfig, GanGenerator  # noqa: E402

#: A generator that fits in well under a second.
TINY_GAN = {"use": "gan", "params": {"steps": 2, "batch_size": 8, "width": 4, "latent_dim": 4,
                                      "min_images": 8, "device": "cpu"}}

#: Address space allowed above the peak the valid files reached in the same process.
HEADROOM = 1 << 30

Blob = bytes
Case = tuple[Blob, str]


def _arm(conditioning: str) -> dict[str, Any]:
    return {"name": "g", "use": "synthetic", "params": {"share": "generator"},
            "generator": TINY_GAN, "conditioning": {"use": conditioning}}


def fitted_file(conditioning: str) -> Blob:
    """A real generator file: a site's ``share: generator`` output, tiny GAN fitted on
    40 phantom images (the bytes ``artifacts/<arm>/site-0-generator.safetensors`` hold)."""
    recipe = check_recipe(small_recipe(arms=[_arm(conditioning)]), load_plugins())
    arm = recipe.arms[0]
    data = PhantomDataset(PhantomConfig(n_train=40, n_test=10, size=16)).load(0)
    env = SiteEnv(seed=0, model_component=arm.model, num_classes=data.num_classes,
                  in_chans=data.channels, image_size=data.image_size, progress=False,
                  attributes=data.attributes, slots=arm.component.slots)
    return synthesize(Site(0, data.train), arm.component.config, None, env).to_bytes()


@pytest.fixture(scope="module")
def valid() -> dict[str, Blob]:
    return {name: fitted_file(name) for name in ("categorical", "phenotypic")}


# --- building hostile files ----------------------------------------------------------


def raw(header: Any, body: bytes = b"", length: int | None = None) -> Blob:
    """A safetensors-shaped blob: 8-byte length, header (JSON unless bytes), body."""
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(text) if length is None else length) + text + body


def split(blob: Blob) -> tuple[dict[str, Any], bytes]:
    (n,) = struct.unpack("<Q", blob[:8])
    return json.loads(blob[8:8 + n]), blob[8 + n:]


def with_meta(blob: Blob, change: Callable[[dict[str, Any]], None]) -> Blob:
    payload = Payload.from_bytes(blob, "valid")
    meta = copy.deepcopy(payload.meta)
    change(meta)
    return Payload(payload.tensors, meta).to_bytes()


def with_tensors(blob: Blob, change: Callable[[dict[str, torch.Tensor]], None]) -> Blob:
    payload = Payload.from_bytes(blob, "valid")
    tensors = dict(payload.tensors)
    change(tensors)
    return Payload(tensors, payload.meta).to_bytes()


def with_header(blob: Blob, change: Callable[[dict[str, Any]], None]) -> Blob:
    header, body = split(blob)
    change(header)
    return raw(header, body)


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A change that sets ``meta[a][b]...`` (``path`` = ``a.b...``; ``-`` deletes)."""

    def change(meta: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = meta
        for key in parents:
            node = node[key]
        if value == "-":
            del node[last]
        else:
            node[last] = value

    return change


def _retype(name: str, dtype: torch.dtype) -> Callable[[dict[str, torch.Tensor]], None]:
    def change(tensors: dict[str, torch.Tensor]) -> None:
        tensors[name] = tensors[name].to(dtype)

    return change


def generator_corpus(cat: Blob, phe: Blob) -> dict[str, Case]:
    """Malformed or hostile generator files, each with a fragment its error must hold."""
    header, body = split(cat)
    nan = float("nan")
    meta_text = header["__metadata__"][META_KEY]
    cases: dict[str, Case] = {
        "empty": (b"", "shorter than the 8-byte header length"),
        "truncated": (cat[: len(cat) // 2], "not a valid synthlearn payload"),
        "header-length-2e60": (struct.pack("<Q", 2**60) + cat[8:],
                               "the header declares 1152921504606846976 bytes"),
        "header-not-json": (raw(b"\xff\xfe{not json", body), "the header is not valid JSON"),
        "header-not-object": (raw([1, 2, 3], body), "the header is not a JSON object"),
        "header-repeated-name": (raw(b'{"a": {}, "a": {}}'), "'a' appears twice"),
        "complex-tensor": (with_header(cat, lambda h: h.update(
            {"z": {"dtype": "C64", "shape": [0], "data_offsets": [0, 0]}})),
            "tensor 'z' has dtype 'C64'"),
        "offsets-outside-data": (with_header(cat, lambda h: h["out.bias"].update(
            data_offsets=[0, 10**12])), "tensor 'out.bias' has data_offsets"),
        "shape-beyond-bytes": (with_header(cat, lambda h: h["out.bias"].update(
            shape=[10**9, 10**9])), "needs 4000000000000000000 bytes"),
        "metadata-not-object": (with_header(cat, lambda h: h["__metadata__"].update(
            {META_KEY: "[1, 2]"})), "payload metadata is not a JSON object"),
        "metadata-not-json": (with_header(cat, lambda h: h["__metadata__"].update(
            {META_KEY: meta_text[:-5]})), "the metadata is not valid JSON"),
        "metadata-not-strings": (with_header(cat, lambda h: h.update(
            __metadata__={META_KEY: 5})), "__metadata__ is not an object of strings"),
        "num-classes-1e9": (with_meta(cat, _set("generator.num_classes", 10**9)),
                            "'num_classes' is 1000000000, but embed.weight has shape (2, 4)"),
        "width-1e8": (with_meta(cat, _set("generator.config.width", 10**8)),
                      "config 'width' is 100000000, but out.weight has shape (1, 4, 3, 3)"),
        "latent-dim-1e9": (with_meta(cat, _set("generator.config.latent_dim", 10**9)),
                           "config 'latent_dim' is 1000000000"),
        "vector-size-1e9": (with_meta(cat, _set("generator.vector_size", 10**9)),
                            "'vector_size' is 1000000000"),
        "image-side-4e6": (with_meta(cat, _set("generator.image_shape", [1, 4 << 20, 4 << 20])),
                           "larger than the gan generator makes"),
        "channels-1e6": (with_meta(cat, _set("generator.image_shape", [10**6, 16, 16])),
                         "has 1000000 channels"),
        "n-real-1e12": (with_meta(cat, _set("n_real", 10**12)),
                        "n_real must be an integer in 1..100000000, got 1000000000000"),
        "n-real-text": (with_meta(cat, _set("n_real", "many")), "n_real must be an integer"),
        "n-real-not-counts": (with_meta(cat, _set("n_real", 41)),
                              "n_real is 41, but the class counts add up to 40"),
        "counts-negative": (with_meta(cat, _set("stats.class_counts", [-5, 45])),
                            "stats.class_counts must be a list of 2 integers"),
        "counts-empty": (with_meta(cat, _set("stats.class_counts", [])),
                         "stats.class_counts must be a list of 2 integers"),
        "counts-text": (with_meta(cat, _set("stats.class_counts", ["20", "20"])),
                        "stats.class_counts must be a list of 2 integers"),
        "counts-nan": (with_meta(cat, _set("stats.class_counts", [nan, 20])),
                       "got [nan, 20]"),
        "counts-huge": (with_meta(cat, _set("stats.class_counts", [10**15, 1])),
                        "integers in 0..100000000"),
        "stats-classes-1e9": (with_meta(cat, _set("stats.num_classes", 10**9)),
                              "stats.num_classes must be an integer in 1..100000"),
        "stats-not-object": (with_meta(cat, _set("stats", [20, 20])),
                             "stats must be a JSON object"),
        "stats-missing": (with_meta(cat, _set("stats", "-")),
                          "no conditioning statistics in the file"),
        "stats-other-scheme": (with_meta(cat, _set("stats.scheme", "phenotypic")),
                               "stats.scheme is 'phenotypic', expected 'categorical'"),
        "phenotypic-without-fields": (with_meta(phe, _set("stats.continuous", "-")),
                                      "stats.continuous is missing"),
        "phenotypic-cov-nan": (with_meta(phe, _set("stats.per_class.0.cov", [[nan, 0], [0, 1]])),
                               "stats.per_class['0'].cov must be a list of 2 finite numbers"),
        "phenotypic-cov-not-psd": (with_meta(phe, _set("stats.per_class.1.cov",
                                                       [[1.0, 5.0], [5.0, 1.0]])),
                                   "not a symmetric positive semi-definite matrix"),
        "phenotypic-many-levels": (with_meta(phe, _set("stats.categorical.scanner",
                                                       list(range(5000)))),
                                   "stats.categorical['scanner'] must be a non-empty list"),
        "phenotypic-path-name": (with_meta(phe, _set("stats.continuous",
                                                     ["../../x", "contrast"])),
                                 "stats.continuous must be a list of distinct attribute names"),
        "phenotypic-rate-missing": (with_meta(phe, _set("stats.per_class.1.rate", "-")),
                                    "stats.per_class['1'].rate is missing"),
        "bool-weights": (with_tensors(cat, _retype("fc.weight", torch.bool)),
                         "'fc.weight' is torch.bool"),
        "float16-weights": (with_tensors(cat, _retype("out.weight", torch.float16)),
                            "'out.weight' is torch.float16"),
        "missing-tensor": (with_tensors(cat, lambda t: t.pop("blocks.1.conv.weight")),
                           "no tensor 'blocks.1.conv.weight'"),
        "wrong-shape": (with_tensors(cat, lambda t: t.update(
            {"blocks.0.conv.weight": torch.zeros(8, 16, 1, 1)})),
            "'blocks.0.conv.weight' is torch.float32 (8, 16, 1, 1)"),
        "extra-tensor": (with_tensors(cat, lambda t: t.update(evil=torch.zeros(3))),
                         "unexpected tensor 'evil'"),
        "nan-weights": (with_tensors(cat, lambda t: t.update(
            {"out.bias": torch.full((1,), nan)})), "holds NaN or infinite values"),
        "not-a-generator": (Payload({}, {"share": "samples"}).to_bytes(),
                            "not a generator a site sent"),
        "unknown-generator": (with_meta(cat, _set("components.generator.use", "vae")),
                              "made by generator 'vae', which is not installed"),
        "no-components": (with_meta(cat, _set("components", "-")),
                          "no components (generator, conditioning) named"),
    }
    return cases


def write_npz(path: Path, n: tuple[int, int, int] = (60, 12, 12), **arrays: Any) -> Path:
    """A small valid MedMNIST file (28x28 grey, 2 classes) with ``arrays`` replacing or,
    as None, removing some of its arrays."""
    rng = np.random.default_rng(0)
    out: dict[str, np.ndarray] = {}
    for split_name, count in zip(("train", "val", "test"), n, strict=True):
        out[f"{split_name}_images"] = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
        out[f"{split_name}_labels"] = (np.arange(count) % 2).astype(np.uint8)[:, None]
    for key, value in arrays.items():
        if value is None:
            del out[key]
        else:
            out[key] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **out)
    return path


def npy_bytes(shape: tuple[int, ...], dtype: str, data: bytes) -> bytes:
    """An ``.npy`` member whose header claims ``shape`` whatever ``data`` holds."""
    header = repr({"descr": dtype, "fortran_order": False, "shape": shape}).encode()
    header += b" " * (63 - (10 + len(header)) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + data


def npz_corpus(root: Path) -> dict[str, tuple[Path, str]]:
    """Malformed MedMNIST files (``{root}/<case>/<subset>.npz``) and their fragments."""
    def at(case: str, subset: str = "pneumoniamnist") -> Path:
        return root / case / f"{subset}.npz"

    labels = (np.arange(60) % 2).astype(np.int64)
    huge = labels.copy()
    huge[7] = 10**9
    cases = {
        "huge-label": (write_npz(at("huge-label", "hostilemnist"), train_labels=huge),
                       "train_labels holds label 1000000000; a file may use at most 1000"),
        "huge-label-uint64": (write_npz(at("huge-label-uint64", "hostilemnist"),
                                        train_labels=labels.astype(np.uint64) + 2**63),
                              "train_labels holds label 9223372036854775809"),
        "negative-label": (write_npz(at("negative-label"), test_labels=-np.ones(12, np.int8)),
                           "test_labels has negative labels"),
        "float-labels": (write_npz(at("float-labels"), val_labels=np.zeros(12)),
                         "val_labels must be integers, got float64"),
        "float-images": (write_npz(at("float-images"), train_images=np.zeros((60, 28, 28))),
                         "train_images must be uint8, got float64"),
        "images-5d": (write_npz(at("images-5d"), test_images=np.zeros((12, 1, 28, 28, 1),
                                                                      np.uint8)),
                      "test_images must have shape (N, H, W)"),
        "lengths-differ": (write_npz(at("lengths-differ"), train_labels=labels[:5]),
                           "train_labels must have shape (60, K)"),
        "label-columns-1e4": (write_npz(at("label-columns-1e4"),
                                        train_labels=np.zeros((60, 10_000), np.uint8)),
                              "K in 1..64"),
        "missing-array": (write_npz(at("missing-array"), val_images=None),
                          "missing key(s) val_images"),
        "object-array": (write_npz(at("object-array"), test_labels=np.array(
            [{"x": 1}] * 12, dtype=object)), "test_labels holds pickled Python objects"),
        "sizes-differ": (write_npz(at("sizes-differ"), val_images=np.zeros((12, 32, 32),
                                                                           np.uint8)),
                         "splits have different image shapes"),
    }
    not_zip = at("not-a-zip")
    not_zip.parent.mkdir(parents=True)
    not_zip.write_bytes(b"PK\x03\x04 this is not really a zip archive")
    cases["not-a-zip"] = (not_zip, "cannot read as .npz")
    plain = at("plain-npy")
    plain.parent.mkdir(parents=True)
    np.save(plain.with_suffix(".npy"), np.zeros((3, 28, 28), np.uint8))
    plain.with_suffix(".npy").rename(plain)
    cases["plain-npy"] = (plain, "cannot read as .npz: not a zip archive")
    # a header that claims 10**9 images over a few bytes: np.load would allocate 784 GB
    claim = write_npz(at("shape-claim"))
    with np.load(claim) as valid_file:
        members = dict(valid_file)
    with zipfile.ZipFile(claim, "w") as archive:
        for key, value in members.items():
            if key == "train_images":
                archive.writestr(f"{key}.npy", npy_bytes((10**9, 28, 28), "|u1", b"\0" * 64))
            else:
                archive.writestr(f"{key}.npy", npy_bytes(value.shape, value.dtype.str,
                                                         value.tobytes()))
    cases["shape-claim"] = (claim, "train_images declares shape (1000000000, 28, 28)")
    return cases


# --- the corpus through the CLI, under an address-space limit -------------------------


RUNNER = r"""
import contextlib, io, json, re, resource, sys, traceback

import torch  # noqa: F401  (imported once for every case)
from synthlearn.cli import main

def vm_peak():
    text = open("/proc/self/status").read()
    return int(re.search(r"VmPeak:\s+(\d+) kB", text).group(1)) * 1024

def run(argv):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except BaseException:  # what the test must never see
            traceback.print_exc(file=err)
            code = None
    return {"code": code, "stderr": err.getvalue()}

cases = json.loads(open(sys.argv[1]).read())
for case in cases:
    if case["ok"]:
        run(case["argv"])  # loads every module a valid file needs before the limit
warm = vm_peak()
limit = warm + int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
results = {case["name"]: run(case["argv"]) for case in cases}
print(json.dumps({"warm": warm, "limit": limit, "results": results}))
"""


def _recipe(path: Path, npz: Path) -> Path:
    recipe = small_recipe(data={"use": "medmnist", "params": {
        "subset": npz.stem, "root": str(npz.parent), "download": False}},
        arms=[{"use": "centralized"}])
    recipe["output"] = {"dir": str(path.parent / "runs"), "cache": None}
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def corpus_run(valid: dict[str, Blob], tmp_path_factory: pytest.TempPathFactory
               ) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("hostile")
    cases: list[dict[str, Any]] = []
    files = tmp / "files"
    files.mkdir()
    for name, blob in valid.items():
        path = files / f"valid-{name}.safetensors"
        path.write_bytes(blob)
        cases.append({"name": f"valid-{name}", "ok": True, "file": str(path),
                      "argv": ["sample", str(path), "--n", "600", "--out",
                               str(tmp / f"valid-{name}.npz")]})
    cases.append({"name": "valid-png", "ok": True, "file": "",
                  "argv": ["sample", str(files / "valid-phenotypic.safetensors"), "--out",
                           str(tmp / "grid.png")]})
    for name, (blob, fragment) in generator_corpus(valid["categorical"],
                                                   valid["phenotypic"]).items():
        path = files / f"{name}.safetensors"
        path.write_bytes(blob)
        cases.append({"name": name, "ok": False, "file": str(path), "fragment": fragment,
                      "argv": ["sample", str(path), "--out", str(tmp / f"{name}.npz")]})
    folder = files / "a-directory.safetensors"
    folder.mkdir()
    cases.append({"name": "a-directory", "ok": False, "file": str(folder),
                  "fragment": "not a regular file",
                  "argv": ["sample", str(folder), "--out", str(tmp / "dir.npz")]})
    cases.append({"name": "n-1e12", "ok": False, "file": "--n",
                  "fragment": "draws 1 to 1,000,000 images per call",
                  "argv": ["sample", str(files / "valid-categorical.safetensors"), "--n",
                           str(10**12), "--out", str(tmp / "many.npz")]})
    npz_valid = write_npz(tmp / "npz" / "valid" / "pneumoniamnist.npz")
    cases.append({"name": "valid-npz", "ok": True, "file": str(npz_valid),
                  "argv": ["validate", str(_recipe(tmp / "valid.yaml", npz_valid))]})
    for name, (path, fragment) in npz_corpus(tmp / "npz").items():
        cases.append({"name": f"npz-{name}", "ok": False, "file": str(path),
                      "fragment": fragment,
                      "argv": ["validate", str(_recipe(tmp / f"{name}.yaml", path))]})
    spec = tmp / "cases.json"
    spec.write_text(json.dumps(cases), encoding="utf-8")
    env = {"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "MALLOC_ARENA_MAX": "2", "CUDA_VISIBLE_DEVICES": "", "MPLBACKEND": "Agg",
           "HOME": str(tmp)}
    done = subprocess.run([sys.executable, "-c", RUNNER, str(spec), str(HEADROOM)],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return {"cases": cases, "tmp": tmp, **json.loads(done.stdout.strip().splitlines()[-1])}


def test_corpus_holds_enough_distinct_hostile_files(corpus_run) -> None:
    bad = [c for c in corpus_run["cases"] if not c["ok"]]
    assert sum(c["argv"][0] == "sample" for c in bad) >= 40
    assert sum(c["argv"][0] == "validate" for c in bad) >= 12
    assert len({Path(c["file"]).read_bytes() for c in bad
                if Path(c["file"]).is_file()}) == sum(Path(c["file"]).is_file() for c in bad)


def test_every_hostile_file_is_one_error_line_naming_it(corpus_run) -> None:
    problems = []
    for case in corpus_run["cases"]:
        if case["ok"]:
            continue
        got = corpus_run["results"][case["name"]]
        lines = got["stderr"].strip().splitlines()
        if (got["code"] != 2 or len(lines) != 1 or not lines[0].startswith("error: ")
                or case["file"] not in lines[0] or case["fragment"] not in lines[0]):
            problems.append(f"{case['name']}: exit {got['code']}: {got['stderr'][-600:]}")
    assert not problems, "\n".join(problems)


def test_valid_files_load_and_sample_under_the_same_limit(corpus_run) -> None:
    results, tmp = corpus_run["results"], corpus_run["tmp"]
    for name in ("valid-categorical", "valid-phenotypic", "valid-png", "valid-npz"):
        assert results[name] == {"code": 0, "stderr": ""}, (name, results[name])
    # 600 images: two chunks of a real fitted generator, labels following the site's mix
    for name in ("categorical", "phenotypic"):
        with np.load(tmp / f"valid-{name}.npz") as drawn:
            assert drawn["images"].shape == (600, 1, 16, 16)
            assert drawn["images"].dtype == np.uint8
            assert np.bincount(drawn["labels"]).tolist() == [300, 300]
            assert (len(drawn.files) == 2) == (name == "categorical")
    assert (tmp / "grid.png").read_bytes()[:4] == b"\x89PNG"
    # the limit was in force: a few GB of address space (torch alone maps about 3 GB)
    assert corpus_run["limit"] == corpus_run["warm"] + HEADROOM
    assert corpus_run["warm"] < 16 * 2**30


# --- each check on its own -----------------------------------------------------------


def test_payload_refuses_a_complex_tensor_and_a_lying_header_length(valid) -> None:
    blob = valid["categorical"]
    complex_blob = Payload({"z": torch.zeros(2, dtype=torch.complex64)}).to_bytes()
    with pytest.raises(SynthlearnError, match="tensor 'z' has dtype 'C64'") as info:
        Payload.from_bytes(complex_blob, "site 3")
    assert info.value.where == "site 3"
    longer = struct.pack("<Q", len(blob)) + blob[8:]
    with pytest.raises(SynthlearnError, match=f"declares {len(blob)} bytes, but "
                                              f"{len(blob) - 8} follow"):
        Payload.from_bytes(longer, "site 3")
    assert Payload.from_bytes(blob, "site 3").meta["n_real"] == 40


def test_load_state_refuses_weights_of_another_dtype() -> None:
    model = torch.nn.Linear(3, 2)
    half = {k: v.half() for k, v in model.state_dict().items()}
    with pytest.raises(SynthlearnError, match="'weight' is torch.float16, the model's is "
                                              "torch.float32") as info:
        load_state(model, Payload(half), "site 1")
    assert info.value.where == "site 1"
    flags = {**model.state_dict(), "bias": torch.ones(2, dtype=torch.bool)}
    with pytest.raises(SynthlearnError, match="'bias' is torch.bool"):
        load_state(model, Payload(flags), "site 1")


def test_gan_meta_sizes_are_checked_against_its_tensors_before_building(valid) -> None:
    state = Payload.from_bytes(valid["categorical"], "f")
    meta = dict(state.meta["generator"], num_classes=10**9)
    with pytest.raises(SynthlearnError, match=r"'num_classes' is 1000000000, but "
                                              r"embed.weight has shape \(2, 4\)"):
        GanGenerator(GanConfig(device="cpu")).load(Payload(state.tensors, meta), "f")


@pytest.mark.parametrize(("scheme", "change", "message"), [
    ("categorical", {"class_counts": [3, -1]}, "stats.class_counts must be a list of 2"),
    ("categorical", {"class_counts": [0, 0]}, "stats.class_counts must add up to 1.."),
    ("categorical", {"num_classes": 3, "class_counts": [1, 1, 1]},
     "stats.num_classes is 3, the dataset has 2 classes"),
    ("categorical", {"num_classes": True}, "stats.num_classes must be an integer"),
    ("phenotypic", {"scale": [1.0, 0.0]}, "stats.scale must be positive"),
    ("phenotypic", {"center": [1.0]}, "stats.center must be a list of 2 finite numbers"),
    ("phenotypic", {"categorical": {"scanner": [0.0, 0.0]}},
     "stats.categorical['scanner'] repeats a level"),
    ("phenotypic", {"per_class": {"0": {}}}, "stats.per_class['0'].mean is missing"),
    ("phenotypic", {"per_class": {"7": {}}}, "has an entry for class '7'"),
])
def test_check_stats_names_the_field(valid, scheme: str, change: dict, message: str) -> None:
    meta = Payload.from_bytes(valid[scheme], "x").meta
    stats = {**meta["stats"], **change}
    built = (CategoricalConditioning(CategoricalConfig()) if scheme == "categorical"
             else PhenotypicConditioning(PhenotypicConfig()))
    check_stats(built, meta["stats"], 2, "gen.safetensors")  # the real ones pass
    with pytest.raises(SynthlearnError) as info:
        check_stats(built, stats, 2, "gen.safetensors")
    assert info.value.where == "gen.safetensors" and message in info.value.message


def test_real_statistics_pass_for_every_built_in_dataset_shape() -> None:
    data = PhantomDataset(PhantomConfig(n_train=60, n_test=10, size=16, classes=3)).load(0)
    site = data.train.subset(np.flatnonzero(data.train.labels != 2))  # a class it lacks
    for scheme in (CategoricalConditioning(CategoricalConfig()),
                   PhenotypicConditioning(PhenotypicConfig())):
        stats = json.loads(json.dumps(scheme.summarize(site, 3, data.attributes)))
        check_stats(scheme, stats, 3, "site 0")
        labels, _ = scheme.sample(stats, 50, np.random.default_rng(0))
        assert set(labels.tolist()) == {0, 1}


class _Float32Gan(GanGenerator):
    """A generator plugin with a bug: ``sample`` returns floats."""

    def sample(self, conditions: Any, seed: int) -> np.ndarray:
        return super().sample(conditions, seed).astype(np.float32)


def test_wrong_generator_output_names_the_generator_and_the_rule(valid) -> None:
    state = Payload.from_bytes(valid["categorical"], "f")
    gan = _Float32Gan(GanConfig(device="cpu"))
    gan.load(Payload(state.tensors, state.meta["generator"]), "f")
    scheme = CategoricalConditioning(CategoricalConfig())
    with pytest.raises(SynthlearnError) as info:
        draw_pool(gan, scheme, state.meta["stats"], 5, 0, label="generator 'gan' (acme)",
                  where="arm s, site 1")
    assert str(info.value) == ("arm s, site 1: generator 'gan' (acme): sample returned float32 "
                               "(5, 1, 16, 16), expected uint8 (5, C, H, W), one image per "
                               "condition")
    good = GanGenerator(gan.config)
    good.load(Payload(state.tensors, state.meta["generator"]), "f")
    with pytest.raises(SynthlearnError, match=r"expected uint8 \(5, 3, 16, 16\)"):
        draw_pool(good, scheme, state.meta["stats"], 5, 0, image_shape=(3, 16, 16))
    drawn = draw_pool(good, scheme, state.meta["stats"], 5, 0, image_shape=(1, 16, 16))
    assert drawn.images.shape == (5, 1, 16, 16) and drawn.labels.shape == (5,)


def test_the_server_refuses_bad_statistics_naming_arm_site_and_field(valid) -> None:
    from synthlearn.arms.context import ArmContext
    from synthlearn.arms.synthetic import SyntheticArm, SyntheticConfig

    recipe = check_recipe(small_recipe(arms=[_arm("categorical")]), load_plugins())
    data = PhantomDataset(PhantomConfig(n_train=40, n_test=10, size=16)).load(0)
    ctx = ArmContext(arm=recipe.arms[0], arm_object=None, seed=0, sites=[Site(0, data.train)],
                     num_classes=2, in_chans=1, image_size=(16, 16), runner=None,
                     cache=None, hook=None, evaluator=None)
    arm = SyntheticArm(SyntheticConfig(share="generator"))
    payload = Payload.from_bytes(valid["categorical"], "site 0")
    for change, message in [
        ({"n_real": 10**12}, "n_real must be an integer in 1..40"),
        ({"stats": {**payload.meta["stats"], "class_counts": ["a", "b"]}},
         "malformed conditioning statistics: stats.class_counts"),
    ]:
        bad = Payload(payload.tensors, {**payload.meta, **change})
        with pytest.raises(SynthlearnError, match=message) as info:
            arm._sample_at_server(ctx, ctx.sites[0], None, bad, "arm g, site 0", 1)
        assert info.value.where == "arm g, site 0"


def test_medmnist_huge_label_is_one_line_not_a_memory_error(tmp_path: Path) -> None:
    labels = (np.arange(60) % 2).astype(np.int64)
    labels[3] = 10**9
    path = write_npz(tmp_path / "hostilemnist.npz", train_labels=labels)
    with pytest.raises(DataError) as info:
        MedMNISTDataset(MedMNISTConfig(subset="hostilemnist", root=str(tmp_path),
                                       download=False)).load(0)
    assert info.value.where == str(path)
    assert info.value.message == ("train_labels holds label 1000000000; a file may use at "
                                  "most 1000 classes")
