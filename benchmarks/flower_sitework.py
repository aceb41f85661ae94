"""Wall time of one arm's site work, the local runner against the flower runner
(``mode: simulation``: a real SuperLink and one synthlearn-node process per site on
this machine), on a real recipe.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/flower_sitework.py \\
        templates/recipes/catphishing.yaml --arm synthetic-gan \\
        --set data.params.root=../shared/data --set "arms[2].generator.params.steps=600"

The recipe runs twice with only ``--arm`` kept, no site cache (every site works) and
the model at 1 epoch (the server's training is not what is measured): once with
``runner: local``, once with ``runner: {use: flower, params: {mode: simulation,
threads_per_site: 1}}``. For each site task the script records when each site's result
arrived (the ``synthlearn_on_site_done`` event: seconds since the task went to all
sites) and prints per task the slowest site (the task's site-work wall time) and each
site, the arm's wall time, and checks both runs give the same accuracy and bytes.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
from synthlearn.api import load_plugins
from synthlearn.execution.run import Run
from synthlearn.hookspecs import hookimpl
from synthlearn.recipe import load_recipe


class SiteTimes:
    """Collects each site's arrival time per task (an in-process event plugin)."""

    def __init__(self) -> None:
        self.tasks: dict[str, dict[int, float]] = defaultdict(dict)

    @hookimpl
    def synthlearn_on_site_done(self, arm: str, site: int, outputs: Mapping[str, Any]) -> None:
        if not outputs["cached"]:
            self.tasks[f"{arm}: {outputs['task']}"][site] = float(outputs["wall_s"])


def run_once(recipe_path: str, arm: str, runner: str, overrides: list[str], out: Path,
             quiet: bool) -> tuple[dict[str, dict[int, float]], dict[str, Any], float]:
    times = SiteTimes()
    plugins = load_plugins([times])
    sets = [*overrides, "output.cache=null", "model.params.epochs=1", f"runner={runner}"]
    recipe = load_recipe(recipe_path, plugins, sets)
    kept = tuple(a for a in recipe.arms if a.name == arm)
    if not kept:
        raise SystemExit(f"no arm named {arm!r} in {recipe_path}: "
                         f"{', '.join(a.name for a in recipe.arms)}")
    recipe = attrs.evolve(recipe, arms=kept, attacks=())
    start = time.perf_counter()
    run_dir = Run(recipe, plugins, quiet=quiet).execute(str(out))
    wall = time.perf_counter() - start
    metrics = json.loads((Path(run_dir) / "metrics.json").read_text())
    return dict(times.tasks), metrics["arms"][0]["metrics"], wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe")
    parser.add_argument("--arm", required=True)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    runners = {"local": "{use: local}",
               "flower": "{use: flower, params: {mode: simulation, threads_per_site: 1}}"}
    folder = Path(tempfile.mkdtemp(prefix="flower-sitework-"))
    results = {}
    for label, runner in runners.items():
        results[label] = run_once(args.recipe, args.arm, runner, args.overrides,
                                  folder / label, args.quiet)
        print(f"{label}: the arm took {results[label][2]:.1f} s", flush=True)
    (local_tasks, local_m, _), (flower_tasks, flower_m, _) = results["local"], results["flower"]
    same = all(local_m[k] == flower_m[k] for k in ("accuracy", "auc", "bytes_to_server"))
    print(f"\n{args.recipe}, arm {args.arm}, {' '.join(args.overrides)}")
    print(f"same accuracy, AUC and bytes under both runners: {same}")
    print("| task | runner | site work (slowest site) | each site, arrival s |")
    print("|---|---|---:|---|")
    for task in local_tasks:
        for label, tasks in (("local", local_tasks), ("flower", flower_tasks)):
            sites = tasks.get(task, {})
            each = ", ".join(f"{sid}: {s:.1f}" for sid, s in sorted(sites.items()))
            print(f"| {task} | {label} | {max(sites.values(), default=0):.1f} s | {each} |")
    if not same:
        raise SystemExit("the runners' figures differ")


if __name__ == "__main__":
    main()
