"""Run one recipe over several seeds and print every arm's mean and spread.

    .venv/bin/python benchmarks/seeds.py templates/recipes/catphishing.yaml --seeds 0 1 2 \
        [--set arms[2].generator.params.steps=2000] [--keep runs/catphishing-seeds] \
        [--arms centralized synthetic-gan]

Each seed is a full ``synthlearn run`` (same recipe, ``seed`` overridden; the site-output
cache is used if the recipe has one). Prints, per arm, accuracy / balanced accuracy / AUC
as mean ± standard deviation (ddof=1) over the seeds, every seed's accuracy, bytes to the
server and wall time (and ε when an arm trained under DP); then the same table as
Markdown for docs/results.md, and for the
arms that made synthetic images their fidelity and memorisation. With
``--keep`` each seed's run directory is kept there, and a seed whose run directory is
already there is read, not re-run: seeds can run as parallel processes (e.g.
``OMP_NUM_THREADS=1 ... --seeds 1`` in each) and one last call prints the table. The
arms of one seed can run as parallel processes too (``--arms``, a ``--keep`` each, one
site cache): ``--read DIR ...`` adds the arms that those directories' runs of the same
seeds hold, so one call prints them together.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import attrs
from synthlearn.cli import run_as_command
from synthlearn.execution.run import Run
from synthlearn.loading.manager import load_plugins
from synthlearn.recipe import Recipe, load_recipe

METRICS = ("accuracy", "balanced_accuracy", "auc")


def _spread(values: list[float]) -> str:
    mean = statistics.fmean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.3f} ± {sd:.3f}"


def _only(recipe: Recipe, names: list[str]) -> Recipe:
    """The recipe with only the named arms (an unknown name stops the benchmark)."""
    known = [arm.name for arm in recipe.arms]
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise SystemExit(f"error: no arm named {', '.join(unknown)} (arms: {', '.join(known)})")
    return attrs.evolve(recipe, arms=tuple(a for a in recipe.arms if a.name in names))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--arms", nargs="+", metavar="NAME",
                        help="run only these arms of the recipe (by name)")
    parser.add_argument("--keep", help="directory to keep each seed's run directory in")
    parser.add_argument("--read", nargs="+", default=[], metavar="DIR",
                        help="more --keep directories whose runs of these seeds add arms")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()

    plugins = load_plugins()
    plugins.raise_problems()
    rows: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(args.keep) if args.keep else Path(tmp)
        for seed in args.seeds:
            out = base / f"seed-{seed}"
            start = time.perf_counter()
            if not (out / "metrics.json").exists():  # --keep: a finished seed is reused
                recipe = load_recipe(args.recipe, plugins, [*args.overrides, f"seed={seed}"])
                if args.arms:
                    recipe = _only(recipe, args.arms)
                Run(recipe, plugins, quiet=args.quiet).execute(str(out))
            arms = _seed_arms([out, *(Path(d) / f"seed-{seed}" for d in args.read)])
            print(f"seed {seed}: {time.perf_counter() - start:.0f} s  " + "  ".join(
                f"{a['name']} {a['metrics']['accuracy']:.3f}" for a in arms), flush=True)
            for arm in arms:
                rows.setdefault(arm["name"], []).append(arm)

    with_val = any(a.get("validation") for arms in rows.values() for a in arms)
    with_dp = any((a.get("privacy") or {}).get("epsilon") is not None
                  for arms in rows.values() for a in arms)
    header = ["arm", *(["ε"] if with_dp else []), "accuracy", "balanced acc.", "AUC",
              *(["val accuracy", "val AUC"] if with_val else []), "accuracy per seed",
              "bytes to server", "bytes to sites", "wall s"]
    table = []
    for name, arms in rows.items():
        cells = [name]
        if with_dp:  # the largest over the seeds: the guarantee every seed's run met
            spent = [a["privacy"]["epsilon"] for a in arms
                     if (a.get("privacy") or {}).get("epsilon") is not None]
            cells.append(f"{max(spent):.2f}" if spent else "∞")
        for key in METRICS:
            values = [a["metrics"][key] for a in arms if a["metrics"][key] is not None]
            cells.append(_spread(values) if values else "n/a")
        for key in ("accuracy", "auc") if with_val else ():
            values = [a["validation"][key] for a in arms
                      if (a.get("validation") or {}).get(key) is not None]
            cells.append(_spread(values) if values else "n/a")
        cells.append(", ".join(f"{a['metrics']['accuracy']:.3f}" for a in arms))
        for key in ("bytes_to_server", "bytes_to_sites"):
            cells.append(f"{statistics.fmean(a['metrics'][key] for a in arms):,.0f}")
        cells.append(f"{statistics.fmean(a['metrics']['wall_s'] for a in arms):.0f}")
        table.append(cells)
    print(f"\nrecipe {args.recipe}, seeds {args.seeds}, overrides {args.overrides or 'none'}")
    _print_table(header, table)
    synthetic = synthetic_table(rows)
    if synthetic:
        print("\nsynthetic images (pooled fidelity against the test split; memorisation "
              "per site, pixel space: the worst site's near-copy share and the mean "
              "closer-to-member share, 0.5 = no leak)")
        _print_table(["arm", "fd", "precision", "recall", "realism",
                      "near copies, worst site", "closer to members"], synthetic)
    screened = screening_table(rows)
    if screened:
        print("\nfilters at the sites (over the sites: candidates drawn, rejected per "
              "reason, left out after the last redraw; the reid filter's calibration)")
        _print_table(["arm", "drawn", "rejected", "left out", "false-match rate"], screened)
    attacks = attack_table(rows)
    if attacks:
        print("\nmembership audit (AUC and TPR at 1% FPR against the arm's control model)")
        _print_table(["arm", "attack", "AUC", "control AUC", "TPR@1%", "control TPR@1%"],
                     attacks)


def _seed_arms(run_dirs: list[Path]) -> list[dict]:
    """The arms of one seed's runs (the first run directory's, then the arms the others
    add); an arm name found twice, or a run directory without metrics, stops it."""
    arms: list[dict] = []
    for run_dir in run_dirs:
        path = run_dir / "metrics.json"
        if not path.is_file():
            raise SystemExit(f"error: {path}: no such file (has that run finished?)")
        for arm in json.loads(path.read_text())["arms"]:
            if any(a["name"] == arm["name"] for a in arms):
                raise SystemExit(f"error: {path}: arm {arm['name']!r} is in an earlier run "
                                 "directory too")
            arms.append(arm)
    return arms


def _print_table(header: list[str], rows: list[list[str]]) -> None:
    print("| " + " | ".join(header) + " |")
    print("| --- | " + " | ".join("---:" for _ in header[1:]) + " |")
    for cells in rows:
        print("| " + " | ".join(cells) + " |")


def synthetic_table(rows: dict[str, list[dict]]) -> list[list[str]]:
    """Per arm that made synthetic images: fidelity and memorisation, mean ± sd over the
    seeds that measured them."""
    table = []
    for name, arms in rows.items():
        pooled = [a["fidelity"]["pooled"] for a in arms if a.get("fidelity")]
        sites = [a["memorisation"]["sites"] for a in arms if a.get("memorisation")]
        if not pooled:
            continue
        cells = [name] + [_spread([p[key] for p in pooled])
                          for key in ("fd", "precision", "recall")]
        realism = [p["realism"] for p in pooled if p.get("realism") is not None]
        cells.append(_spread(realism) if realism else "n/a")
        worst = [max(s["pixel"]["near_copies"] for s in run) for run in sites if run]
        closer = [statistics.fmean(s["pixel"]["closer_to_members"] for s in run)
                  for run in sites if run]
        cells += [_spread(worst) if worst else "n/a", _spread(closer) if closer else "n/a"]
        table.append(cells)
    return table


def screening_table(rows: dict[str, list[dict]]) -> list[list[str]]:
    """Per arm whose sites ran a filter: what it drew and rejected, summed over the sites,
    mean over the seeds."""
    table = []
    for name, arms in rows.items():
        runs = [[site["screening"] for site in (a.get("details") or {}).get("per_site", [])
                 if "screening" in site] for a in arms]
        runs = [run for run in runs if run]
        if not runs:
            continue
        reasons = sorted({r for run in runs for site in run for r in site["rejected"]})
        def total(reason: str, runs: list = runs) -> float:
            return statistics.fmean(sum(site["rejected"].get(reason, 0) for site in run)
                                    for run in runs)

        rejected = ", ".join(f"{total(r):,.0f} {r}" for r in reasons) or "0"
        # a chain's parts prefix their facts (reid.false_match_rate)
        false_match = [value for run in runs for site in run
                       for key, value in site["about"].items()
                       if key.split(".")[-1] == "false_match_rate"
                       and isinstance(value, (int, float))]
        table.append([
            name,
            f"{statistics.fmean(sum(site['drawn'] for site in run) for run in runs):,.0f}",
            rejected,
            f"{statistics.fmean(sum(site['unfilled'] for site in run) for run in runs):,.0f}",
            _spread(false_match) if false_match else "n/a"])
    return table


def attack_table(rows: dict[str, list[dict]]) -> list[list[str]]:
    """Per arm and attack: the attack's figures beside its control's, mean ± sd over the
    seeds that ran it."""
    table = []
    for name, arms in rows.items():
        names = sorted({attack for a in arms for attack in (a.get("attacks") or {})})
        for attack in names:
            entries = [a["attacks"][attack] for a in arms if attack in (a.get("attacks") or {})]
            cells = [name, attack]
            for key in ("auc", "control_auc", "tpr_at_fpr_0_01", "control_tpr_at_fpr_0_01"):
                values = [e[key] for e in entries if isinstance(e.get(key), (int, float))]
                cells.append(_spread(values) if values else "n/a")
            table.append(cells)
    return table


if __name__ == "__main__":  # errors and interrupts reported as `synthlearn run` does
    sys.exit(run_as_command(lambda: main() or 0))
