"""The typed contents of ``metrics.json``.

The run writes ``RunMetrics`` (``to_json``); ``synthlearn schema metrics`` prints the
JSON Schema generated from these classes (``metrics_schema``), every field described by
its ``doc``. ``schema_version`` is an integer, 1 for this layout: it goes up when a
field is removed, renamed or changes meaning (a reader can then refuse what it does not
understand); adding a field keeps it. Objects that hold figures a plugin adds (an arm's
``details``, an attack's own keys, the model's ``describe()``) stay open.
"""

from __future__ import annotations

from typing import Any

import attrs

from synthlearn.models.training import TrainSettings
from synthlearn.schema.from_attrs import ABSENT, Absent, doc_field, document_schema

#: The layout version written as ``schema_version`` (see the module docstring).
SCHEMA_VERSION = 1

_RATE = "None when the test split holds a single class (AUC undefined)"


@attrs.define
class DatasetInfo:
    """The dataset the run used."""

    use: str = doc_field("the dataset component (``data.use``)")
    num_classes: int = doc_field("number of classes")
    class_names: list[str] = doc_field("class names, by class index")
    attributes: list[str] = doc_field("phenotype attributes the images carry")
    image_size: list[int] = doc_field("image height and width in pixels")
    channels: int = doc_field("image channels")
    n_train: int = doc_field("training images, over all sites")
    n_test: int = doc_field("held-out test images every arm is scored on")
    n_validation: int | None = doc_field("validation images (None: no validation split)")


@attrs.define
class ModelInfo:
    """The downstream model: its component and what its ``describe()`` says."""

    use: str = doc_field("the model component (``model.use``)")
    described: dict[str, Any] = doc_field("the model's ``describe()`` (e.g. arch, params)",
                                          factory=dict, metadata={"rest": True})


@attrs.define
class SiteInfo:
    """One site's share of the training split."""

    site: int = doc_field("site id")
    n: int = doc_field("training images at the site")
    class_counts: list[int] = doc_field("images per class at the site")


@attrs.define
class Scores:
    """Utility and cost of an arm's released model (mean over sites for per-site arms)."""

    accuracy: float | None = doc_field("accuracy on the real test set")
    balanced_accuracy: float | None = doc_field("balanced accuracy on the real test set")
    auc: float | None = doc_field(f"ROC AUC on the real test set; {_RATE}")
    bytes_to_server: int = doc_field("bytes every site sent to the server, in total")
    bytes_to_sites: int = doc_field("bytes the server sent to the sites, in total")
    wall_s: float = doc_field("seconds the arm took (without its audit)", default=0.0,
                              metadata={"required": True})


@attrs.define
class SiteBytes:
    """What crossed between one site and the server."""

    site: int = doc_field("site id")
    bytes_to_server: int = doc_field("bytes the site sent")
    bytes_to_sites: int = doc_field("bytes the site received")


@attrs.define
class SiteScores:
    """The test-set figures of one site's own model (arms with a model per site)."""

    site: int = doc_field("site id")
    accuracy: float | None = doc_field("accuracy on the real test set")
    balanced_accuracy: float | None = doc_field("balanced accuracy on the real test set")
    auc: float | None = doc_field(f"ROC AUC on the real test set; {_RATE}")


@attrs.define
class ValidationScores:
    """The released model's figures on the validation split (mean over sites for
    per-site arms)."""

    n: int = doc_field("validation images")
    accuracy: float | None = doc_field("accuracy on the validation split")
    balanced_accuracy: float | None = doc_field("balanced accuracy on the validation split")
    auc: float | None = doc_field("ROC AUC on the validation split")


