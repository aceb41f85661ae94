"""Per-kind conformance checks, in the spirit of scikit-learn's ``check_estimator``:
each runs a component object through its kind's contract (``synthlearn.interfaces``) on
tiny real data and raises :class:`ConformanceError` (an ``AssertionError``) naming the
rule that failed."""

from synthlearn.testing.checks.arm import check_arm
from synthlearn.testing.checks.attack import check_attack
from synthlearn.testing.checks.conditioning import check_conditioning
from synthlearn.testing.checks.data import check_dataset, check_partition
from synthlearn.testing.checks.generator import check_generator
from synthlearn.testing.checks.model import check_model
from synthlearn.testing.checks.rules import ConformanceError
from synthlearn.testing.checks.runner import check_runner

__all__ = ["ConformanceError", "check_arm", "check_attack", "check_conditioning",
           "check_dataset", "check_generator", "check_model", "check_partition",
           "check_runner"]
