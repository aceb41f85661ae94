"""``synthlearn-node``: a hospital's node. It holds one site's data and runs only the site
tasks that the synthlearn plugins installed *here* register.

    synthlearn-node --site-file sites/site-0.safetensors --superlink link.example:9093 \
        --root-certificates ca.pem [--auth-key node_key]
    synthlearn-node --site-file sites/site-0.safetensors --superlink 127.0.0.1:9093 --insecure

It starts a Flower SuperNode (``flower-supernode --isolation process``: the SuperNode
starts no executor of its own and never installs the bundle the server sends) and
serves its ClientApp tasks itself, on the SuperNode's local Runtime API: each message is
answered in this process, ``query.hello`` with the site's id, size and data fingerprint,
``query.site_task`` by ``synthlearn.sitework.remote.run_task_request`` (a registered
function, a strict config, components from this node's plugins, this site only).
Anything else, and any failure, is an error reply of one line. Ctrl-C or SIGTERM stops
the SuperNode and the node. Uses Flower modules outside its documented API (pinned;
docs/design/flower.md).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from synthlearn import SynthlearnError, __version__
from synthlearn.api import SiteCache, SiteFile, load_plugins, read_site_file, run_task_request

from synthlearn_flower.config import is_loopback

EXIT_USER_ERROR = 2
#: Seconds between asks for a task when none is waiting.
POLL_S = 0.2
#: Environment that keeps Flower quiet and off the network (no telemetry, no update check).
FLOWER_ENV = {"FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1",
              "FLWR_LOG_LEVEL": "WARNING"}


class Stop(Exception):
    """SIGTERM arrived."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="synthlearn-node",
        description="Run a hospital's synthlearn node: one site's data, only the site "
                    "tasks installed here, reached through a Flower SuperLink.")
    parser.add_argument("--site-file", required=True,
                        help="this site's data (synthlearn sites export)")
    parser.add_argument("--superlink", required=True, help="HOST:PORT of the SuperLink")
    parser.add_argument("--root-certificates",
                        help="PEM file of the CA that signed the SuperLink's certificate")
    parser.add_argument("--auth-key", help="this node's private key, registered at the "
                                           "SuperLink (flwr supernode register)")
    parser.add_argument("--insecure", action="store_true",
                        help="plain HTTP: only with a SuperLink on this machine")
    parser.add_argument("--runtime-port", type=int, default=0,
                        help="local port of the SuperNode's Runtime API (default: a free one)")
    parser.add_argument("--cache", help="folder where this site keeps expensive work "
                                        "(fitted generators) between runs")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        site_file = read_site_file(args.site_file)
        plugins = load_plugins()
        plugins.raise_problems()
        if args.insecure and not is_loopback(args.superlink):
            raise SynthlearnError(f"--insecure sends this site's results in plain text: only "
                                  f"for a SuperLink on this machine, not {args.superlink}")
        if not args.insecure and args.root_certificates is None:
            _say(args, "TLS with the system's CAs (--root-certificates for your own CA)")
        store = SiteCache(Path(args.cache)) if args.cache else None
        port = args.runtime_port or _free_port()
        with SuperNode(args, port) as supernode:
            _say(args, f"site {site_file.site.id} ({len(site_file.site.data)} images) "
                       f"connected through {args.superlink}; serving tasks")
            serve(f"127.0.0.1:{port}", site_file, plugins, store, supernode,
                  quiet=args.quiet)
    except SynthlearnError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        return 130
    except Stop:
        return 143
    return 0


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Stop()


