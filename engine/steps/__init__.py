"""Journey step types as plug-ins: one module per step (see :mod:`engine.steps.registry`)."""

from engine.steps.registry import StepType, keys, step, step_of, steps

__all__ = ["StepType", "keys", "step", "step_of", "steps"]
