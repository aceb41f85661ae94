"""The whole plugin contract of synthlearn.

A plugin is a module (or object) with functions decorated by ``synthlearn.hookimpl``
whose names are the hooks below. It reaches synthlearn through an entry point in the
group ``synthlearn`` of its distribution::

    [project.entry-points.synthlearn]
    my_plugin = "my_package.plugin"

The core's own components are registered by ``synthlearn.loading.builtin`` through these same
hooks, so there is one path for built-ins and third-party plugins alike.

Registration hooks (``synthlearn_register_<kind>s``) take no arguments and return a list
of ``synthlearn.ComponentSpec``. Every implementation is called; a component name must be
unique within its kind across all installed distributions (a clash stops the run and
names both distributions). What the object made by ``ComponentSpec.factory`` must offer
is in ``synthlearn.interfaces``; ``synthlearn validate`` (and ``run``, before any work)
checks it. A hookimpl whose arguments are not the spec's makes its plugin broken, with
pluggy's reason in the one-line error.

Event hooks (``synthlearn_on_*``) are called by the run as it goes, to watch it
(trackers, loggers, dashboards); they return nothing and cannot change the run: each
gets read-only deep copies of its arguments (mappings are read-only ``dict`` subclasses,
lists are tuples), so a change raises and never reaches ``metrics.json``. An event hook
that raises is reported in one line naming the hook, its plugin and distribution, on
stderr and in ``metrics.json`` ``warnings``; the other plugins' hooks and the run go on,
its results are written and the exit status is not changed by it (a watcher's bug is not
a failed comparison; read ``warnings`` to catch it in CI).

``synthlearn_run_arm`` is the one hook that does work: the core implements it, and a
plugin may wrap it (``@hookimpl(wrapper=True)``) to time, trace or profile every arm; an
error there is the arm's error and stops the run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from pathlib import Path

    from synthlearn.arms.context import ArmContext, ArmResult
    from synthlearn.components import ComponentSpec, SiteTaskSpec

PROJECT = "synthlearn"

hookspec = pluggy.HookspecMarker(PROJECT)
#: Marks a plugin's function as the implementation of the hook of the same name
#: (``@hookimpl``; ``@hookimpl(wrapper=True)`` wraps the other implementations).
hookimpl = pluggy.HookimplMarker(PROJECT)


# --- registration hooks --------------------------------------------------------------


@hookspec
def synthlearn_register_datasets() -> list[ComponentSpec]:
    """Datasets this plugin offers (recipe key ``data``).

    Called once when the plugin manager is set up. The factory returns a
    ``DatasetSource``: ``load(seed) -> Dataset`` with a train split (partitioned into
    sites) and a test split (kept by the server's evaluator).
    """


@hookspec
def synthlearn_register_partitions() -> list[ComponentSpec]:
    """Ways to turn the training split into sites (recipe key ``sites.partition``).

    The factory returns a ``Partitioner``: ``split(train, n_sites, rng)`` -> one index
    array per site.
    """


@hookspec
def synthlearn_register_conditionings() -> list[ComponentSpec]:
    """Conditioning schemes for generators (recipe key ``conditioning`` inside an arm).

    A scheme encodes a class (and phenotype attributes) for a generator and samples new
    conditions that follow one site's own distribution.
    """


@hookspec
def synthlearn_register_generators() -> list[ComponentSpec]:
    """Conditional image generators (recipe key ``generator`` inside an arm).

    A generator fits on one site's images, samples images for given conditions, and
    saves to / loads from safetensors plus JSON, never a pickle.
    """


@hookspec
def synthlearn_register_arms() -> list[ComponentSpec]:
    """The arms of the comparison (recipe list ``arms``).

    The factory returns an ``Arm``: a ``private`` flag and ``run(ctx)`` that does site
    work through ``ctx.run_sites`` and returns the server-side model(s). A spec's
    ``slots`` declare the sub-components the arm takes (e.g. ``generator``).
    """


@hookspec
def synthlearn_register_poolings() -> list[ComponentSpec]:
    """Deprecated name of ``synthlearn_register_arms`` (the kind was called ``pooling``).

    Still collected as arms, with one deprecation warning naming the distribution;
    rename the function to ``synthlearn_register_arms``.
    """


@hookspec
def synthlearn_register_models() -> list[ComponentSpec]:
    """Downstream classifiers (recipe key ``model``, or ``model`` inside an arm).

    The factory returns a ``ModelFactory``: ``build(in_chans, num_classes, image_size)``
    and the ``training`` settings (epochs, batch size, learning rate, device).
    """


@hookspec
def synthlearn_register_attacks() -> list[ComponentSpec]:
    """Privacy attacks run against every arm's released model (recipe list ``attacks``).

    The factory returns an ``Attack``: ``score(ctx)`` gives one membership score per
    candidate image of the audit (``synthlearn.evaluation.audit.AttackContext``); an
    optional ``describe()`` adds JSON-able facts to its metrics.json entry.
    """


@hookspec
def synthlearn_register_runners() -> list[ComponentSpec]:
    """Where site work executes (recipe key ``runner``).

    The factory returns a ``Runner``: ``execute(task, sites, envs, inbound)`` runs a site
    task where each site's data lives (in parallel where it can) and yields each site's
    payload as safetensors bytes as that site finishes; a failed site is raised as
    ``SiteTaskError(site, error)``. Caching, byte counting and events are done by the
    caller (``ArmContext.run_sites``) as each result arrives.
    """


@hookspec
def synthlearn_register_dp_mechanisms() -> list[ComponentSpec]:
    """Differential-privacy mechanisms (recipe key ``dp`` inside an arm that trains on
    real images at the sites, e.g. ``dp: {use: opacus, params: {target_epsilon: 3}}``).

    The factory returns a ``DpMechanism`` (``synthlearn.interfaces``): it finds the noise
    for a budget, accounts for the steps taken, names the layers it cannot train
    privately, and wraps a network and its optimizer for per-example clipping and noise.
    The core's training loop draws the Poisson-sampled batches the accountant assumes.
    """


@hookspec
def synthlearn_register_filters() -> list[ComponentSpec]:
    """Filters of synthetic images (recipe key ``filter`` inside an arm that releases
    synthetic images, e.g. ``filter: {use: reid}``, or a list of them applied in order,
    ``filter: [reid, near-copy]``).

    The factory returns a ``SyntheticFilter`` (``synthlearn.interfaces``): fitted at a
    site on the site's own images, it screens every candidate pool before anything
    leaves, and the arm redraws what it rejects. The core registers ``near-copy`` (pixel
    distance), ``reid`` (a re-identification embedding the site trains) and
    ``label-match`` (candidates that do not look like their label).
    """


@hookspec
def synthlearn_register_site_tasks() -> list[SiteTaskSpec]:
    """The site task functions this plugin's arms (and site steps) run, each with its
    config class (``SiteTaskSpec``).

    A remote runner's site node runs a task only if a plugin installed on the node
    registered its function here; an arm whose site work is not registered runs with
    the local runner only. Called when a runner or a check asks (it may import torch).
    """


# --- the arm hook ---------------------------------------------------------------------


@hookspec(firstresult=True)
def synthlearn_run_arm(ctx: ArmContext) -> ArmResult:
    """Run one arm and return its result.

    The core implements it by calling the arm's ``run(ctx)``. Wrap it to add behaviour
    around every arm: ``result = yield`` gives the result (or raises the arm's error).
    """


# --- event hooks ----------------------------------------------------------------------


@hookspec
def synthlearn_on_site_done(arm: str, site: int, outputs: Mapping[str, Any]) -> None:
    """A site finished one task for ``arm`` and its payload crossed to the server.

    ``outputs`` holds ``task`` (its name), ``bytes`` (size of what crossed), ``cached``
    (True when the payload came from the site-output cache) and ``wall_s``.
    """


@hookspec
def synthlearn_on_round_end(arm: str, round: int, metrics: Mapping[str, Any]) -> None:
    """A multi-round arm (e.g. FedAvg) finished round ``round`` (0-based).

    ``metrics`` holds at least ``bytes_to_server`` and ``bytes_to_sites`` so far, and the
    test metrics when the arm evaluated the round's model.
    """


@hookspec
def synthlearn_on_arm_end(arm: str, metrics: Mapping[str, Any]) -> None:
    """An arm finished and was evaluated; ``metrics`` is (a read-only copy of) its entry
    of metrics.json."""


@hookspec
def synthlearn_on_run_end(run_dir: Path, metrics: Mapping[str, Any]) -> None:
    """The run finished and its directory is complete; ``metrics`` is (a read-only copy
    of) metrics.json. The files in ``run_dir`` are the run's: read them, do not change
    them."""