def _say(args: argparse.Namespace, text: str) -> None:
    if not args.quiet:
        print(f"synthlearn-node: {text}", file=sys.stderr, flush=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SuperNode:
    """The Flower SuperNode process this node runs beside it (with its own Flower home,
    removed at the end)."""

    def __init__(self, args: argparse.Namespace, port: int) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="synthlearn-node-"))
        bin_dir = Path(sys.executable).parent
        command = [str(bin_dir / "flower-supernode"), "--isolation", "process",
                   "--superlink", args.superlink, "--host", "127.0.0.1", "--port", str(port)]
        if args.insecure:
            command.append("--insecure")
        if args.root_certificates:
            command += ["--root-certificates", args.root_certificates]
        if args.auth_key:
            command += ["--auth-supernode-private-key", args.auth_key]
        env = {**os.environ, **FLOWER_ENV, "FLWR_HOME": str(self.home),
               "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
        self.log = open(self.home / "supernode.log", "wb")  # noqa: SIM115 (closed in stop)
        # in this node's process group: whatever stops the node stops its SuperNode
        self.process = subprocess.Popen(command, env=env, stdout=self.log,
                                        stderr=subprocess.STDOUT)

    def __enter__(self) -> SuperNode:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def failure(self) -> str | None:
        """Why the SuperNode process ended (its last log line), or None while it runs."""
        if self.process.poll() is None:
            return None
        self.log.flush()
        lines = (self.home / "supernode.log").read_text(errors="replace").strip().splitlines()
        return f"the Flower SuperNode stopped (exit {self.process.returncode})" + (
            f": {lines[-1][:300]}" if lines else "")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # a graceful stop unregisters the node at once
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
        shutil.rmtree(self.home, ignore_errors=True)


def serve(runtime: str, site_file: SiteFile, plugins: Any, store: SiteCache | None,
          supernode: SuperNode, *, quiet: bool) -> None:
    """Claim and answer the SuperNode's ClientApp tasks until it stops."""
    from flwr.proto.runtime_pb2 import AcquireTaskRequest
    from flwr.supercore.constant import TaskType

    supervisor = _runtime_client(runtime, None)
    while True:
        failure = supernode.failure()
        if failure is not None:
            raise SynthlearnError(failure)
        try:
            offer = supervisor.AcquireTask(
                AcquireTaskRequest(supported_task_types=[TaskType.CLIENT_APP]))
        except Exception:  # the SuperNode's Runtime API is not up yet, or went away
            time.sleep(POLL_S)
            continue
        if not (offer.HasField("task") and offer.token):
            time.sleep(POLL_S)
            continue
        _answer(runtime, offer.token, site_file, plugins, store, quiet)


def _runtime_client(address: str, token: str | None) -> Any:
    from flwr.supercore.interceptors import (
        RuntimeTokenHttpInterceptor,
        RuntimeVersionHttpInterceptor,
    )
    from flwr.supercore.retry import make_simple_http_retry_invoker
    from flwr.supercore.runtime import RuntimeHttpClient

    interceptors: list[Any] = [RuntimeVersionHttpInterceptor(
        component_name="flower-superexec" if token is None else "flwr-clientapp")]
    if token is not None:
        interceptors.append(RuntimeTokenHttpInterceptor(token))
    return RuntimeHttpClient.from_server_address(
        server_address=address, insecure=True, root_certificates=None,
        interceptors=interceptors, retry_invoker=make_simple_http_retry_invoker())


def _answer(runtime: str, token: str, site_file: SiteFile, plugins: Any,
            store: SiteCache | None, quiet: bool) -> None:
    """One claimed task: read its message (the bundle it came with is never installed or
    imported), answer it, report the task done."""
    from flwr.common.constant import SubStatus
    from flwr.supercore.heartbeat import HeartbeatSender
    from flwr.supernode.runtime.run_clientapp import (
        pull_task_input,
        push_message,
        push_task_output,
    )

    client = _runtime_client(runtime, token)
    # a site task runs for minutes (a generator fit): without a heartbeat the SuperNode
    # takes the task for dead after about a minute (Flower error 8, "ClientApp stopped
    # responding") and the server's run fails
    heartbeat = HeartbeatSender(_task_heartbeat(client))
    heartbeat.start()
    try:
        message, context, _run, _bundle = pull_task_input(client)
        reply, ok = handle(message, site_file, plugins, store, quiet)
        push_message(client, reply, context)
        push_task_output(client, context, SubStatus.COMPLETED if ok else SubStatus.FAILED, "")
    finally:
        heartbeat.stop()
        client.close()


def _task_heartbeat(client: Any) -> Any:
    """A heartbeat for the claimed task: True when the SuperNode heard it (Flower's own
    also signals SIGINT when the task is no longer wanted, which would stop this node;
    here the task finishes and its late reply is dropped by the SuperNode)."""
    from flwr.proto.runtime_pb2 import SendTaskHeartbeatRequest

    def beat() -> bool:
        try:
            client.SendTaskHeartbeat(SendTaskHeartbeatRequest())
        except Exception:  # the SuperNode is busy or gone: the sender retries
            return False
        return True

    return beat


def handle(message: Any, site_file: SiteFile, plugins: Any, store: SiteCache | None,
           quiet: bool) -> tuple[Any, bool]:
    """The reply to one message, and whether it succeeded; never raises."""
    from flwr.app import Message
    from flwr.app.error import Error
    from flwr.common.constant import ErrorCode

    from synthlearn_flower.messages import HELLO, SITE_TASK, content, read

    kind = message.metadata.message_type
    site = site_file.site
    try:
        if kind == HELLO:
            facts = {"site": site.id, "n": len(site.data),
                     "fingerprint": site.data.fingerprint(), "synthlearn": __version__}
            return Message(content(facts), reply_to=message), True
        if kind != SITE_TASK:
            raise SynthlearnError(f"synthlearn-node answers {HELLO} and {SITE_TASK}, not "
                                  f"{kind}")
        request, inbound = read(message)
        task = request.get("task") if isinstance(request.get("task"), dict) else {}
        start = time.perf_counter()
        if not quiet:
            print(f"synthlearn-node: site {site.id}: task {task.get('name')!r} "
                  f"({task.get('fn')})", file=sys.stderr, flush=True)
        blob = run_task_request(request, inbound, site_file, plugins, store=store,
                                progress=not quiet)
        if not quiet:
            print(f"synthlearn-node: site {site.id}: done in "
                  f"{time.perf_counter() - start:.1f} s, {len(blob):,} bytes back",
                  file=sys.stderr, flush=True)
        return Message(content({"bytes": len(blob)}, blob), reply_to=message), True
    except (SynthlearnError, ValueError) as exc:
        reason = " ".join(str(exc).split())
    except Exception as exc:  # the site task itself failed: its traceback stays here
        traceback.print_exc(file=sys.stderr)
        reason = f"{type(exc).__name__}: " + " ".join(str(exc).split())
    if not quiet:
        print(f"synthlearn-node: site {site.id}: refused or failed: {reason}",
              file=sys.stderr, flush=True)
    return Message(Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=reason[:2000]),
                   reply_to=message), False


if __name__ == "__main__":
    sys.exit(main())
