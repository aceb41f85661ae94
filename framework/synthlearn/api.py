"""The public API for plugins: the one module a plugin imports from, besides the
top-level ``synthlearn`` (which keeps its light names) and, in its tests,
``synthlearn.testing``. **Everything else in synthlearn is internal and may change**;
the names below keep their meaning, and a rename goes through a deprecation.

The contract (what a plugin registers and what its objects must offer)
    ``hookimpl`` (mark hook implementations; the hooks are ``synthlearn.hookspecs``),
    ``ComponentSpec``, ``NoParams``, ``KINDS``, ``SiteTaskSpec`` (a site task a node may
    run); one Protocol per kind: ``DatasetSource``,
    ``Partitioner``, ``ConditioningScheme``, ``Generator``, ``Arm``, ``ModelFactory``,
    ``Attack``, ``Runner``; optional methods: ``Checked`` (``check(dataset, sites)``),
    ``StatsChecked`` (a conditioning's ``check_stats``), ``Described`` (an attack's
    ``describe()``).

Errors
    ``SynthlearnError`` (one line for the user, with ``where``), ``RecipeError``,
    ``PluginError``, ``DataError``, ``SiteFailure``, ``SiteTaskError`` (a runner's way to
    say which site failed); ``warn(message, where)`` for
    something that makes a figure doubtful (stderr, ``metrics.json``, the report).

Component params
    ``input_path_field`` (a param that is a path the component reads),
    ``sampling_field`` (a generator param that changes only the drawing, not the fit),
    ``make_converter`` (the strict cattrs converter, for nested params of your own);
    validators ``int_at_least(low)``, ``positive_or_none``, ``in_open_unit``,
    ``device_name`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``) and ``every_or_none`` (a
    ``regenerate_every``-like param).

Data
    ``ImageData`` (uint8 images, int64 labels, float32 attributes), ``Dataset`` (train
    and test splits), ``AttributeInfo`` (a phenotype attribute).

Sites and what crosses
    ``Site``, ``SiteEnv``, ``SiteTask``; ``derive_seed``, ``seeded_model``; ``Payload``
    (named tensors plus JSON, as safetensors), ``state_payload``/``load_state`` (a
    network's weights, checked on load), ``check_layout`` (received tensors against the
    layout a network's metadata describes); ``received_tensor``/``received_count`` (read
    what a site sent, checked against a dtype, shape or range).

Arms
    ``ArmContext`` (what ``Arm.run`` gets), ``ArmResult`` (what it returns);
    ``check_site_steps`` (call first) and ``finish_at_sites`` (after training: the
    model's site steps, ``adapt_bn``/``calibrate``). Federated rounds:
    ``choose_sites`` (who takes part), ``check_update`` (what a site sent, against the
    global state), ``average`` (the weighted average, with a server learning rate).
Differential privacy (an arm with a ``dp`` slot of kind ``dp_mechanism``)
    ``DpMechanism`` and ``PrivateStep`` (the kind's contract), ``PrivatelyTrained`` (the
    arm's ``dp_steps``), ``TrainsOnSynthetic`` (the arm's ``dp_models``: which of its
    models train on real images), ``PrivatelyFitted`` (a generator's ``dp_steps``); at a site
    ``site_private_training`` (the plan, or None), then
    ``train_classifier(..., private=plan)`` and ``plan.record()`` in the payload's meta
    under ``privacy``; at the server ``PrivacyLedger`` (checks and accounts the records,
    ``summary()`` for ``ArmResult.privacy``); ``PrivateTraining``,
    ``plan_private_training``, ``dp_steps_per_epoch``, ``classifier_dp_steps`` (the
    ``(batch, steps)`` of ``train_classifier`` under DP), ``MAX_NOISE_MULTIPLIER`` (the most
    noise a plan accepts). A site that trains several things under one budget (named
    phases from ``dp_steps``): ``site_private_phases`` / ``plan_private_phases`` (one
    noise level for all), ``composed_epsilon``, ``ComposesPhases`` (what the mechanism
    needs for it); one record per phase.

Models and training
    ``TrainSettings`` (how a model trains: the ``training`` of a ``ModelFactory``),
    ``OPTIMIZERS``; ``train_classifier``, ``predict_logits``, ``predict_proba``,
    ``refresh_batchnorm``, ``smoothed_onehot``, ``resolve_device``, ``to_float``,
    ``deterministic_cudnn``.

Synthetic images
    ``Conditions`` (what a generator is conditioned on), ``check_stats``,
    ``MAX_IMAGES``; shared by every arm that synthesises: ``SHARED_FIT_TASK`` (name your
    fitting site task so to share generator fits with the ``synthetic`` arm),
    ``fit_site_generator`` (and ``generator_dp_steps`` under DP), ``draw_pool`` (and its
    ``CLASS_BALANCES``), ``pool_subset``,
    ``load_generator``, ``generator_label``, ``describe_slots``, ``checked_n_real``,
    ``render_conditions`` (images for given conditions, checked); ``ShareSize`` (the
    ``multiple``/``count`` params of a per-site pool) and ``SyntheticSets`` (sets redrawn
    during training: ``regenerate_every``, ``class_balance``, ``pool``), for a config
    class to inherit.

Filters (an arm that releases synthetic images, with a ``filter`` slot)
    ``SyntheticFilter`` (the kind's contract), ``SlotsChecked`` (an arm refusing a
    filter where nothing leaves a site); at a site ``site_filter`` (the fitted filter,
    a ``FilterChain`` when the recipe lists several, and an empty ``Screening`` record,
    or None) and ``screened_pool`` (screen a pool, redraw
    rejected candidates with their own conditions), or both for an arm's pools at once:
    ``screen_site_pools``; ``refuse_filter_without_samples`` (for ``check_slots``: a
    filter needs ``share: samples``); ``FILTER_SLOT``,
    ``MAX_REDRAW_ROUNDS``; at the server ``received_screening`` (the record a site sent,
    checked).

Attacks
    ``AttackContext``: what ``Attack.score`` gets (candidates, the target model, its
    logits and probabilities, reference models). The audit that builds it, the
    candidate pool and the metrics are the core's.

Runners (site work elsewhere: a hospital's node)
    ``task_request`` (a site task as JSON for a site's node), ``run_task_request`` (the
    node runs it: registered site tasks only, components from its own plugins, its own
    site), ``SiteFile``/``read_site_file``/``site_payload`` (one site's data in a file
    of its own, ``synthlearn sites export``), ``SiteCache`` (a site's store for
    expensive work), ``load_plugins`` (the installed plugins, as a node resolves them).

Importing this module imports torch; plugin entry-point modules that only register
components can import from ``synthlearn`` alone and keep ``synthlearn plugins`` quick.
"""

