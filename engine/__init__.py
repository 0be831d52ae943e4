"""promoflow's engine: definitions, conditions, runtimes and storage.

The engine imports nothing of ours outside itself, never Flask, APScheduler or a
concrete connector, and reads no wall clock: callers pass ``now`` in.
"""

__version__ = "0.1.0"