@attrs.define
class CurvePoint:
    """One point of the accuracy-against-bytes curve: a round of a multi-round arm,
    or the released model (``round`` None)."""

    round: int | None = doc_field("0-based round; None for the released model")
    accuracy: float | None | Absent = doc_field(
        "test accuracy (absent when the round's model was not scored)", default=ABSENT)
    balanced_accuracy: float | None | Absent = doc_field(
        "test balanced accuracy (absent when not scored)", default=ABSENT)
    auc: float | None | Absent = doc_field("test ROC AUC (absent when not scored)",
                                           default=ABSENT)
    bytes_to_server: int = doc_field("bytes sent to the server so far", default=0,
                                     metadata={"required": True})
    bytes_to_sites: int = doc_field("bytes sent to the sites so far", default=0,
                                    metadata={"required": True})
    extra: dict[str, Any] = doc_field("what the arm added (``record_round(**extra)``)",
                                      factory=dict, metadata={"rest": True})


@attrs.define
class FidelityFigures:
    """How close a set of synthetic images lies to real ones in a fixed feature space."""

    fd: float = doc_field("Fréchet distance (lower: closer)")
    precision: float = doc_field("k-NN precision: share of synthetic images within the "
                                 "real images' manifold")
    recall: float = doc_field("k-NN recall: share of real images within the synthetic "
                              "images' manifold")
    n_real: int = doc_field("real images compared")
    n_fake: int = doc_field("synthetic images compared")
    realism: float | None | Absent = doc_field(
        "realism score (FedGAN): share of held-out synthetic images that a logistic "
        "regression trained on the features to tell real from synthetic takes for real "
        "(about 0.5: indistinguishable, 0: always told apart; None: fewer than 8 images "
        "in a set; absent in runs before it was measured)", default=ABSENT)
    realism_real: float | None | Absent = doc_field(
        "the realism score's control: share of held-out real images the same classifier "
        "takes for real (about 0.5: indistinguishable, 1: always told apart; None: fewer "
        "than 8 images in a set)", default=ABSENT)


@attrs.define
class SiteFidelity(FidelityFigures):
    """The fidelity of one site's synthetic images."""

    site: int = doc_field("site id", default=-1, metadata={"required": True})


@attrs.define
class SyntheticFidelity:
    """The fidelity of an arm's synthetic images against the real test images."""

    pooled: FidelityFigures = doc_field("every site's synthetic images together")
    sites: list[SiteFidelity] = doc_field("per site")


@attrs.define
class FidelityReference:
    """What real images score against the test set, to read synthetic figures by."""

    real_train_vs_test: FidelityFigures = doc_field("the real training images")


@attrs.define
class ArmFigures:
    """Figure files of an arm in the run directory."""

    synthetic: str | Absent = doc_field("real beside synthetic images per site",
                                        default=ABSENT)
    roc: str | Absent = doc_field("membership-inference ROC curves", default=ABSENT)


@attrs.define
class AttackFigures:
    """One attack's figures against one released model."""

    auc: float = doc_field("membership AUC (0.5: chance)")
    tpr_at_fpr_0_01: float | None | Absent = doc_field(
        "true-positive rate at 1% false positives (None: too few non-members)",
        default=ABSENT, metadata={"key": "tpr_at_fpr_0.01"})
    tpr_at_fpr_0_001: float | None | Absent = doc_field(
        "true-positive rate at 0.1% false positives (None: too few non-members)",
        default=ABSENT, metadata={"key": "tpr_at_fpr_0.001"})
    balanced_accuracy: float | Absent = doc_field("the attack's best balanced accuracy",
                                                  default=ABSENT)
    n_members: float | Absent = doc_field("member candidates (a mean over sites for "
                                          "per-site arms)", default=ABSENT)
    n_nonmembers: float | Absent = doc_field("non-member candidates", default=ABSENT)
    not_available: dict[str, str] | None | Absent = doc_field(
        "why a rate is None, by its key", default=ABSENT)
    control_auc: float | Absent = doc_field(
        "the same attack's AUC against the control model (the arm re-run without any "
        "candidate)", default=ABSENT)
    control_tpr_at_fpr_0_01: float | None | Absent = doc_field(
        "the control's true-positive rate at 1% false positives", default=ABSENT,
        metadata={"key": "control_tpr_at_fpr_0.01"})


