"""What Flower costs per site task: a real SuperLink and synthlearn nodes on localhost
against the in-process local runner, on a task whose payload is ``--payload-mb`` MB.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/flower_overhead.py [--payload-mb 20]
        [--sites 1] [--repeats 5]

Each site holds phantom images of 64x64 sized so that sending them raw (the
``centralized`` arm's site task, ``share_raw_images``) is a payload of about
``--payload-mb`` MB. The benchmark writes each site's file, starts a SuperLink
(``--isolation process``, plain HTTP on localhost) and one ``synthlearn-node`` per site,
then times: the SuperLink and the nodes starting, the runner's first task (submitting a
Flower run, claiming its ServerApp task, waiting for and checking the nodes), and
``--repeats`` further tasks, each against the same task through the local runner. It
prints the seconds and the per-task overhead (Flower minus local). Needs the
synthlearn-flower plugin.
"""

from __future__ import annotations

import argparse
import statistics
import time

from synthlearn.api import SiteEnv, SiteTask
from synthlearn.arms.centralized import CentralizedConfig, share_raw_images
from synthlearn.data.phantom import PhantomConfig, PhantomDataset
from synthlearn.sitework.runner import LocalRunner
from synthlearn.sitework.site_file import site_payload
from synthlearn.testing import tiny_sites
from synthlearn_flower import FlowerConfig
from synthlearn_flower.local import LocalFederation
from synthlearn_flower.runner import FlowerRunner

SIDE = 64


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payload-mb", type=float, default=20.0)
    parser.add_argument("--sites", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    per_site = max(2, round(args.payload_mb * 1e6 / (SIDE * SIDE)))
    dataset = PhantomDataset(PhantomConfig(n_train=per_site * args.sites, n_test=20,
                                           size=SIDE)).load(0)
    sites = tiny_sites(dataset, args.sites)
    start = time.perf_counter()
    federation = LocalFederation()  # a SuperLink on localhost, up when this returns
    link_s = time.perf_counter() - start
    try:
        for site in sites:
            path = federation.folder / f"site-{site.id}.safetensors"
            path.write_bytes(site_payload(site, dataset.class_names, dataset.attributes,
                                          "benchmark", 0).to_bytes())
            federation.add_node(f"site-{site.id}", path, threads=1, quiet=True)
        runner = FlowerRunner(FlowerConfig(superlink=federation.address, insecure=True,
                                           connect_timeout_s=120))
        local = LocalRunner()
        task = SiteTask("share_raw_images", share_raw_images, CentralizedConfig(),
                        "raw images")
        envs = {s.id: SiteEnv(seed=s.id, model_component=None,
                              num_classes=dataset.num_classes, in_chans=1,
                              image_size=(SIDE, SIDE), progress=False,
                              attributes=dataset.attributes) for s in sites}
        first = time.perf_counter()
        payload = dict(runner.execute(task, sites, envs, {}))
        first_s = time.perf_counter() - first
        size = sum(len(b) for b in payload.values())
        flower_s, local_s = [], []
        for _ in range(args.repeats):
            t = time.perf_counter()
            remote = dict(runner.execute(task, sites, envs, {}))
            flower_s.append(time.perf_counter() - t)
            t = time.perf_counter()
            here = dict(local.execute(task, sites, envs, {}))
            local_s.append(time.perf_counter() - t)
            assert remote == here, "the node's payload differs from the local one"
        total_s = time.perf_counter() - start
        runner.close()
    finally:
        federation.stop()
    flower, here = statistics.median(flower_s), statistics.median(local_s)
    print(f"flower overhead, {args.sites} site(s), payload {size / 1e6:.1f} MB in all "
          f"({per_site} images of {SIDE}x{SIDE} per site), {args.repeats} repeats")
    print(f"SuperLink up after {link_s:.1f} s")
    print(f"first task (submit the run, claim it, wait for and check the nodes, the task): "
          f"{first_s:.1f} s")
    print(f"per task, median: flower {flower:.2f} s, local runner {here:.2f} s, "
          f"overhead {flower - here:.2f} s ({size / 1e6 / flower:.1f} MB/s through Flower)")
    print(f"every flower task: {', '.join(f'{s:.2f}' for s in flower_s)} s; "
          f"total {total_s:.1f} s")


if __name__ == "__main__":
    main()
