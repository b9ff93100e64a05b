"""The subclass example's old 3.x path: the one class of ``trial.py`` serves both generations now."""

from examples.subclass.trial import FrozenBackboneTrial

__all__ = ["FrozenBackboneTrial"]
