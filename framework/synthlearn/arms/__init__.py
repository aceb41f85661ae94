"""The arms of the comparison and the context they run in."""

from synthlearn.arms.context import ArmContext, ArmResult

__all__ = ["ArmContext", "ArmResult"]
