"""A Flower federation on this machine: a SuperLink and one ``synthlearn-node`` process
per site, plain HTTP on localhost. The runner's ``mode: simulation`` starts one for a
run; the tests and ``benchmarks/flower_overhead.py`` start one the same way.

Every process is real (the same SuperLink and nodes as a deployment), so sites work in
parallel, one process each, with ``threads`` torch threads per node.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import attrs
from synthlearn import SynthlearnError

from synthlearn_flower.node import FLOWER_ENV

BIN = Path(sys.executable).parent
#: Seconds a process of the federation gets to stop after SIGTERM before SIGKILL (a
#: SuperLink still serving a finished run's connections can take 20 s to stop itself).
STOP_GRACE_S = 5.0


def free_port() -> int:
    """A TCP port on localhost no one listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@attrs.frozen
class TlsFiles:
    """PEM files for a SuperLink with TLS: the CA's certificate (what nodes and the
    runner trust) and the SuperLink's certificate and private key."""

    ca: Path
    certificate: Path
    key: Path


class LocalFederation:
    """A SuperLink (``--isolation process``) and ``synthlearn-node`` processes, their logs
    and site files in ``folder`` (a temporary one, removed by ``stop``, when None). Plain
    HTTP unless ``tls`` gives the SuperLink its certificate: then the nodes trust
    ``tls.ca`` (as the runner must: ``root_certificates``)."""

    def __init__(self, folder: Path | None = None, *, startup_s: float = 60.0,
                 tls: TlsFiles | None = None) -> None:
        self.owned = folder is None
        self.folder = Path(tempfile.mkdtemp(prefix="synthlearn-flower-")) if folder is None \
            else Path(folder)
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.tls = tls
        self.nodes: dict[str, subprocess.Popen] = {}
        self._logs: list = []
        (self.folder / "link").mkdir(parents=True, exist_ok=True)
        security = ["--insecure"] if tls is None else [
            "--ssl-ca-certfile", str(tls.ca), "--ssl-certfile", str(tls.certificate),
            "--ssl-keyfile", str(tls.key)]
        self.link = self._start("superlink", [
            str(BIN / "flower-superlink"), *security, "--isolation", "process",
            "--port", str(self.port), "--disable-runtime-dependency-installation"],
            {"FLWR_HOME": str(self.folder / "link")})
        deadline = time.monotonic() + startup_s
        while not self._listening():
            if self.link.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise SynthlearnError(f"the local SuperLink did not start: "
                                      f"{self.log('superlink')[-300:]}")
            time.sleep(0.2)

    def _listening(self) -> bool:
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", self.port)) == 0

    def _start(self, name: str, command: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = open(self.folder / f"{name}.log", "wb")  # noqa: SIM115 (closed by stop)
        self._logs.append(log)
        full_env = {**os.environ, **FLOWER_ENV, **env,
                    "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=full_env,
                                start_new_session=True)

    def add_node(self, name: str, site_file: Path, *, threads: int = 1,
                 quiet: bool = False) -> subprocess.Popen:
        """Start ``synthlearn-node`` for ``site_file`` with torch on ``threads`` threads."""
        security = ["--insecure"] if self.tls is None else [
            "--root-certificates", str(self.tls.ca)]
        command = [str(BIN / "synthlearn-node"), "--site-file", str(site_file),
                   "--superlink", self.address, *security] + (["--quiet"] if quiet else [])
        process = self._start(name, command, {"OMP_NUM_THREADS": str(threads),
                                              "MKL_NUM_THREADS": str(threads)})
        self.nodes[name] = process
        return process

    def log(self, name: str) -> str:
        path = self.folder / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        """Stop every node, then the SuperLink (SIGTERM, then SIGKILL after
        ``STOP_GRACE_S``: nothing of a federation on this machine outlives it)."""
        processes = [*self.nodes.values(), self.link]
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        for log in self._logs:
            log.close()
        if self.owned:
            shutil.rmtree(self.folder, ignore_errors=True)
