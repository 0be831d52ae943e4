"""Approval flows: a pure state machine (``machine``) and its diagram (``diagram``).

Persistence, the clock and I/O live outside: ``engine.workflows`` loads the
state, calls :func:`machine.step`, stores the new state and executes the
effects in one transaction.
"""

from .machine import (
    RESUBMITTABLE,
    Act,
    ActionError,
    CloseTask,
    CreateTask,
    Directory,
    Effect,
    Emit,
    InstanceState,
    Notify,
    Remind,
    Resubmit,
    SetField,
    Start,
    StaticDirectory,
    TaskState,
    Tick,
    Withdraw,
    event_from_json,
    event_to_json,
    step,
)

__all__ = [
    "RESUBMITTABLE", "Act", "ActionError", "CloseTask", "CreateTask", "Directory", "Effect", "Emit",
    "InstanceState", "Notify", "Remind", "Resubmit", "SetField", "Start", "StaticDirectory", "TaskState", "Tick",
    "Withdraw", "event_from_json", "event_to_json", "step",
]
