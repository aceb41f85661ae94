"""The core's own components, registered through the same hooks as any plugin."""

from __future__ import annotations

from synthlearn.arms.centralized import CentralizedArm, CentralizedConfig
from synthlearn.arms.context import ArmContext, ArmResult
from synthlearn.arms.local import LocalArm, LocalConfig
from synthlearn.arms.synthetic import SyntheticArm, SyntheticConfig
from synthlearn.components import ComponentSpec, SiteTaskSpec
from synthlearn.data.digits import DigitsConfig, DigitsDataset
from synthlearn.data.exported import ExportedConfig, ExportedDataset
from synthlearn.data.imagefolder import ImageFolderConfig, ImageFolderDataset
from synthlearn.data.medmnist import MedMNISTConfig, MedMNISTDataset
from synthlearn.data.partitions import (
    ByAttributeConfig,
    ByAttributePartition,
    DirichletConfig,
    DirichletPartition,
    IIDConfig,
    IIDPartition,
)
from synthlearn.data.phantom import PhantomConfig, PhantomDataset
from synthlearn.filters.label_match import LabelMatchConfig, LabelMatchFilter
from synthlearn.filters.near_copy import NearCopyConfig, NearCopyFilter
from synthlearn.filters.reid import ReidConfig, ReidFilter
from synthlearn.generation.conditioning import (
    CategoricalConditioning,
    CategoricalConfig,
    PhenotypicConditioning,
    PhenotypicConfig,
)
from synthlearn.hookspecs import hookimpl
from synthlearn.models.timm_model import TimmConfig, TimmModel
from synthlearn.sitework.runner import LocalRunner, LocalRunnerConfig


@hookimpl
def synthlearn_register_datasets() -> list[ComponentSpec]:
    return [
        ComponentSpec("phantom", PhantomConfig, PhantomDataset,
                      "procedural lesion images with size/contrast/scanner attributes"),
        ComponentSpec("digits", DigitsConfig, DigitsDataset,
                      "scikit-learn's bundled 8x8 handwritten digits, resized"),
        ComponentSpec("medmnist", MedMNISTConfig, MedMNISTDataset,
                      "a MedMNIST subset from its standard .npz file"),
        ComponentSpec("imagefolder", ImageFolderConfig, ImageFolderDataset,
                      "images in one folder per class"),
        ComponentSpec("exported", ExportedConfig, ExportedDataset,
                      "a deployment's server side: the held-out splits and site manifest "
                      "of `synthlearn sites export`, no site images"),
    ]


@hookimpl
def synthlearn_register_partitions() -> list[ComponentSpec]:
    return [
        ComponentSpec("iid", IIDConfig, IIDPartition,
                      "stratified: every site gets an equal share of every class"),
        ComponentSpec("dirichlet", DirichletConfig, DirichletPartition,
                      "label skew: per-class site shares drawn from Dirichlet(alpha)"),
        ComponentSpec("by_attribute", ByAttributeConfig, ByAttributePartition,
                      "sites by an attribute's value (e.g. scanner) or its quantiles"),
    ]


@hookimpl
def synthlearn_register_models() -> list[ComponentSpec]:
    return [
        ComponentSpec("timm", TimmConfig, TimmModel,
                      "any timm architecture, random init, stem adapted to small images"),
    ]


@hookimpl
def synthlearn_register_arms() -> list[ComponentSpec]:
    return [
        ComponentSpec("centralized", CentralizedConfig, CentralizedArm,
                      "pool every site's raw images at the server (not private)"),
        ComponentSpec("local", LocalConfig, LocalArm,
                      "each site trains on its own images only",
                      slots={"dp": "dp_mechanism"}, slot_defaults={"dp": None}),
        ComponentSpec("synthetic", SyntheticConfig, SyntheticArm,
                      "sites share a fitted generator or its samples; the server trains "
                      "on the pooled synthetic images",
                      slots={"generator": "generator", "conditioning": "conditioning",
                             "dp": "dp_mechanism", "filter": "filter"},
                      slot_defaults={"generator": "gan", "conditioning": "categorical",
                                     "dp": None, "filter": None}),
    ]


@hookimpl
def synthlearn_register_conditionings() -> list[ComponentSpec]:
    return [
        ComponentSpec("categorical", CategoricalConfig, CategoricalConditioning,
                      "the class label; new labels follow the site's class counts"),
        ComponentSpec("phenotypic", PhenotypicConfig, PhenotypicConditioning,
                      "the class plus phenotype attributes, sampled per class from the "
                      "site's aggregate statistics"),
    ]


@hookimpl
def synthlearn_register_filters() -> list[ComponentSpec]:
    return [
        ComponentSpec("near-copy", NearCopyConfig, NearCopyFilter,
                      "reject synthetic images closer in pixels to a site image than "
                      "almost any two site images are"),
        ComponentSpec("reid", ReidConfig, ReidFilter,
                      "reject synthetic images a re-identification embedding, trained at "
                      "the site, matches to a site image (Trichotomy)"),
        ComponentSpec("label-match", LabelMatchConfig, LabelMatchFilter,
                      "reject synthetic images a classifier trained at the site does not "
                      "take for their label (Trichotomy's selection)"),
    ]


@hookimpl
def synthlearn_register_runners() -> list[ComponentSpec]:
    return [
        ComponentSpec("local", LocalRunnerConfig, LocalRunner,
                      "run site work in this process"),
    ]


@hookimpl
def synthlearn_register_site_tasks() -> list[SiteTaskSpec]:
    from synthlearn.arms.centralized import share_raw_images
    from synthlearn.arms.local import train_local_model
    from synthlearn.arms.site_batchnorm import AdaptConfig, site_statistics
    from synthlearn.arms.site_calibration import CalibrateConfig, site_biases
    from synthlearn.arms.synthetic import synthesize

    return [
        SiteTaskSpec(share_raw_images, CentralizedConfig),
        SiteTaskSpec(train_local_model, LocalConfig),
        SiteTaskSpec(synthesize, SyntheticConfig),
        SiteTaskSpec(site_statistics, AdaptConfig),
        SiteTaskSpec(site_biases, CalibrateConfig),
    ]


@hookimpl
def synthlearn_run_arm(ctx: ArmContext) -> ArmResult:
    return ctx.arm_object.run(ctx)