from __future__ import annotations

from synthlearn.arms.averaging import average, check_update, choose_sites
from synthlearn.arms.context import ArmContext, ArmResult
from synthlearn.arms.local import classifier_dp_steps
from synthlearn.arms.site_privacy import (
    PrivacyLedger,
    site_private_phases,
    site_private_training,
)
from synthlearn.arms.site_steps import check_site_steps, finish_at_sites
from synthlearn.components import KINDS, ComponentSpec, NoParams, SiteTaskSpec
from synthlearn.data.types import AttributeInfo, Dataset, ImageData
from synthlearn.errors import (
    DataError,
    PluginError,
    RecipeError,
    SiteFailure,
    SiteTaskError,
    SynthlearnError,
)
from synthlearn.evaluation.audit import AttackContext
from synthlearn.generation.conditioning import MAX_IMAGES, Conditions, check_stats
from synthlearn.generation.filtering import (
    FILTER_SLOT,
    MAX_REDRAW_ROUNDS,
    FilterChain,
    Screening,
    received_screening,
    refuse_filter_under_dp,
    refuse_filter_without_samples,
    screen_site_pools,
    screened_pool,
    site_filter,
)
from synthlearn.generation.share_size import (
    CLASS_BALANCES,
    ShareSize,
    SyntheticSets,
    every_or_none,
)
from synthlearn.generation.sharing import (
    SHARED_FIT_TASK,
    STATISTICS_OUTSIDE_BUDGET,
    checked_n_real,
    describe_slots,
    draw_pool,
    fit_site_generator,
    generator_dp_steps,
    generator_label,
    load_generator,
    pool_subset,
    render_conditions,
)
from synthlearn.hookspecs import hookimpl
from synthlearn.interfaces import (
    Arm,
    Attack,
    Checked,
    ComposesPhases,
    ConditioningScheme,
    DatasetSource,
    Described,
    DpMechanism,
    Generator,
    ModelFactory,
    Partitioner,
    PrivatelyFitted,
    PrivatelyTrained,
    PrivateStep,
    Runner,
    SlotsChecked,
    StatsChecked,
    SyntheticFilter,
    TrainsOnSynthetic,
)
from synthlearn.loading.manager import load_plugins
from synthlearn.models.private import (
    MAX_NOISE_MULTIPLIER,
    PrivateTraining,
    composed_epsilon,
    dp_steps_per_epoch,
    plan_private_phases,
    plan_private_training,
)
from synthlearn.models.training import (
    OPTIMIZERS,
    TrainSettings,
    deterministic_cudnn,
    predict_logits,
    predict_proba,
    refresh_batchnorm,
    resolve_device,
    smoothed_onehot,
    to_float,
    train_classifier,
)
from synthlearn.notices import warn
from synthlearn.params import (
    device_name,
    in_open_unit,
    input_path_field,
    int_at_least,
    make_converter,
    positive_or_none,
    sampling_field,
)
from synthlearn.sitework.cache import SiteCache
from synthlearn.sitework.exchange import Payload, check_layout, load_state, state_payload
from synthlearn.sitework.received import received_count, received_tensor
from synthlearn.sitework.remote import run_task_request, task_request
from synthlearn.sitework.site_file import SiteFile, read_site_file, site_payload
from synthlearn.sitework.sites import Site, SiteEnv, SiteTask, derive_seed, seeded_model

