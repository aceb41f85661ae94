"""The built-in dataset sources: phantom, digits, medmnist, imagefolder."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from synthlearn.data.digits import DigitsConfig, DigitsDataset
from synthlearn.data.imagefolder import ImageFolderConfig, ImageFolderDataset
from synthlearn.data.medmnist import MedMNISTConfig, MedMNISTDataset
from synthlearn.data.phantom import PhantomConfig, PhantomDataset
from synthlearn.data.types import Dataset
from synthlearn.errors import DataError
from synthlearn.interfaces import DatasetSource

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


# --- phantom -------------------------------------------------------------------------


def small_phantom(**kw) -> PhantomDataset:
    params = {"n_train": 240, "n_test": 80} | kw
    return PhantomDataset(PhantomConfig(**params))


def test_phantom_is_a_dataset_source():
    assert isinstance(PhantomDataset(PhantomConfig()), DatasetSource)


def test_phantom_defaults_shapes_and_dtypes():
    ds = PhantomDataset(PhantomConfig()).load(0)
    assert isinstance(ds, Dataset)
    assert ds.train.images.shape == (1200, 1, 28, 28)
    assert ds.test.images.shape == (400, 1, 28, 28)
    assert ds.train.images.dtype == np.uint8
    assert ds.train.labels.dtype == np.int64
    assert ds.class_names == ("round", "ring")
    assert ds.channels == 1 and ds.image_size == (28, 28)
    assert [(a.name, a.kind) for a in ds.attributes] == [
        ("lesion_size", "continuous"), ("contrast", "continuous"), ("scanner", "categorical")]
    for split in (ds.train, ds.test):
        assert set(split.attributes) == {"lesion_size", "contrast", "scanner"}
        for values in split.attributes.values():
            assert values.dtype == np.float32
        assert set(np.unique(split.attributes["scanner"])) == {0.0, 1.0, 2.0}
        assert 0.5 <= split.attributes["lesion_size"].min() <= split.attributes[
            "lesion_size"].max() <= 1.5
    # not blank, not saturated
    assert 20 < ds.train.images.mean() < 120


def test_phantom_balanced_classes_and_names():
    ds = small_phantom(classes=4, n_train=400, n_test=102).load(3)
    assert ds.class_names == ("round", "ring", "bar", "pair")
    assert ds.train.class_counts(4) == [100, 100, 100, 100]
    assert sorted(ds.test.class_counts(4)) == [25, 25, 26, 26]
    ds3 = small_phantom(classes=3, scanners=4, n_train=120).load(0)
    assert ds3.train.class_counts(3) == [40, 40, 40]
    assert np.bincount(ds3.train.attributes["scanner"].astype(int)).tolist() == [30] * 4


def test_phantom_deterministic_by_seed():
    a, b, c = (small_phantom().load(s) for s in (5, 5, 6))
    assert a.train.fingerprint() == b.train.fingerprint()
    assert a.test.fingerprint() == b.test.fingerprint()
    assert np.array_equal(a.train.images, b.train.images)
    assert a.train.fingerprint() != c.train.fingerprint()
    assert not np.array_equal(a.train.images, c.train.images)


def test_phantom_train_and_test_are_independent_streams():
    ds = small_phantom(n_train=80, n_test=80).load(0)
    assert not np.array_equal(ds.train.images, ds.test.images)
    # the test split does not depend on how many training images were drawn
    other = small_phantom(n_train=200, n_test=80).load(0)
    assert np.array_equal(ds.test.images, other.test.images)


def render(source: PhantomDataset, seed: int, n: int = 64, label: int = 0,
           size: float = 1.0, contrast: float = 0.5, scanner: int = 0) -> np.ndarray:
    """Images with fixed phenotypes and the same anatomy for the same seed."""
    return source.render(np.full(n, label), np.full(n, size), np.full(n, contrast),
                         np.full(n, scanner), np.random.default_rng(seed)).astype(np.int16)


def test_lesion_size_changes_the_lesion_area():
    source = small_phantom(noise=0.0, scanner_shift=0.0)
    plain = render(source, 1, contrast=0.0)
    areas = [np.mean(np.sum(np.abs(render(source, 1, size=s) - plain) > 10, axis=(1, 2, 3)))
             for s in (0.5, 1.0, 1.5)]
    assert areas[0] > 0
    assert areas[0] < areas[1] < areas[2]
    assert areas[2] > 3 * areas[0]


def test_contrast_changes_the_lesion_intensity():
    source = small_phantom(noise=0.0, scanner_shift=0.0)
    plain = render(source, 2, contrast=0.0)
    excess = [np.abs(render(source, 2, contrast=c) - plain).sum(axis=(1, 2, 3)).mean()
              for c in (0.2, 0.5, 0.8)]
    assert 0 < excess[0] < excess[1] < excess[2]


def test_classes_have_different_shapes():
    source = small_phantom(classes=4, noise=0.0, scanner_shift=0.0)
    plain = render(source, 3, contrast=0.0)
    masks = [np.abs(render(source, 3, label=k) - plain) > 10 for k in range(4)]
    for i in range(4):
        for j in range(i + 1, 4):
            differing = np.mean(np.any(masks[i] != masks[j], axis=(1, 2, 3)))
            assert differing > 0.95, (i, j)


def test_scanner_profiles_shift_appearance():
    source = small_phantom(scanners=3, scanner_shift=1.0)
    imgs = [render(source, 4, scanner=k) for k in range(3)]
    means = [float(x.mean()) for x in imgs]
    assert means[0] + 5 < means[1] < means[2] - 5
    # background noise: the first scanner is the noisiest
    corner = [float(x[:, :, :3, :3].std()) for x in imgs]
    assert corner[0] > corner[2]

    ds = source.load(0)
    scanner = ds.train.attributes["scanner"]
    by_scanner = [ds.train.images[scanner == k].mean() for k in range(3)]
    assert by_scanner[0] < by_scanner[1] < by_scanner[2]


def test_scanner_shift_zero_makes_scanners_identical():
    source = small_phantom(scanners=3, scanner_shift=0.0)
    imgs = [render(source, 4, scanner=k) for k in range(3)]
    assert np.array_equal(imgs[0], imgs[1]) and np.array_equal(imgs[1], imgs[2])


@pytest.mark.parametrize(("field", "value", "message"), [
    ("classes", 7, "classes must be between 2 and 4, got 7"),
    ("classes", 1, "classes must be between 2 and 4, got 1"),
    ("scanners", 0, "scanners must be at least 1, got 0"),
    ("noise", -0.1, "noise must be a finite number >= 0, got -0.1"),
    ("scanner_shift", float("nan"), "scanner_shift must be"),
    ("size", 4, "size must be between 8 and 512, got 4"),
    ("n_train", 1, "n_train must be at least classes"),
    ("n_test", 0, "n_test must be at least classes"),
])
def test_phantom_rejects_bad_config(field, value, message):
    with pytest.raises(DataError, match=message):
        PhantomDataset(PhantomConfig(**{field: value}))


def test_phantom_other_sizes():
    ds = small_phantom(size=64, n_train=20, n_test=10).load(0)
    assert ds.train.images.shape == (20, 1, 64, 64)


# --- digits --------------------------------------------------------------------------


def test_digits_loads_and_splits_stratified():
    ds = DigitsDataset(DigitsConfig()).load(0)
    assert ds.class_names == tuple("0123456789")
    assert ds.attributes == ()
    assert ds.train.images.shape[1:] == (1, 16, 16)
    assert ds.train.images.dtype == np.uint8 and ds.train.labels.dtype == np.int64
    assert len(ds.train) + len(ds.test) == 1797
    assert abs(len(ds.test) - 0.25 * 1797) < 10
    total = np.array(ds.train.class_counts(10)) + np.array(ds.test.class_counts(10))
    share = np.array(ds.test.class_counts(10)) / total
    assert np.all(np.abs(share - 0.25) < 0.01)
    assert ds.train.images.max() > 200


def test_digits_deterministic_and_seed_dependent():
    a, b, c = (DigitsDataset(DigitsConfig()).load(s) for s in (1, 1, 2))
    assert a.train.fingerprint() == b.train.fingerprint()
    assert a.train.fingerprint() != c.train.fingerprint()


def test_digits_native_size_is_scaled_not_resized():
    from sklearn.datasets import load_digits

    ds = DigitsDataset(DigitsConfig(size=8, test_fraction=0.5)).load(0)
    raw = load_digits().images
    values = set(np.unique(np.round(raw * 255 / 16)).astype(int))
    assert set(np.unique(ds.train.images).tolist()) <= values
    assert ds.train.images.shape[2:] == (8, 8)


def test_digits_rejects_bad_fraction():
    with pytest.raises(DataError, match="test_fraction"):
        DigitsDataset(DigitsConfig(test_fraction=1.0))


# --- medmnist ------------------------------------------------------------------------


def write_npz(path: Path, n=(20, 6, 8), shape=(28, 28), classes=2, width=1, rgb=False,
              drop: str | None = None, image_dtype=np.uint8) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {}
    for split, count in zip(("train", "val", "test"), n, strict=True):
        full = (count, *shape, 3) if rgb else (count, *shape)
        arrays[f"{split}_images"] = rng.integers(0, 256, size=full).astype(image_dtype)
        if width == 1:
            labels = (np.arange(count) % classes).reshape(count, 1)
        else:
            labels = rng.integers(0, 2, size=(count, width))
            labels[0] = 0  # at least one "no finding"
        arrays[f"{split}_labels"] = labels.astype(np.uint8)
    if drop:
        del arrays[drop]
    np.savez(path, **arrays)
    return arrays


def test_medmnist_grey(tmp_path):
    arrays = write_npz(tmp_path / "pneumoniamnist.npz")
    ds = MedMNISTDataset(MedMNISTConfig(root=str(tmp_path))).load(0)
    assert ds.name == "pneumoniamnist"
    assert ds.class_names == ("normal", "pneumonia")
    assert ds.train.images.shape == (20, 1, 28, 28)
    assert ds.test.images.shape == (8, 1, 28, 28)
    assert ds.train.labels.dtype == np.int64 and ds.train.labels.shape == (20,)
    assert np.array_equal(ds.train.images[:, 0], arrays["train_images"])
    assert np.array_equal(ds.test.labels, arrays["test_labels"][:, 0])
    assert ds.train.class_counts(2) == [10, 10]


def test_medmnist_merge_val(tmp_path):
    arrays = write_npz(tmp_path / "pneumoniamnist.npz")
    ds = MedMNISTDataset(MedMNISTConfig(root=str(tmp_path), merge_val=True)).load(0)
    assert len(ds.train) == 26 and len(ds.test) == 8
    assert np.array_equal(ds.train.images[20:, 0], arrays["val_images"])


def test_medmnist_scored_on_the_val_split(tmp_path):
    arrays = write_npz(tmp_path / "pneumoniamnist.npz")
    ds = MedMNISTDataset(MedMNISTConfig(root=str(tmp_path), test_split="val")).load(0)
    assert len(ds.train) == 20 and len(ds.test) == 6
    assert np.array_equal(ds.test.images[:, 0], arrays["val_images"])
    assert np.array_equal(ds.test.labels, arrays["val_labels"][:, 0])
    with pytest.raises(ValueError, match="merge_val"):
        MedMNISTConfig(merge_val=True, test_split="val")
    with pytest.raises(ValueError):
        MedMNISTConfig(test_split="train")


def test_medmnist_train_per_class_keeps_a_seeded_imbalanced_subset(tmp_path):
    arrays = write_npz(tmp_path / "pneumoniamnist.npz", n=(40, 6, 8))
    config = MedMNISTConfig(root=str(tmp_path), train_per_class=[3, 9])
    ds = MedMNISTDataset(config).load(0)
    assert ds.train.class_counts(2) == [3, 9] and len(ds.test) == 8
    # every kept image is one of the file's, with its own label
    rows = {arrays["train_images"][i].tobytes(): i for i in range(40)}
    kept = [rows[image[0].tobytes()] for image in ds.train.images]
    assert kept == sorted(kept)
    assert np.array_equal(arrays["train_labels"][kept, 0], ds.train.labels)
    # deterministic for the seed, another seed keeps other images
    again = MedMNISTDataset(config).load(0)
    assert np.array_equal(again.train.images, ds.train.images)
    other = MedMNISTDataset(config).load(1)
    assert not np.array_equal(other.train.images, ds.train.images)
    # the default keeps the whole split
    assert len(MedMNISTDataset(MedMNISTConfig(root=str(tmp_path))).load(0).train) == 40


@pytest.mark.parametrize(("counts", "message"), [
    ([3, 21], "asks for more images than the training split of pneumoniamnist.npz holds "
              r"\(class 1: 21 of 20\)"),
    ([3, 3, 3], "gives 3 counts, pneumoniamnist.npz has 2 classes"),
])
def test_medmnist_train_per_class_the_file_cannot_meet(tmp_path, counts, message):
    write_npz(tmp_path / "pneumoniamnist.npz", n=(40, 6, 8))
    source = MedMNISTDataset(MedMNISTConfig(root=str(tmp_path), train_per_class=counts))
    with pytest.raises(DataError, match=message) as info:
        source.load(0)
    assert "$.data.params.train_per_class" in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("counts", [[-1, 3], [0, 0], [1.5, 2], "150"])
def test_medmnist_train_per_class_bad_values_are_one_line_at_their_path(
        counts, write_recipe, cli):
    recipe = {"name": "m", "data": {"use": "medmnist", "params": {
        "root": "/nowhere", "train_per_class": counts}}, "arms": [{"use": "centralized"}]}
    result = cli("validate", str(write_recipe(recipe)))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: $.data.params"), lines
    assert "train_per_class" in lines[0]


def test_medmnist_rgb_other_size_and_unknown_subset(tmp_path):
    arrays = write_npz(tmp_path / "mysubsetmnist_64.npz", shape=(64, 64), rgb=True, classes=3)
    ds = MedMNISTDataset(MedMNISTConfig(subset="mysubsetmnist", root=str(tmp_path),
                                        size=64)).load(0)
    assert ds.train.images.shape == (20, 3, 64, 64)
    assert ds.channels == 3
    assert np.array_equal(ds.train.images[3, 2], arrays["train_images"][3, :, :, 2])
    assert ds.class_names == ("class_0", "class_1", "class_2")


def test_medmnist_known_rgb_subset_names(tmp_path):
    write_npz(tmp_path / "bloodmnist.npz", rgb=True, classes=8)
    ds = MedMNISTDataset(MedMNISTConfig(subset="bloodmnist", root=str(tmp_path))).load(0)
    assert ds.num_classes == 8 and ds.class_names[0] == "basophil"


def test_medmnist_multi_label(tmp_path):
    arrays = write_npz(tmp_path / "chestmnist.npz", width=14)
    ds = MedMNISTDataset(MedMNISTConfig(subset="chestmnist", root=str(tmp_path))).load(0)
    assert ds.class_names == ("no finding", "finding")
    assert [a.name for a in ds.attributes] == [f"finding_{i}" for i in range(14)]
    assert {a.kind for a in ds.attributes} == {"binary"}
    assert ds.attributes[1].description == "cardiomegaly"
    expected = (arrays["train_labels"].sum(axis=1) > 0).astype(np.int64)
    assert np.array_equal(ds.train.labels, expected)
    assert ds.train.labels[0] == 0
    assert ds.train.attributes["finding_5"].dtype == np.float32
    assert np.array_equal(ds.train.attributes["finding_5"], arrays["train_labels"][:, 5])


def test_medmnist_missing_file_names_path(tmp_path):
    source = MedMNISTDataset(MedMNISTConfig(root=str(tmp_path / "nowhere"), download=False))
    with pytest.raises(DataError) as info:
        source.load(0)
    message = str(info.value)
    assert str(tmp_path / "nowhere" / "pneumoniamnist.npz") in message
    assert "pip install medmnist" in message and "\n" not in message


def test_medmnist_missing_file_without_package(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "medmnist", None)  # import fails
    source = MedMNISTDataset(MedMNISTConfig(root=str(tmp_path), download=True))
    with pytest.raises(DataError, match="MedMNIST file not found: .*pneumoniamnist.npz"):
        source.load(0)


def test_medmnist_download_through_package(tmp_path, monkeypatch):
    calls = []

    class FakeSet:
        def __init__(self, split, download, root, size=28):
            calls.append((split, download, root, size))
            write_npz(Path(root) / "breastmnist_128.npz", shape=(128, 128))

    fake = types.SimpleNamespace(INFO={"breastmnist": {"python_class": "BreastMNIST"}},
                                 BreastMNIST=FakeSet)
    monkeypatch.setitem(sys.modules, "medmnist", fake)
    root = tmp_path / "cache"
    ds = MedMNISTDataset(MedMNISTConfig(subset="breastmnist", root=str(root), size=128)).load(0)
    assert calls == [("train", True, str(root), 128)]
    assert ds.class_names == ("malignant", "normal/benign")
    assert ds.image_size == (128, 128)


def test_medmnist_download_failure_is_one_line(tmp_path, monkeypatch):
    class Broken:
        def __init__(self, **kwargs):
            raise ConnectionError("offline")

    fake = types.SimpleNamespace(INFO={"pneumoniamnist": {"python_class": "P"}}, P=Broken)
    monkeypatch.setitem(sys.modules, "medmnist", fake)
    with pytest.raises(DataError, match="ConnectionError: offline"):
        MedMNISTDataset(MedMNISTConfig(root=str(tmp_path))).load(0)


def test_medmnist_root_expands_env_vars(tmp_path, monkeypatch):
    write_npz(tmp_path / "pneumoniamnist.npz")
    monkeypatch.setenv("SYNTHLEARN_TEST_DATA", str(tmp_path))
    ds = MedMNISTDataset(MedMNISTConfig(root="$SYNTHLEARN_TEST_DATA")).load(0)
    assert len(ds.train) == 20


@pytest.mark.parametrize(("kind", "problem"), [
    ("not-zip", "cannot read as .npz"),
    ("missing-key", "missing key(s) test_labels"),
    ("float-images", "train_images must be uint8"),
    ("bad-shape", "must have shape (N, H, W)"),
    ("pickled", "cannot read as .npz"),
    ("wrong-size", "expected (28, 28)"),
])
def test_medmnist_malformed_file(tmp_path, kind, problem):
    path = tmp_path / "pneumoniamnist.npz"
    if kind == "not-zip":
        path.write_text("this is not a zip archive")
    elif kind == "missing-key":
        write_npz(path, drop="test_labels")
    elif kind == "float-images":
        write_npz(path, image_dtype=np.float32)
    elif kind == "bad-shape":
        write_npz(path, shape=(28,))
    elif kind == "pickled":
        arrays = write_npz(path)
        arrays["train_labels"] = np.array([{"x": 1}] * 20, dtype=object)
        np.savez(path, **arrays)
    elif kind == "wrong-size":
        write_npz(path, shape=(32, 32))
    with pytest.raises(DataError) as info:
        MedMNISTDataset(MedMNISTConfig(root=str(tmp_path), download=False)).load(0)
    assert str(path) in str(info.value)
    assert problem in str(info.value)


def test_medmnist_rejects_bad_size():
    with pytest.raises(DataError, match="size must be one of 28, 64, 128, 224"):
        MedMNISTDataset(MedMNISTConfig(size=32))


def test_medmnist_shared_pneumonia_file():
    path = SHARED_DATA / "pneumoniamnist.npz"
    if not path.is_file():
        pytest.skip(f"shared PneumoniaMNIST file not present at {path}")
    ds = MedMNISTDataset(MedMNISTConfig(root=str(SHARED_DATA), download=False)).load(0)
    assert len(ds.train) == 2428 and len(ds.test) == 468
    assert ds.num_classes == 2 and ds.class_names == ("normal", "pneumonia")
    assert ds.train.images.shape[1:] == (1, 28, 28)
    assert ds.train.class_counts(2) == [1214, 1214]
    merged = MedMNISTDataset(MedMNISTConfig(root=str(SHARED_DATA), download=False,
                                            merge_val=True)).load(0)
    assert len(merged.train) == 2428 + 270


# --- imagefolder ---------------------------------------------------------------------


def make_folder(root: Path, classes=("cat", "dog"), per_class=5, mode="L", size=(12, 10)):
    rng = np.random.default_rng(0)
    for k, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], 3)
            pixels = rng.integers(0, 256, size=shape).astype(np.uint8)
            pixels[...] = pixels // 4 + 60 * k  # class-dependent brightness
            Image.fromarray(pixels, mode=mode).save(root / name / f"img{i}.png")


def test_imagefolder_grey_auto_split(tmp_path):
    make_folder(tmp_path / "data")
    (tmp_path / "data" / "cat" / "notes.txt").write_text("ignored")
    ds = ImageFolderDataset(ImageFolderConfig(root=str(tmp_path / "data"), size=8)).load(0)
    assert ds.name == "data"
    assert ds.class_names == ("cat", "dog")
    assert ds.channels == 1 and ds.image_size == (8, 8)
    assert ds.train.class_counts(2) == [4, 4] and ds.test.class_counts(2) == [1, 1]
    assert ds.train.images[ds.train.labels == 1].mean() > ds.train.images[
        ds.train.labels == 0].mean() + 30
    again = ImageFolderDataset(ImageFolderConfig(root=str(tmp_path / "data"), size=8)).load(0)
    assert again.test.fingerprint() == ds.test.fingerprint()


def test_imagefolder_rgb_and_forced_channels(tmp_path):
    make_folder(tmp_path, classes=("a", "b", "c"), mode="RGB")
    ds = ImageFolderDataset(ImageFolderConfig(root=str(tmp_path), size=16)).load(0)
    assert ds.train.images.shape[1:] == (3, 16, 16)
    grey = ImageFolderDataset(ImageFolderConfig(root=str(tmp_path), channels=1)).load(0)
    assert grey.train.images.shape[1:] == (1, 28, 28)


def test_imagefolder_train_test_folders(tmp_path):
    make_folder(tmp_path / "train", per_class=3)
    make_folder(tmp_path / "test", per_class=2)
    ds = ImageFolderDataset(ImageFolderConfig(root=str(tmp_path))).load(0)
    assert len(ds.train) == 6 and len(ds.test) == 4


def test_imagefolder_sixteen_bit(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    deep = np.full((8, 8), 40000, dtype=np.uint16)
    for name in ("x", "y"):
        for i in range(2):
            Image.fromarray(deep).save(tmp_path / name / f"{i}.png")
    ds = ImageFolderDataset(ImageFolderConfig(root=str(tmp_path), size=8,
                                              test_fraction=0.5)).load(0)
    assert ds.channels == 1
    assert abs(int(ds.train.images.mean()) - 40000 // 257) <= 1


def test_imagefolder_errors(tmp_path):
    with pytest.raises(DataError, match="root folder not found"):
        ImageFolderDataset(ImageFolderConfig(root=str(tmp_path / "missing"))).load(0)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no class folders"):
        ImageFolderDataset(ImageFolderConfig(root=str(tmp_path / "empty"))).load(0)
    make_folder(tmp_path / "bad")
    broken = tmp_path / "bad" / "dog" / "broken.png"
    broken.write_bytes(b"not an image at all")
    with pytest.raises(DataError, match="broken.png"):
        ImageFolderDataset(ImageFolderConfig(root=str(tmp_path / "bad"))).load(0)
    with pytest.raises(DataError, match="channels"):
        ImageFolderDataset(ImageFolderConfig(root=str(tmp_path), channels=2))


def test_images_are_held_in_one_memory_layout() -> None:
    """The same values in another layout (here channels-last transposed to (N, C, H, W),
    which gives the size-1 channel axis an odd stride) can take torch down another
    convolution path and change the numbers; ImageData keeps one standard layout, so a
    site's data read from its file trains exactly as the partitioned array does."""
    from synthlearn.data.types import ImageData

    rng = np.random.default_rng(0)
    odd = rng.integers(0, 256, (6, 16, 16, 1), dtype=np.uint8).transpose(0, 3, 1, 2)
    assert odd.strides != (256, 256, 16, 1)
    data = ImageData(images=odd, labels=np.zeros(6, np.int64))
    assert data.images.strides == (256, 256, 16, 1)
    assert np.array_equal(data.images, odd)
    standard = data.images
    assert ImageData(images=standard, labels=np.zeros(6, np.int64)).images is standard
