"""What a plugin registers: a named component of one kind, its config class and factory."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs

#: The kinds of component, one registration hook each (``synthlearn_register_<kind>s``).
KINDS: tuple[str, ...] = (
    "dataset",
    "partition",
    "conditioning",
    "generator",
    "arm",
    "model",
    "attack",
    "runner",
    "dp_mechanism",
    "filter",
)

#: Kinds whose slot may take a list of components (``filter: [reid, near-copy]``),
#: applied in the order given (``synthlearn.recipe.ComponentChain``; for filters, a
#: candidate leaves the site only if every filter keeps it).
CHAIN_KINDS: frozenset[str] = frozenset({"filter"})


@attrs.define(frozen=True)
class NoParams:
    """Config class for a component that takes no parameters."""


@attrs.define(frozen=True)
class ComponentSpec:
    """One component a plugin offers.

    ``name`` is what a recipe writes after ``use:``. ``config`` is an attrs class: the
    recipe's ``params:`` are structured into it (unknown keys are errors). ``factory`` is
    called with the structured config and returns the component object (its interface
    depends on the kind, see ``synthlearn.hookspecs``). ``slots`` maps extra recipe keys
    a component accepts to the kind of component they name, e.g. an arm that
    takes ``generator: {use: gan}`` declares ``{"generator": "generator"}``; a slot whose
    value is ``None`` in ``slot_defaults`` is optional. A slot of a kind in
    ``CHAIN_KINDS`` may also be given a list of components.
    """

    name: str
    config: type
    factory: Callable[[Any], Any]
    summary: str
    slots: Mapping[str, str] = attrs.field(factory=dict)
    slot_defaults: Mapping[str, str | None] = attrs.field(factory=dict)


@attrs.define(frozen=True)
class RegisteredComponent:
    """A component spec together with where it came from."""

    kind: str
    spec: ComponentSpec
    plugin: str
    distribution: str
    version: str


@attrs.define(frozen=True)
class SiteTaskSpec:
    """A site task function a plugin lets a site's node run.

    ``fn(site, config, inbound, env) -> Payload`` is a module-level function (what a
    ``SiteTask`` runs); ``config`` is the attrs class its config is structured into at
    the node, strictly (``None``: plain JSON data, given as is). A node started by a
    remote runner runs only functions registered so by a plugin installed *on that
    node*: the allow-list that keeps a server from making a hospital run anything else.
    """

    fn: Callable[..., Any]
    config: type | None = None

    @property
    def path(self) -> str:
        """``module:qualname``, the name a task message uses."""
        return f"{self.fn.__module__}:{self.fn.__qualname__}"
