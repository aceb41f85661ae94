"""A plugin the recipe corpus loads (``SYNTHLEARN_PLUGINS=corpus_plugin``), written as a
plugin author would write one, to exercise what the core plugins do not have: an arm
with a required slot and a param that moved, and a dataset whose config nests attrs
classes holding input paths. Its components are only ever checked, never run."""

from __future__ import annotations

from typing import ClassVar

import attrs
from synthlearn import ComponentSpec, hookimpl
from synthlearn.errors import DataError
from synthlearn.recipe import input_path_field


@attrs.define(frozen=True)
class Source:
    """One folder of images and how much it counts."""

    root: str = input_path_field()
    weight: float = 1.0


@attrs.define(frozen=True)
class PairedDataConfig:
    """Several sources and a label file (a relative default: the current directory's)."""

    sources: list[Source] = attrs.field(factory=list)
    main: Source | None = None
    labels: str = input_path_field(default="labels.csv")
    tags: list[str] = attrs.field(factory=list)


class PairedData:
    """A dataset that only exists to be checked."""

    def __init__(self, config: PairedDataConfig) -> None:
        self.config = config

    def load(self, seed: int) -> None:
        raise DataError("the corpus dataset holds no images", where="corpus_plugin")


@attrs.define(frozen=True)
class PairedArmConfig:
    """An arm whose ``epochs`` moved to its partner model."""

    __synthlearn_moved__: ClassVar[dict[str, str]] = {
        "epochs": "$.arms[i].partner.params.epochs"}

    rounds: int = 1


class PairedArm:
    """An arm that only exists to be checked."""

    def __init__(self, config: PairedArmConfig) -> None:
        self.config = config


@hookimpl
def synthlearn_register_datasets() -> list[ComponentSpec]:
    return [ComponentSpec("paired_data", PairedDataConfig, PairedData,
                          "corpus: nested configs with input paths")]


@hookimpl
def synthlearn_register_arms() -> list[ComponentSpec]:
    return [ComponentSpec("paired", PairedArmConfig, PairedArm,
                          "corpus: an arm with a required slot",
                          slots={"partner": "model"})]
