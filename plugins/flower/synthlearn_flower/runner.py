"""The ``flower`` runner: site work on the hospitals' own nodes, through a SuperLink.

The synthlearn run is the ServerApp of its own Flower run. On the first site task it
submits a run with synthlearn's bundle (code no one runs: ``synthlearn_flower.fab``),
claims the run's ServerApp task on the SuperLink's Runtime API (the SuperLink runs with
``--isolation process``, so no other process does), and keeps it alive with Flower's
heartbeat. It waits for every site's node (``synthlearn-node``) to connect, asks each
``query.hello`` and maps nodes to sites, refusing a node whose site is unknown, doubled,
or holds other images than the recipe's partition gave that site (size and
fingerprint). Each task then goes to every site's node at once as a
``query.site_task`` message, and each reply is yielded as soon as it is pulled: sites
work in parallel, one per node. An error reply, a node that disappears or a task past
``task_timeout_s`` ends the call with ``SiteTaskError`` naming the site. Only bytes
cross: what the node's site task returned, as safetensors, which ``run_sites`` checks
and counts (``bytes_to_server`` is what crossed the wire, the Flower envelope aside).

Uses Flower modules outside its documented API (pinned; docs/design/flower.md).
"""

from __future__ import annotations

import atexit
import hashlib
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from synthlearn import SiteTaskError, SynthlearnError
from synthlearn.api import Site, SiteEnv, SiteTask, site_payload, task_request

from synthlearn_flower.config import FlowerConfig
from synthlearn_flower.local import LocalFederation
from synthlearn_flower.messages import HELLO, SITE_TASK, content, read
from synthlearn_flower.node import FLOWER_ENV

#: Seconds between pulls while replies are outstanding.
PULL_S = 0.2
#: Seconds the SuperLink may take to hand this run its ServerApp task.
CLAIM_S = 30.0


class _Session:
    """One Flower run this process is the ServerApp of, shared by every runner object
    with the same config (a recipe builds one per arm): its grid, heartbeat and the
    site -> node map."""

    def __init__(self) -> None:
        self.grid: Any = None
        self.heartbeat: Any = None
        self.nodes: dict[int, int] = {}
        self.local: LocalFederation | None = None  # mode: simulation
        self.started: set[int] = set()  # sites whose local node was started


_SESSIONS: dict[FlowerConfig, _Session] = {}


class NodeError(Exception):
    """What a site's node answered instead of a result (its one-line reason)."""


