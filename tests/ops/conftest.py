"""The ops tests reuse the data-in fixtures: the app on each database with the
shipped library published, a settable clock, API users and the worker's
automation tick."""

from tests.datain.conftest import Clock, api, app, clock, tokens, worker_tick  # noqa: F401
