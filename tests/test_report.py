"""The run report: Markdown content from a hand-made metrics dict, and the PNG figures."""

from __future__ import annotations

import copy
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest
from synthlearn.data.types import ImageData
from synthlearn.report import figures
from synthlearn.report.markdown import human_bytes, render_report, write_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def make_metrics() -> dict:
    """A metrics dict shaped like metrics.json, with numbers chosen to be recognisable."""
    return {
        "name": "quickstart", "seed": 7, "synthlearn_version": "0.1.0", "wall_s": 81.25,
        "dataset": {"use": "phantom", "num_classes": 2, "class_names": ["round", "ring"],
                    "image_size": [28, 28], "channels": 1, "n_train": 1200, "n_test": 400},
        "model": {"use": "timm", "arch": "resnet18", "stem": "small", "params": 11170000},
        "sites": [{"site": 0, "n": 400, "class_counts": [250, 150]},
                  {"site": 1, "n": 410, "class_counts": [10, 400]},
                  {"site": 2, "n": 390, "class_counts": [200, 190]}],
        "arms": [
            {"name": "centralized", "use": "centralized", "private": False,
             "metrics": {"accuracy": 0.91234, "balanced_accuracy": 0.9051, "auc": 0.97777,
                         "bytes_to_server": 940800, "bytes_to_sites": 0, "wall_s": 30.14},
             "shared": ["raw images and labels"], "cached_sites": 0, "sites": [],
             "attacks": {}},
            {"name": "local", "use": "local", "private": True,
             "metrics": {"accuracy": 0.8412, "balanced_accuracy": 0.8333, "auc": None,
                         "bytes_to_server": 3 * 1024 * 1024, "bytes_to_sites": 1536,
                         "wall_s": 12.0},
             "shared": ["trained model weights"], "cached_sites": 3,
             "sites": [{"site": 0, "accuracy": 0.8511, "balanced_accuracy": 0.85,
                        "auc": 0.93},
                       {"site": 1, "accuracy": 0.7022, "balanced_accuracy": 0.71,
                        "auc": None},
                       {"site": 2, "accuracy": 0.9703, "balanced_accuracy": 0.96,
                        "auc": 0.99}],
             "attacks": {}},
        ],
    }


def table_row(text: str, first_cell: str) -> list[str]:
    """The cells of the Markdown table row whose first cell is ``first_cell``."""
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no table row starting with {first_cell!r} in:\n{text}")


def tiny_site(rng: np.random.Generator, channels: int, labels: list[int]) -> ImageData:
    images = rng.integers(0, 256, size=(len(labels), channels, 8, 8), dtype=np.uint8)
    return ImageData(images=images, labels=np.array(labels, dtype=np.int64))


# --------------------------------------------------------------------------- human_bytes


