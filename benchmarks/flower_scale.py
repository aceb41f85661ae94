"""How bytes and wall time grow with the number of sites: the same small recipe on
phantom data at several site counts, each through the local runner and through the
flower runner's ``mode: simulation`` (a real SuperLink and one synthlearn-node process
per site on this machine).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/flower_scale.py [--sites 3 10 20]
        [--per-site 60] [--keep DIR]

Every site holds ``--per-site`` phantom images of 16x16 (the dataset grows with the
sites, so each site's work stays the same), timm's ``test_resnet`` for 1 epoch, and two
arms: ``fedavg`` (2 rounds of 1 local epoch) and ``synthetic`` (a GAN of 30 steps fitted
at each site, its generator sent to the server). Each run is ``synthlearn run RECIPE
--quiet`` in a subprocess; the script prints, per site count and runner, each arm's
wall time and bytes (read from the run's metrics.json), checks that both runners give
the same accuracy and bytes, and the whole run's wall time. Needs the synthlearn-flower,
-fedavg and -gan plugins.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from synthlearn.testing import small_recipe

BIN = Path(sys.executable).parent
ARMS = [{"use": "fedavg", "params": {"rounds": 2, "local_epochs": 1}},
        {"name": "synthetic", "use": "synthetic", "params": {"share": "generator"},
         "generator": {"use": "gan", "params": {"steps": 30}}}]


def recipe(sites: int, per_site: int, runner: dict[str, Any]) -> dict[str, Any]:
    """The benchmark's recipe for ``sites`` sites of ``per_site`` images each."""
    out = small_recipe(arms=ARMS, runner=runner)
    out["name"] = f"scale-{sites}"
    out["data"]["params"].update({"n_train": sites * per_site, "n_test": 200})
    out["sites"]["count"] = sites
    out["model"]["params"]["epochs"] = 1
    out["output"] = {"dir": "runs", "cache": None}
    return out


def run(folder: Path, name: str, body: dict[str, Any]) -> tuple[dict[str, Any], float]:
    """``synthlearn run`` on ``body``; the metrics and the command's wall time."""
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(body))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "FLWR_TELEMETRY_ENABLED": "0", "FLWR_LOG_LEVEL": "WARNING",
           "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    start = time.perf_counter()
    done = subprocess.run([str(BIN / "synthlearn"), "run", str(path), "--out",
                           str(folder / name), "--quiet"], capture_output=True, text=True,
                          env=env, timeout=3600)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{name}: synthlearn run failed: {done.stderr.strip()[-600:]}")
    return json.loads((folder / name / "metrics.json").read_text()), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, nargs="+", default=[3, 10, 20])
    parser.add_argument("--per-site", type=int, default=60)
    parser.add_argument("--keep", type=Path, default=None,
                        help="write the runs here (default: a temporary folder)")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="flower-scale-"))
    folder.mkdir(parents=True, exist_ok=True)
    runners = {"local": {"use": "local"},
               "flower": {"use": "flower", "params": {"mode": "simulation",
                                                      "threads_per_site": 1,
                                                      "connect_timeout_s": 600}}}
    rows = []
    for n in args.sites:
        seen: dict[str, Any] = {}
        for label, runner in runners.items():
            metrics, wall = run(folder, f"{label}-{n}", recipe(n, args.per_site, runner))
            arms = {arm["name"]: arm["metrics"] for arm in metrics["arms"]}
            figures = {name: (arm["accuracy"], arm["auc"], arm["bytes_to_server"],
                              arm["bytes_to_sites"]) for name, arm in arms.items()}
            if seen and seen != figures:
                sys.exit(f"{n} sites: the flower runner's figures {figures} differ from "
                         f"the local runner's {seen}")
            seen = figures
            for name, arm in arms.items():
                rows.append((n, label, name, arm["wall_s"], arm["bytes_to_server"],
                             arm["bytes_to_sites"]))
            rows.append((n, label, "(whole command)", wall, None, None))
            print(f"{n} sites, {label}: {wall:.1f} s", flush=True)
    print(f"\n{args.per_site} phantom images of 16x16 per site; runs in {folder}")
    print("| sites | runner | arm | wall s | bytes to server | bytes to sites |")
    print("|---:|---|---|---:|---:|---:|")
    for n, label, name, wall, up, down in rows:
        up_text = "" if up is None else f"{up:,}"
        down_text = "" if down is None else f"{down:,}"
        print(f"| {n} | {label} | {name} | {wall:.1f} | {up_text} | {down_text} |")


if __name__ == "__main__":
    main()
