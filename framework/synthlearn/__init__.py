"""synthlearn: compare centralized, local, federated and synthetic learning from one recipe.

This module exports the light names a plugin's registration and config modules need
(``hookimpl``, ``ComponentSpec``, ``NoParams``, ``KINDS``, the errors, the param
fields ``input_path_field`` and ``sampling_field`` and the validators ``int_at_least``,
``positive_or_none``, ``in_open_unit`` and ``device_name``) without importing torch. The
whole public API for plugin authors is ``synthlearn.api``; everything else is internal.
"""

from synthlearn.components import KINDS, ComponentSpec, NoParams, SiteTaskSpec
from synthlearn.errors import (
    DataError,
    PluginError,
    RecipeError,
    SiteFailure,
    SiteTaskError,
    SynthlearnError,
)
from synthlearn.hookspecs import hookimpl, hookspec
from synthlearn.params import (
    device_name,
    in_open_unit,
    input_path_field,
    int_at_least,
    positive_or_none,
    sampling_field,
)

__version__ = "0.1.0"

__all__ = [
    "KINDS",
    "ComponentSpec",
    "DataError",
    "NoParams",
    "PluginError",
    "RecipeError",
    "SiteFailure",
    "SiteTaskError",
    "SiteTaskSpec",
    "SynthlearnError",
    "__version__",
    "hookimpl",
    "hookspec",
    "device_name",
    "input_path_field",
    "in_open_unit",
    "int_at_least",
    "positive_or_none",
    "sampling_field",
]