class FlowerRunner:
    """Runs site tasks on the sites' Flower SuperNodes (module docstring)."""

    def __init__(self, config: FlowerConfig) -> None:
        self.config = config

    @property
    def _session(self) -> _Session:
        return _SESSIONS.setdefault(self.config, _Session())

    @property
    def _grid(self) -> Any:
        return self._session.grid

    @property
    def _nodes(self) -> dict[int, int]:
        return self._session.nodes

    # -- the Runner contract

    def execute(self, task: SiteTask, sites: list[Site], envs: Mapping[int, SiteEnv],
                inbound: Mapping[int, bytes]) -> Iterator[tuple[int, bytes]]:
        from flwr.app import Message

        self._connect()
        if self.config.mode == "simulation":
            self._start_nodes(sites, envs)
        self._map_sites(sites)
        messages = [Message(content(task_request(task, envs[site.id], site.id),
                                    inbound.get(site.id)),
                            dst_node_id=self._nodes[site.id], message_type=SITE_TASK,
                            ttl=self.config.task_timeout_s)
                    for site in sites]
        ids = list(self._grid.push_messages(messages))
        pending: dict[str, int] = {}
        for site, message_id in zip(sites, ids, strict=True):
            if not message_id:  # refused by the SuperLink: the node is gone
                raise SiteTaskError(site.id, NodeError(
                    f"the SuperLink refused a message to node {self._nodes[site.id]} "
                    "(it is no longer connected)"))
            pending[message_id] = site.id
        deadline = time.monotonic() + self.config.task_timeout_s
        while pending:
            for reply in self._grid.pull_messages(list(pending)):
                site_id = pending.pop(reply.metadata.reply_to_message_id, None)
                if site_id is None:
                    continue
                yield site_id, self._result(reply, site_id)
            if pending and time.monotonic() > deadline:
                site_id = min(pending.values())
                raise SiteTaskError(site_id, TimeoutError(
                    f"no result within task_timeout_s ({self.config.task_timeout_s:g} s)"))
            if pending:
                time.sleep(PULL_S)

    @staticmethod
    def _result(reply: Any, site_id: int) -> bytes:
        if reply.has_error():
            raise SiteTaskError(site_id, NodeError(
                f"{' '.join(str(reply.error.reason).split())} (Flower error "
                f"{reply.error.code})"))
        try:
            _, blob = read(reply)
        except ValueError as exc:
            raise SiteTaskError(site_id, NodeError(f"malformed reply: {exc}")) from None
        if blob is None:
            raise SiteTaskError(site_id, NodeError("the reply holds no payload"))
        return blob

    # -- connecting

    @property
    def _address(self) -> str:
        local = self._session.local
        return self.config.superlink if local is None else local.address

    @property
    def _insecure(self) -> bool:
        return self.config.insecure or self.config.mode == "simulation"

    def _start_nodes(self, sites: list[Site], envs: Mapping[int, SiteEnv]) -> None:
        """mode: simulation: a synthlearn-node process for every site without one, each
        with the site's own file (written here) and its share of the cores."""
        session, local = self._session, self._session.local
        assert local is not None
        threads = self.config.threads_per_site or max(1, (os.cpu_count() or 1) // len(sites))
        for site in sites:
            if site.id in session.started:
                continue
            env = envs[site.id]
            names = [f"class {c}" for c in range(env.num_classes)]
            path = local.folder / f"site-{site.id}.safetensors"
            path.write_bytes(site_payload(site, names, env.attributes, "simulation",
                                          env.seed).to_bytes())
            local.add_node(f"site-{site.id}", path, threads=threads, quiet=not env.progress)
            session.started.add(site.id)

    def _connect(self) -> None:
        """Submit the run and become its ServerApp (once); with mode: simulation, start
        the local SuperLink first."""
        if self._grid is not None:
            return
        if self.config.mode == "simulation" and self._session.local is None:
            self._session.local = LocalFederation()
            atexit.register(self.close)
        os.environ.update({k: v for k, v in FLOWER_ENV.items() if k not in os.environ})
        from flwr.cli.build import build_fab_from_disk
        from flwr.cli.typing import SuperLinkConnection
        from flwr.cli.utils import init_http_client_from_connection
        from flwr.common.serde import fab_to_proto, run_from_proto, user_config_to_proto
        from flwr.proto.control_pb2 import StartRunRequest
        from flwr.proto.runtime_pb2 import AcquireTaskRequest, PullTaskInputRequest
        from flwr.supercore.constant import TaskType
        from flwr.supercore.fab import Fab
        from flwr.supercore.heartbeat import HeartbeatSender, make_task_heartbeat_fn_http
        from flwr.supercore.task_identity import TaskIdentity
        from flwr.superlink.grid import HttpGrid

        address, where = self._address, f"SuperLink {self._address}"
        certificates = None if self._insecure else self._certificates()
        try:
            control = init_http_client_from_connection(SuperLinkConnection(
                name="synthlearn", address=address, insecure=self._insecure,
                root_certificates=self.config.root_certificates))
            bundle = build_fab_from_disk(Path(__file__).parent / "fab")
            control.StartRun(StartRunRequest(
                fab=fab_to_proto(Fab(hashlib.sha256(bundle).hexdigest(), bundle, {})),
                override_config=user_config_to_proto({})))
            token = self._claim(address, certificates, AcquireTaskRequest, TaskType)
            grid = HttpGrid(runtime_api_address=address, insecure=self._insecure,
                            root_certificates=certificates, token=token)
            heartbeat = HeartbeatSender(make_task_heartbeat_fn_http(grid._runtime_client))
            heartbeat.start()
            task_input = grid._runtime_client.PullTaskInput(PullTaskInputRequest())
            TaskIdentity.task_id = task_input.task_id
            TaskIdentity.run_id = task_input.run.run_id
            TaskIdentity.node_id = task_input.context.node_id
            grid.set_run(run_from_proto(task_input.run))
        except SynthlearnError:
            raise
        except Exception as exc:
            raise SynthlearnError(f"cannot start a run: {type(exc).__name__}: "
                                  f"{' '.join(str(exc).split())[:300]}", where=where) from None
        self._session.grid, self._session.heartbeat = grid, heartbeat
        atexit.register(self.close)

    def _certificates(self) -> bytes | None:
        if self.config.root_certificates is None:
            return None
        try:
            return Path(self.config.root_certificates).read_bytes()
        except OSError as exc:
            raise SynthlearnError(f"cannot read: {exc.strerror}",
                                  where=self.config.root_certificates) from None

    def _claim(self, address: str, certificates: bytes | None, request: Any,
               task_type: Any) -> str:
        """The token of this run's ServerApp task, claimed as Flower's executor would."""
        from flwr.supercore.interceptors import RuntimeVersionHttpInterceptor
        from flwr.supercore.retry import make_simple_http_retry_invoker
        from flwr.supercore.runtime import RuntimeHttpClient

        client = RuntimeHttpClient.from_server_address(
            server_address=address, insecure=self._insecure,
            root_certificates=certificates,
            interceptors=[RuntimeVersionHttpInterceptor(component_name="flower-superexec")],
            retry_invoker=make_simple_http_retry_invoker())
        deadline = time.monotonic() + CLAIM_S
        while time.monotonic() < deadline:
            offer = client.AcquireTask(request(supported_task_types=[task_type.SERVER_APP]))
            if offer.HasField("task") and offer.token:
                return str(offer.token)
            time.sleep(PULL_S)
        raise SynthlearnError("the SuperLink handed this run no ServerApp task: start it "
                              "with --isolation process (the synthlearn run is the "
                              "ServerApp)", where=f"SuperLink {address}")

    def _map_sites(self, sites: list[Site]) -> None:
        """Wait for a node per site, ask each which site it holds, check it."""
        from flwr.app import Message

        wanted = {site.id: site for site in sites if site.id not in self._nodes}
        if not wanted:
            return
        deadline = time.monotonic() + self.config.connect_timeout_s
        asked: set[int] = set(self._nodes.values())
        while True:
            fresh = [n for n in self._grid.get_node_ids() if n not in asked]
            if fresh:
                asked.update(fresh)
                messages = [Message(content({}), dst_node_id=n, message_type=HELLO)
                            for n in fresh]
                wait = max(1.0, min(60.0, deadline - time.monotonic()))
                for reply in self._grid.send_and_receive(messages, timeout=wait):
                    self._register(reply, wanted)
            if all(sid in self._nodes for sid in wanted):
                return
            if time.monotonic() > deadline:
                missing = sorted(sid for sid in wanted if sid not in self._nodes)
                raise SiteTaskError(missing[0], NodeError(
                    f"no node for site(s) {missing} connected within connect_timeout_s "
                    f"({self.config.connect_timeout_s:g} s; nodes seen: {len(asked)})"))
            time.sleep(1.0)

    def _register(self, reply: Any, wanted: dict[int, Site]) -> None:
        if reply.has_error():  # a node gone since it connected: its site is still missing
            return
        node = reply.metadata.src_node_id
        facts, _ = read(reply)
        site_id = facts.get("site")
        site = wanted.get(site_id) if isinstance(site_id, int) else None
        if site is None or site_id in self._nodes:
            raise SynthlearnError(
                f"node {node} holds site {site_id!r}, which "
                + ("node " + str(self._nodes[site_id]) + " holds already"
                   if site_id in self._nodes else "this run does not have"),
                where=f"SuperLink {self._address}")
        if facts.get("n") != len(site.data) or facts.get("fingerprint") != \
                site.data.fingerprint():
            raise SiteTaskError(site.id, NodeError(
                f"node {node} holds {facts.get('n')!r} images that are not the ones the "
                f"recipe's partition gives site {site.id} ({len(site.data)}): export the "
                "sites again from this recipe (synthlearn sites export)"))
        self._nodes[site.id] = node

    def close(self) -> None:
        """Report the run's ServerApp task done, stop its heartbeat, and with mode:
        simulation stop the local nodes and SuperLink."""
        session = _SESSIONS.pop(self.config, None)
        if session is None:
            return
        try:
            self._finish(session)
        finally:
            if session.local is not None:
                session.local.stop()

    @staticmethod
    def _finish(session: _Session) -> None:
        grid = session.grid
        if grid is None:
            return
        try:
            from flwr.common.constant import SubStatus
            from flwr.proto.runtime_pb2 import PushTaskOutputRequest

            grid._runtime_client.PushTaskOutput(PushTaskOutputRequest(
                sub_status=SubStatus.COMPLETED, details=""))
        except Exception:  # the SuperLink may be gone already: nothing left to tell it
            pass
        finally:
            if session.heartbeat is not None:
                session.heartbeat.stop()
            grid.close()
