"""Every kind of job the platform runs, in one table.

The app factory hands it to the dispatcher (which publishes, or runs, a job by its task name and
hands stale ones out again) and ``aiaas worker`` to Celery (one task per kind); neither of those
layers knows the domains. A new kind of job is a :class:`~aiaas.jobs.JobKind` in its domain's
``tasks.py`` and a line here.
"""

from __future__ import annotations

from aiaas.jobs import JobKind
from aiaas.predictions.tasks import PREDICTION_JOB
from aiaas.trainings.tasks import TRAINING

JOB_KINDS: tuple[JobKind, ...] = (PREDICTION_JOB, TRAINING)
