"""``synthlearn.testing``: the test kit for plugin authors (a pytest plugin).

Installed with synthlearn and registered with pytest through the ``pytest11`` entry
point, so in any project that has synthlearn installed these fixtures exist without a
``conftest.py``:

* ``tiny_dataset`` (120 + 60 phantom images of 16x16, 2 classes, with attributes),
  ``tiny_sites`` (those training images over 3 sites), ``tiny_recipe`` (a recipe dict
  that runs in seconds: :func:`small_recipe`), ``write_recipe`` (a recipe dict as a
  YAML file in ``tmp_path``), ``cli`` (the ``synthlearn`` command in this process).

And these functions (``from synthlearn.testing import ...``):

* :func:`run_recipe` runs a recipe in this process with plugin modules or objects
  registered without installing them, and returns the parsed ``metrics.json``;
* :func:`make_arm_context` builds the real ``ArmContext`` of an arm (phantom sites, the
  local runner, byte counting, the test-set evaluator) for unit tests of ``run(ctx)``;
* conformance checks per kind, in the spirit of scikit-learn's ``check_estimator``:
  :func:`check_generator`, :func:`check_arm`, :func:`check_model`,
  :func:`check_conditioning`, :func:`check_dataset`, :func:`check_partition`,
  :func:`check_attack`, :func:`check_runner`. Each raises :class:`ConformanceError` (an
  ``AssertionError``) naming the rule broken;
* :func:`installed` finds an installed component (is my entry point registering it?);
* :func:`offer` registers a component object under a name, in process (for
  ``run_recipe(plugins=[offer("generator", "mine", MyGenerator(...))])``);
* :func:`learning_recipe`: a recipe where a classifier clearly learns (centralized about
  0.83 accuracy), for asserting that a component helps; ``small_recipe``'s models stay
  near chance accuracy (it is sized for plumbing);
* :func:`small_recipe`, :func:`tiny_dataset`, :func:`tiny_sites`,
  :func:`write_distribution` (a throwaway installed-looking distribution),
  :func:`run_cli` (the command in a fresh process).

Names are imported on first use, so loading the pytest plugin stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from synthlearn.testing.checks import (
        ConformanceError,
        check_arm,
        check_attack,
        check_conditioning,
        check_dataset,
        check_generator,
        check_model,
        check_partition,
        check_runner,
    )
    from synthlearn.testing.cli import CliResult, run_cli
    from synthlearn.testing.context import make_arm_context
    from synthlearn.testing.offering import offer
    from synthlearn.testing.recipes import (
        class_conditions,
        learning_recipe,
        small_recipe,
        tiny_dataset,
        tiny_sites,
        two_tone,
        write_distribution,
        write_recipe_file,
    )
    from synthlearn.testing.run import RunResult, installed, run_recipe

_WHERE = {
    **dict.fromkeys(["ConformanceError", "check_arm", "check_attack", "check_conditioning",
                     "check_dataset", "check_generator", "check_model", "check_partition",
                     "check_runner"], "synthlearn.testing.checks"),
    "CliResult": "synthlearn.testing.cli",
    "run_cli": "synthlearn.testing.cli",
    "make_arm_context": "synthlearn.testing.context",
    "offer": "synthlearn.testing.offering",
    **dict.fromkeys(["class_conditions", "learning_recipe", "small_recipe", "tiny_dataset",
                     "tiny_sites", "two_tone", "write_distribution", "write_recipe_file"],
                    "synthlearn.testing.recipes"),
    "RunResult": "synthlearn.testing.run",
    "run_recipe": "synthlearn.testing.run",
    "installed": "synthlearn.testing.run",
}

__all__ = [
    "CliResult",
    "ConformanceError",
    "RunResult",
    "check_arm",
    "check_attack",
    "check_conditioning",
    "check_dataset",
    "check_generator",
    "check_model",
    "check_partition",
    "check_runner",
    "class_conditions",
    "installed",
    "learning_recipe",
    "make_arm_context",
    "offer",
    "run_cli",
    "run_recipe",
    "small_recipe",
    "tiny_dataset",
    "tiny_sites",
    "two_tone",
    "write_distribution",
    "write_recipe_file",
]
assert sorted(_WHERE) == __all__


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
