"""Time the quickstart recipe end to end, as a newcomer's first run sees it, and print the figures.

    .venv/bin/python benchmarks/quickstart_time.py [--recipe templates/recipes/quickstart.yaml]
                                                   [--cache fresh|off] [--set KEY=VALUE ...]
                                                   [--out DIR]

Prints the total wall time (process start to finished run directory, imports included),
each arm's accuracy, AUC, loss-attack membership AUC (with its control), bytes moved and
wall time, and the torch thread count, so the figure can be compared with the "about
two minutes on a 2-core CPU" target of the quickstart.

``--cache fresh`` (the default) runs with an empty cache in a temporary directory: what
``make demo`` costs on a clean clone, where arms that share a site's generator fit it
once. ``--cache off`` turns the cache off, so every arm redoes its own site work.
``--out DIR`` keeps the run directory (report.md, metrics.json, figures) there.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

START = time.perf_counter()

import torch  # noqa: E402
from synthlearn import hookimpl  # noqa: E402
from synthlearn.execution.run import Run  # noqa: E402
from synthlearn.loading.manager import load_plugins  # noqa: E402
from synthlearn.recipe import load_recipe  # noqa: E402
from synthlearn.report.markdown import human_bytes  # noqa: E402


class ArmClock:
    """Records the process CPU time each arm took, its audit included (an event plugin)."""

    def __init__(self) -> None:
        self.last = time.process_time()
        self.cpu_s: dict[str, float] = {}

    @hookimpl
    def synthlearn_on_arm_end(self, arm: str, metrics: dict[str, Any]) -> None:
        """Charge the CPU time since the previous arm ended to ``arm``."""
        now = time.process_time()
        self.cpu_s[arm] = now - self.last
        self.last = now


def _num(value: Any, digits: int = 3) -> str:
    """A number with ``digits`` decimals, or "n/a" for a missing one."""
    return "n/a" if value is None else f"{float(value):.{digits}f}"


def _membership(arm: dict[str, Any]) -> str:
    """The loss attack's AUC and its control's, e.g. "0.521 (0.498)"."""
    loss = (arm.get("attacks") or {}).get("loss") or {}
    return f"{_num(loss.get('auc'))} ({_num(loss.get('control_auc'))})"


def print_table(metrics: dict[str, Any], cpu_s: dict[str, float]) -> None:
    """One line per arm: accuracy, AUC, membership AUC (control), bytes both ways, the
    arm's wall time (training and scoring) and its CPU time (audit included)."""
    print(f"{'arm':<14}{'accuracy':>9}{'AUC':>7}{'membership AUC (control)':>26}"
          f"{'bytes (to server + to sites)':>30}{'wall s':>8}{'CPU s':>8}")
    for arm in metrics["arms"]:
        m = arm["metrics"]
        moved = int(m.get("bytes_to_server") or 0) + int(m.get("bytes_to_sites") or 0)
        print(f"{arm['name']:<14}{_num(m.get('accuracy')):>9}{_num(m.get('auc')):>7}"
              f"{_membership(arm):>26}{human_bytes(moved):>30}{_num(m.get('wall_s'), 1):>8}"
              f"{_num(cpu_s.get(arm['name']), 1):>8}")


def main() -> None:
    """Run the recipe once in a temporary directory and print the timings."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="templates/recipes/quickstart.yaml")
    parser.add_argument("--cache", choices=("fresh", "off"), default="fresh")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a recipe override, as for `synthlearn run --set`")
    parser.add_argument("--out", default=None, help="keep the run directory here")
    args = parser.parse_args()
    plugins = load_plugins()
    plugins.raise_problems()
    clock = ArmClock()
    plugins.manager.register(clock, name="quickstart-clock")
    with tempfile.TemporaryDirectory() as tmp:
        cache = "null" if args.cache == "off" else str(Path(tmp) / "cache")
        recipe = load_recipe(args.recipe, plugins, [f"output.cache={cache}", *args.set])
        out = Path(args.out) if args.out else Path(tmp) / "run"
        Run(recipe, plugins, quiet=True).execute(str(out))
        metrics = json.loads((out / "metrics.json").read_text())
    total = time.perf_counter() - START
    print(f"recipe: {args.recipe}  cache: {args.cache}  device: {recipe.model.config.device}  "
          f"torch threads: {torch.get_num_threads()}")
    print_table(metrics, clock.cpu_s)
    cpu = time.process_time()
    print(f"total wall time (imports, data, all arms, audits, report): {total:.1f} s; "
          f"CPU time {cpu:.1f} s (on a busy machine the wall time overstates an idle run: "
          f"CPU time / threads bounds it from below)")


if __name__ == "__main__":
    main()
