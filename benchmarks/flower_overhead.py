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
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from synthlearn.api import SiteEnv, SiteTask
from synthlearn.arms.centralized import CentralizedConfig, share_raw_images
from synthlearn.data.phantom import PhantomConfig, PhantomDataset
from synthlearn.sitework.runner import LocalRunner
from synthlearn.sitework.site_file import site_payload
from synthlearn.testing import tiny_sites
from synthlearn_flower import FlowerConfig
from synthlearn_flower.runner import FlowerRunner

BIN = Path(sys.executable).parent
SIDE = 64


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for(predicate, seconds: float, what: str) -> float:
    start = time.perf_counter()
    while not predicate():
        if time.perf_counter() - start > seconds:
            raise SystemExit(f"error: {what} did not happen within {seconds:g} s")
        time.sleep(0.1)
    return time.perf_counter() - start


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
    env = os.environ | {"FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1",
                        "FLWR_LOG_LEVEL": "WARNING", "OMP_NUM_THREADS": "1",
                        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    processes: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for site in sites:
            (folder / f"site-{site.id}.safetensors").write_bytes(
                site_payload(site, dataset.class_names, dataset.attributes, "benchmark",
                             0).to_bytes())
        port = _free_port()
        (folder / "link").mkdir()
        try:
            start = time.perf_counter()
            processes.append(subprocess.Popen(
                [str(BIN / "flower-superlink"), "--insecure", "--isolation", "process",
                 "--port", str(port), "--disable-runtime-dependency-installation"],
                env=env | {"FLWR_HOME": str(folder / "link")}, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, start_new_session=True))

            def link_up() -> bool:
                with socket.socket() as sock:
                    return sock.connect_ex(("127.0.0.1", port)) == 0

            link_s = _wait_for(link_up, 60, "the SuperLink starting")
            for site in sites:
                processes.append(subprocess.Popen(
                    [str(BIN / "synthlearn-node"), "--site-file",
                     str(folder / f"site-{site.id}.safetensors"), "--superlink",
                     f"127.0.0.1:{port}", "--insecure", "--quiet"], env=env,
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    start_new_session=True))
            runner = FlowerRunner(FlowerConfig(superlink=f"127.0.0.1:{port}", insecure=True,
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
            for process in processes:
                if process.poll() is None:
                    os.killpg(process.pid, signal.SIGTERM)
            for process in processes:
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
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