__all__ = [
    # the contract
    "KINDS",
    "Arm",
    "Attack",
    "Checked",
    "ComponentSpec",
    "SiteTaskSpec",
    "ConditioningScheme",
    "DatasetSource",
    "Described",
    "DpMechanism",
    "PrivatelyFitted",
    "ComposesPhases",
    "average",
    "check_update",
    "choose_sites",
    "SlotsChecked",
    "SyntheticFilter",
    "FILTER_SLOT",
    "FilterChain",
    "MAX_REDRAW_ROUNDS",
    "Screening",
    "received_screening",
    "refuse_filter_under_dp",
    "refuse_filter_without_samples",
    "screened_pool",
    "screen_site_pools",
    "site_filter",
    "render_conditions",
    "ShareSize",
    "SyntheticSets",
    "in_open_unit",
    "int_at_least",
    "positive_or_none",
    "device_name",
    "every_or_none",
    "PrivatelyTrained",
    "TrainsOnSynthetic",
    "PrivateStep",
    "Generator",
    "ModelFactory",
    "NoParams",
    "Partitioner",
    "Runner",
    "StatsChecked",
    "hookimpl",
    # errors and warnings
    "DataError",
    "PluginError",
    "RecipeError",
    "SiteFailure",
    "SiteTaskError",
    "SynthlearnError",
    "warn",
    # component params
    "input_path_field",
    "sampling_field",
    "make_converter",
    # data
    "AttributeInfo",
    "Dataset",
    "ImageData",
    # sites and what crosses
    "Payload",
    "Site",
    "SiteEnv",
    "SiteTask",
    "check_layout",
    "derive_seed",
    "load_state",
    "received_count",
    "received_tensor",
    "seeded_model",
    "state_payload",
    # arms
    "ArmContext",
    "ArmResult",
    "check_site_steps",
    "finish_at_sites",
    # differential privacy
    "MAX_NOISE_MULTIPLIER",
    "PrivacyLedger",
    "PrivateTraining",
    "dp_steps_per_epoch",
    "classifier_dp_steps",
    "plan_private_training",
    "plan_private_phases",
    "composed_epsilon",
    "site_private_training",
    "site_private_phases",
    # models and training
    "OPTIMIZERS",
    "TrainSettings",
    "deterministic_cudnn",
    "predict_logits",
    "predict_proba",
    "refresh_batchnorm",
    "resolve_device",
    "smoothed_onehot",
    "to_float",
    "train_classifier",
    # synthetic images
    "CLASS_BALANCES",
    "MAX_IMAGES",
    "SHARED_FIT_TASK",
    "STATISTICS_OUTSIDE_BUDGET",
    "Conditions",
    "check_stats",
    "checked_n_real",
    "describe_slots",
    "draw_pool",
    "fit_site_generator",
    "generator_dp_steps",
    "generator_label",
    "load_generator",
    "pool_subset",
    # attacks
    "AttackContext",
    # runners
    "SiteCache",
    "SiteFile",
    "load_plugins",
    "read_site_file",
    "run_task_request",
    "site_payload",
    "task_request",
]