@attrs.define
class AttackSiteFigures(AttackFigures):
    """One attack's figures against one site's model."""

    site: int = doc_field("site id", default=-1, metadata={"required": True})


@attrs.define
class AttackEntry(AttackFigures):
    """One attack against an arm: its figures (the mean over sites for per-site arms,
    with each site under ``sites``) and what the attack's ``describe()`` adds."""

    sites: list[AttackSiteFigures] | Absent = doc_field("per site (per-site arms)",
                                                        default=ABSENT)
    described: dict[str, Any] = doc_field("the attack's ``describe()`` (e.g. reference)",
                                          factory=dict, metadata={"rest": True})


@attrs.define
class AuditInfo:
    """How an arm's membership audit was made."""

    members: str = doc_field("where member candidates come from")
    nonmembers: str = doc_field("where non-member candidates come from")
    control: str = doc_field("what the control model is")
    models: list[str] = doc_field("the models attacked")
    n_per_side: list[int] = doc_field("members (= non-members) per attacked model")
    reference_seconds: dict[str, float] = doc_field(
        "mean seconds per reference model trained in this run, by reference data")
    reference_models: dict[str, int] = doc_field("reference models used, by reference data")
    reference_models_trained: dict[str, int] = doc_field("of which trained in this run")
    reference_models_shared: dict[str, int] = doc_field("of which shared with an earlier arm")
    reference_models_cached: dict[str, int] = doc_field("of which taken from the cache")
    controls_cached: int = doc_field("control models taken from the cache")
    reused: bool = doc_field("the whole audit was taken from the cache")
    first_computed: dict[str, Any] | Absent = doc_field(
        "for a reused audit: what its first computation trained, and how fast",
        default=ABSENT)
    wall_s: float = doc_field("seconds the audit took", default=0.0,
                              metadata={"required": True})


@attrs.define
class SpaceFigures:
    """Distances from synthetic images to members and to non-members in one space."""

    median_distance_to_members: float = doc_field("median nearest distance to members")
    median_distance_to_nonmembers: float = doc_field(
        "median nearest distance to non-members")
    closer_to_members: float = doc_field(
        "share of synthetic images nearer a member than a non-member (0.5: no leak)")
    near_copies: float = doc_field("share of synthetic images closer to a member than "
                                   "``near_copy_threshold``")
    near_copy_threshold: float = doc_field("the members' own nearest-distance quantile")


@attrs.define
class SiteMemorisation:
    """How close one site's synthetic images lie to its own real images."""

    site: int = doc_field("site id")
    n_synthetic: int = doc_field("synthetic images measured")
    n_per_side: int = doc_field("members (= non-members) measured")
    quantile: float = doc_field("quantile of the members' distances that defines a "
                                "near copy")
    pixel: SpaceFigures = doc_field("in pixel space")
    feature: SpaceFigures = doc_field("in the fixed feature space")


@attrs.define
class Memorisation:
    """Per site: its synthetic images' distances to its members and to non-members."""

    sites: list[SiteMemorisation] = doc_field("per site")


@attrs.define(frozen=True)
class Privacy:
    """An arm's differential-privacy guarantee.

    ``epsilon`` is the accountant's ε at ``delta`` of what left each site (the largest
    over the sites); ``null`` means no guarantee, ε = ∞: an arm without a DP mechanism
    (``mechanism`` "none") or one that pools raw images ("not private")."""

    epsilon: float | None = doc_field("ε at ``delta``, the largest over the sites (None: "
                                      "∞, no guarantee)")
    delta: float | None = doc_field("the budget's δ (None without DP)")
    accountant: str | None = doc_field("the privacy accountant, e.g. rdp (None without DP)")
    mechanism: str = doc_field("the dp_mechanism component, \"none\", or \"not private\" "
                               "for an arm that pools raw images")
    about: dict[str, Any] | Absent = doc_field("the mechanism's ``describe()``",
                                               default=ABSENT)
    sites: list[dict[str, Any]] | Absent = doc_field(
        "per site: noise multiplier, sample rate, steps taken and planned, ε",
        default=ABSENT)
    outside_budget: list[str] | Absent = doc_field(
        "what the arm released from the sites' data without noise (e.g. class counts)",
        default=ABSENT)