@pytest.mark.parametrize(("n", "text"), [
    (0, "0 B"), (1, "1 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (1229, "1.2 KiB"),
    (940800, "918.8 KiB"), (int(3.4 * 1024**2), "3.4 MiB"), (1024**2 - 1, "1.0 MiB"),
    (5 * 1024**3, "5.0 GiB"), (2 * 1024**4, "2.0 TiB"),
])
def test_human_bytes(n: int, text: str) -> None:
    assert human_bytes(n) == text


# --------------------------------------------------------------------------- render_report


def test_report_title_and_arms_table() -> None:
    text = render_report(make_metrics())
    assert text.splitlines()[0] == "# quickstart (seed 7)"
    assert "## What was compared" in text
    assert "400 real held-out test images" in text
    assert "split over 3 sites" in text

    central = table_row(text, "centralized")
    assert central == ["centralized", "`centralized`", "**no** (pools raw images)", "0.912",
                       "0.978", "n/a", "918.8 KiB", "0 B", "0.905", "30.1"]
    local = table_row(text, "local")
    assert local == ["local", "`local`", "yes", "0.841", "n/a", "n/a", "3.0 MiB",
                     "1.5 KiB", "0.833", "12.0"]
    assert "not private" in text.lower()


def test_report_per_site_tables() -> None:
    text = render_report(make_metrics())
    # sites: images and class counts by class name, plus a total
    sites_part = text.split("## Sites", 1)[1]
    assert table_row(sites_part, "site") == ["site", "images", "round", "ring"]
    assert table_row(sites_part, "1") == ["1", "410", "10", "400"]
    assert table_row(sites_part, "**total**") == ["**total**", "1200", "460", "740"]
    # every site of the local arm, in its own table after the "every site" heading
    per_site = text.split("### local: every site", 1)[1].split("##", 1)[0]
    assert table_row(per_site, "0") == ["0", "0.851", "0.850", "0.930"]
    assert table_row(per_site, "1") == ["1", "0.702", "0.710", "n/a"]
    assert table_row(per_site, "2") == ["2", "0.970", "0.960", "0.990"]
    assert "### centralized: every site" not in text


def test_report_shared_setup_and_figures() -> None:
    text = render_report(make_metrics())
    shared = text.split("## What left each site", 1)[1].split("\n## ", 1)[0]
    assert "**centralized** (`centralized`): raw images and labels." in shared
    assert "**Not private.**" in shared
    assert "**local** (`local`): trained model weights." in shared
    assert "from the cache: 3." in shared
    for embed in ("![samples](samples.png)", "![class balance](class_balance.png)",
                  "![arms](arms.png)"):
        assert embed in text
    assert "`phantom`" in text and "round, ring" in text and "28×28" in text
    assert "resnet18" in text and "11.17 M parameters" in text
    assert "## Membership inference" not in text


def test_report_says_how_a_synthetic_arm_trained_and_what_its_site_steps_changed() -> None:
    metrics = make_metrics()
    arm = {"name": "synth", "use": "synthetic", "private": True,
           "metrics": {"accuracy": 0.8123, "balanced_accuracy": 0.81, "auc": 0.951,
                       "bytes_to_server": 10, "bytes_to_sites": 20, "wall_s": 1.0},
           "details": {"share": "generator", "sets": 10,
                       "steps": [{"step": "trained", "accuracy": 0.7012, "auc": 0.9401},
                                 {"step": "adapt_bn", "accuracy": 0.7511, "auc": 0.95},
                                 {"step": "calibrate", "accuracy": 0.8123, "auc": 0.951}]},
           "fidelity": {"pooled": {"n_fake": 100, "fd": 0.1, "precision": 0.8,
                                   "recall": 0.7}, "sites": []},
           "shared": [], "sites": [], "attacks": {}}
    metrics["arms"].append(arm)
    results, text = render_report(metrics).split("## Synthetic data", 1)
    assert "**synth**: trained on 10 synthetic sets" in text
    assert ("**synth**, test figures after each step: as trained: accuracy 0.701, "
            "AUC 0.940, then batch-norm "
            "statistics re-estimated at the sites (`adapt_bn`): accuracy 0.751, AUC 0.950, "
            "then biases calibrated at the sites (`calibrate`): accuracy 0.812, AUC 0.951."
            ) in results.split("## Results", 1)[1]
    arm["details"] = {"share": "samples", "sets": 1}
    assert "**synth**:" not in render_report(metrics)


def test_report_membership_inference_table() -> None:
    metrics = make_metrics()
    metrics["arms"][1]["attacks"] = {
        "lira": {"auc": 0.6123, "control_auc": 0.5012, "tpr_at_fpr_0.01": 0.0512,
                 "control_tpr_at_fpr_0.01": 0.011, "tpr_at_fpr_0.001": None,
                 "balanced_accuracy": 0.58, "n_members": 300, "n_nonmembers": 300,
                 "reference": "real", "reference_models": 8,
                 "not_available": {"tpr_at_fpr_0.001": "300 non-members cannot resolve"}},
    }
    metrics["arms"][1]["figures"] = {"roc": "roc-local.png"}
    text = render_report(metrics)
    attacks = text.split("## Membership inference", 1)[1]
    assert "### lira" in attacks
    assert table_row(attacks, "local") == ["local", "0.612", "0.501", "0.051", "0.011", "n/a",
                                           "0.580", "300 / 300", "8 × real (approximation)"]
    assert "- lira, local: tpr_at_fpr_0.001 not available: 300 non-members cannot resolve." \
        in attacks
    assert "![ROC local](roc-local.png)" in attacks


@pytest.mark.parametrize("metrics", [
    {},
    {"name": "empty", "seed": 0, "arms": [], "sites": []},
    {"name": "bare", "arms": [{"name": "x"}], "dataset": {"class_names": ["a"]}},
    {"name": "nan", "arms": [{"name": "x", "use": "local",
                              "metrics": {"accuracy": float("nan"), "auc": None}}]},
])
def test_report_missing_keys(metrics: dict) -> None:
    text = render_report(metrics)
    assert text.startswith("# ")
    assert text.endswith("\n")
    if metrics.get("arms"):
        assert table_row(text, "x")[3] == "n/a"
    else:
        assert "No arms were run." in text


# --------------------------------------------------------------------------- figures


def read_png(path: Path) -> np.ndarray:
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    pixels = mpimg.imread(path)
    assert pixels.ndim == 3 and pixels.shape[2] in (3, 4)
    return pixels


def test_write_report_grey_and_rgb(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    metrics = make_metrics()
    for channels in (1, 3):
        sites = [(0, tiny_site(rng, channels, [0] * 9 + [1] * 3)),
                 (1, tiny_site(rng, channels, [0, 1, 1, 1])),
                 (2, tiny_site(rng, channels, [1, 0] * 4))]
        run_dir = tmp_path / f"c{channels}"
        written = write_report(run_dir, metrics, sites, ["round", "ring"], seed=0)
        assert written == ["report.md", "samples.png", "class_balance.png", "arms.png",
                           "cost.png"]
        assert sorted(p.name for p in run_dir.iterdir()) == sorted(written)
        assert (run_dir / "report.md").read_text(encoding="utf-8") == render_report(metrics)
        for name in written[1:]:
            h, w, _ = read_png(run_dir / name).shape
            assert 100 <= h <= 5000 and 200 <= w <= 3000, (name, h, w)


def test_sample_grid_is_deterministic(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    sites = [(0, tiny_site(rng, 3, [0] * 20 + [1] * 20)), (4, tiny_site(rng, 3, [1] * 12))]
    a, b, c = tmp_path / "a.png", tmp_path / "b.png", tmp_path / "c.png"
    figures.sample_grid(a, sites, ["round", "ring"], per_class=4, seed=3)
    figures.sample_grid(b, copy.deepcopy(sites), ["round", "ring"], per_class=4, seed=3)
    figures.sample_grid(c, sites, ["round", "ring"], per_class=4, seed=4)
    assert np.array_equal(read_png(a), read_png(b))
    assert a.read_bytes() == b.read_bytes()
    assert not np.array_equal(read_png(a), read_png(c))  # another seed picks other images


def test_pick_examples_uses_the_class_and_the_seed() -> None:
    labels = np.array([0, 1] * 10)
    first = figures.pick_examples(labels, 1, 4, np.random.default_rng(0))
    again = figures.pick_examples(labels, 1, 4, np.random.default_rng(0))
    assert np.array_equal(first, again)
    assert len(first) == 4 and np.all(labels[first] == 1)
    assert list(figures.pick_examples(labels, 2, 4, np.random.default_rng(0))) == []


def test_site_lacking_a_class_and_empty_inputs(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    only_zero = [(0, tiny_site(rng, 1, [0, 0, 0])), (1, tiny_site(rng, 1, [2, 2]))]
    figures.sample_grid(tmp_path / "s.png", only_zero, ["a", "b", "c"], per_class=3)
    figures.sample_grid(tmp_path / "none.png", [], ["a"])
    figures.class_balance(tmp_path / "cb.png", [{"site": 0, "n": 3, "class_counts": [3]}],
                          ["a", "b", "c"])
    figures.class_balance(tmp_path / "cb0.png", [], [])
    figures.arms_chart(tmp_path / "arms0.png", [])
    figures.arms_chart(tmp_path / "arms1.png", [{"name": "x", "metrics": {"accuracy": None}}])
    for name in ("s", "none", "cb", "cb0", "arms0", "arms1"):
        read_png(tmp_path / f"{name}.png")
