"""Time the quickstart recipe end to end (cache off) and print the figures.

    .venv/bin/python benchmarks/quickstart_time.py [--recipe templates/recipes/quickstart.yaml]

Prints the total wall time (process start to finished run directory, imports included),
each arm's wall time and accuracy, and the torch thread count, so the figure can be
compared with the "under 2 minutes on a 2-core CPU" target.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

START = time.perf_counter()

import torch  # noqa: E402
from synthlearn.data.phantom import PhantomConfig, PhantomDataset  # noqa: E402
from synthlearn.plugins import load_plugins  # noqa: E402
from synthlearn.recipe import load_recipe  # noqa: E402
from synthlearn.run import Run  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="templates/recipes/quickstart.yaml")
    args = parser.parse_args()
    plugins = load_plugins()
    plugins.raise_problems()
    source = PhantomDataset(PhantomConfig(n_train=1200, n_test=400))
    source.load(0)  # warm-up
    start = time.perf_counter()
    source.load(1)
    print(f"phantom dataset, 1200 + 400 images: {time.perf_counter() - start:.2f} s to make")
    with tempfile.TemporaryDirectory() as tmp:
        recipe = load_recipe(args.recipe, plugins, ["output.cache=null"])
        out = Path(tmp) / "run"
        Run(recipe, plugins, quiet=True).execute(str(out))
        metrics = json.loads((out / "metrics.json").read_text())
    total = time.perf_counter() - START
    print(f"recipe: {args.recipe}  device: {recipe.model.config.device}  "
          f"torch threads: {torch.get_num_threads()}")
    print(f"{'arm':<16}{'accuracy':>10}{'wall s':>10}")
    for arm in metrics["arms"]:
        m = arm["metrics"]
        print(f"{arm['name']:<16}{m['accuracy']:>10.3f}{m['wall_s']:>10.1f}")
    print(f"total wall time (imports, data, all arms, report): {total:.1f} s")


if __name__ == "__main__":
    main()
