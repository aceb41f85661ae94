"""How much of a generator's memorisation a synthetic-image filter removes.

For each site: load the site's file (``synthlearn sites export``) and a generator the site
fitted (its payload, e.g. the ``.safetensors`` of a site-cache entry written by the
synthetic arm's fit), draw ``--n`` candidates with the site's class mix, mark the ones the
memorisation audit counts as near copies (pixel distance to a site image below the
``0.01`` quantile of the site images' own nearest-neighbour distances), fit the filter
on the site's images and screen the candidates. Prints, per site: the near-copy share
of the candidates, the share the filter rejects, how many near copies it caught, the
near-copy share of what it keeps (what the audit would report for the released set)
and the filter's own facts (its ``describe()``); for ``reid`` also the quantiles of the
candidates' best embedding similarity, near copies beside the rest (a filter that sees
near copies as more similar than the rest can be tuned to remove them; one that sees
them alike cannot).

    .venv/bin/python benchmarks/filter_recall.py --sites sites/site-0.safetensors \\
        sites/site-1.safetensors --generators fit-0.safetensors fit-1.safetensors \\
        --generator gan --generator-params '{"steps": 6000, "width": 16}' \\
        --filter reid --filter-params '{"steps": 600}' [--n 900] [--seed 0]

One torch thread (``OMP_NUM_THREADS`` is not needed).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from synthlearn.api import Conditions, ImageData, Payload, load_plugins, read_site_file
from synthlearn.evaluation.memorisation import near_copy_mask
from synthlearn.filters.reid import ReidFilter
from synthlearn.params import make_converter


def build(plugins: Any, kind: str, use: str, params: dict) -> Any:
    """The installed component ``use`` of ``kind`` built from ``params``."""
    registered = plugins.get(kind, use)
    if registered is None:
        raise SystemExit(f"no {kind} named {use!r}: {plugins.describe_names(kind)}")
    config = make_converter().structure(params, registered.spec.config)
    return registered.spec.factory(config)


def quantiles(values: np.ndarray) -> list[float]:
    """The 5, 25, 50, 75 and 95 % quantiles, rounded."""
    if not len(values):
        return []
    return [round(float(q), 3) for q in np.quantile(values, [0.05, 0.25, 0.5, 0.75, 0.95])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sites", nargs="+", required=True, help="site files")
    parser.add_argument("--generators", nargs="+", required=True,
                        help="each site's fitted generator payload, in the same order")
    parser.add_argument("--generator", default="gan")
    parser.add_argument("--generator-params", default="{}")
    parser.add_argument("--filter", default="reid")
    parser.add_argument("--filter-params", default="{}")
    parser.add_argument("--n", type=int, default=900, help="candidates per site")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if len(args.sites) != len(args.generators):
        raise SystemExit("give one generator per site file")
    torch.set_num_threads(1)
    plugins = load_plugins()
    print(f"filter {args.filter} {args.filter_params}; {args.n} candidates per site")
    for index, (site_path, fit_path) in enumerate(zip(args.sites, args.generators,
                                                      strict=True)):
        site = read_site_file(site_path).site
        real = site.data
        generator = build(plugins, "generator", args.generator,
                          json.loads(args.generator_params))
        generator.load(Payload.from_bytes(Path(fit_path).read_bytes(), fit_path), fit_path)
        rng = np.random.default_rng([args.seed, index])
        labels = rng.choice(real.labels, args.n).astype(np.int64)
        images = generator.sample(Conditions(labels=labels,
                                             vectors=np.zeros((args.n, 0), np.float32)),
                                  args.seed + index)
        candidates = ImageData(images=images, labels=labels)
        near, _ = near_copy_mask(images, real.images)
        started = time.monotonic()
        screen = build(plugins, "filter", args.filter, json.loads(args.filter_params))
        screen.fit(real, args.seed + index)
        rejected = np.array([reason is not None for reason in screen.screen(candidates)])
        kept = ~rejected
        print(f"site {site.id} ({len(real)} images): near copies {near.mean():.1%} "
              f"({near.sum()} of {args.n}); rejected {rejected.mean():.1%}; near copies "
              f"caught {(near & rejected).sum()} of {near.sum()}; near-copy share of the "
              f"kept {(near & kept).sum() / max(1, kept.sum()):.2%} "
              f"({time.monotonic() - started:.0f} s)")
        print("  facts", json.dumps({k: round(v, 3) if isinstance(v, float) else v
                                     for k, v in screen.describe().items()}))
        if isinstance(screen, ReidFilter):
            best = screen.best_similarity(candidates)
            print(f"  best similarity, near copies {quantiles(best[near])}; "
                  f"the rest {quantiles(best[~near])}")


if __name__ == "__main__":
    main()
