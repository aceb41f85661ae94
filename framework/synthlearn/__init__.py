"""synthlearn: compare centralized, local, federated and synthetic learning from one recipe.

The public API for plugin authors is what this module exports.
"""

from synthlearn.components import KINDS, ComponentSpec, NoParams
from synthlearn.errors import DataError, PluginError, RecipeError, SiteFailure, SynthlearnError
from synthlearn.hookspecs import hookimpl, hookspec

__version__ = "0.1.0"

__all__ = [
    "KINDS",
    "ComponentSpec",
    "DataError",
    "NoParams",
    "PluginError",
    "RecipeError",
    "SiteFailure",
    "SynthlearnError",
    "__version__",
    "hookimpl",
    "hookspec",
]