NO_DP = Privacy(epsilon=None, delta=None, accountant=None, mechanism="none")
NOT_PRIVATE = Privacy(epsilon=None, delta=None, accountant=None, mechanism="not private")


@attrs.define
class ArmEntry:
    """One arm of the comparison: what it is, its figures, what crossed and its audit."""

    name: str = doc_field("the arm's name in the recipe")
    use: str = doc_field("the arm component")
    summary: str = doc_field("the component's one-line summary")
    private: bool = doc_field("false for an arm that pools raw images (centralized)")
    metrics: Scores = doc_field("headline figures and bytes")
    shared: list[str] = doc_field("what left the sites, in words")
    cached_sites: int = doc_field("site tasks answered from the cache")
    site_bytes: list[SiteBytes] = doc_field("bytes per site")
    sites: list[SiteScores] = doc_field("per-site figures (arms with a model per site)")
    details: dict[str, Any] = doc_field("what the arm adds (``ArmResult.details``)")
    attacks: dict[str, AttackEntry] = doc_field("membership attacks by name")
    training: TrainSettings = doc_field("how the arm's model was trained and finished")
    privacy: Privacy = doc_field("its differential-privacy guarantee (ε)", default=NO_DP,
                                 metadata={"required": True})
    validation: ValidationScores | Absent = doc_field("figures on the validation split",
                                                      default=ABSENT)
    curve: list[CurvePoint] = doc_field("accuracy against bytes", factory=list,
                                        metadata={"required": True})
    fidelity: SyntheticFidelity | Absent = doc_field("synthetic arms: image fidelity",
                                                     default=ABSENT)
    figures: ArmFigures | Absent = doc_field("figure files", default=ABSENT)
    artifacts: list[str] | Absent = doc_field("files the arm kept, relative to the run",
                                              default=ABSENT)
    audit: AuditInfo | Absent = doc_field("how the membership audit was made",
                                          default=ABSENT)
    memorisation: Memorisation | Absent = doc_field(
        "synthetic arms with attacks: near copies of members", default=ABSENT)
    unfiltered_twin: str | Absent = doc_field(
        "arms with a filter: the arm of the run that is the same without one (the "
        "report's \"What each filter changed\" compares the two)", default=ABSENT)


@attrs.define(kw_only=True)
class RunMetrics:
    """Everything one run measured (``metrics.json``)."""

    schema_version: int = doc_field(
        "layout version of this file; goes up when a field is removed, renamed or "
        "changes meaning", default=SCHEMA_VERSION, metadata={"required": True})
    name: str = doc_field("the recipe's name")
    seed: int = doc_field("the recipe's seed")
    synthlearn_version: str = doc_field("the synthlearn version that ran it")
    warnings: list[str] = doc_field("every warning of the run, in order")
    dataset: DatasetInfo = doc_field("the data")
    model: ModelInfo = doc_field("the recipe's downstream model")
    sites: list[SiteInfo] = doc_field("the sites")
    arms: list[ArmEntry] = doc_field("every arm, in recipe order")
    fidelity_reference: FidelityReference | Absent = doc_field(
        "runs with synthetic arms: real images against the test set", default=ABSENT)
    wall_s: float = doc_field("seconds the whole run took", default=0.0,
                              metadata={"required": True})


def metrics_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of ``metrics.json``."""
    return document_schema(
        RunMetrics, title="synthlearn metrics.json",
        extra={"description": f"{RunMetrics.__doc__} Layout version {SCHEMA_VERSION}."})
