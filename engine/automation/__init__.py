"""Rules and journeys: triggers, set-based audience entry, journey steps, runs.

Walk 2 of the design: a trigger fires a rule → :func:`enter_audience` inserts
one journey row per matching customer with a unique (rule, subject, period)
key, ignoring conflicts → :func:`advance_due` moves due journeys in batches
(coupons, outbox rows, tags …) → dispatchers deliver the outbox.
The engine reads no clock: every entry point takes ``now``.
"""

from engine.automation.entry import EventReport, enter_audience, handle_events
from engine.automation.journeys import AdvanceReport, advance_due
from engine.automation.policy import Counters, FrequencyCap, Policy
from engine.automation.runner import RunReport, TickReport, advance_all, run_rule, tick
from engine.automation.timing import Calendar, due_schedule_runs, period_key

__all__ = [
    "AdvanceReport", "Calendar", "Counters", "EventReport", "FrequencyCap", "Policy", "RunReport", "TickReport",
    "advance_all", "advance_due", "due_schedule_runs", "enter_audience", "handle_events", "period_key", "run_rule",
    "tick",
]
