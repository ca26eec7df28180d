"""How the gateway hands work to whatever runs torch.

One protocol, two transports: :class:`~aiaas.dispatch.inprocess.InProcessDispatcher` runs models
in this process on a dedicated thread (embedded mode); the Celery dispatcher publishes batches
to workers over Redis (distributed mode). The task code they run is the same, and neither knows
what it is: the app factory hands both the table of job kinds (``aiaas.tasks``).
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Protocol

import numpy as np

from aiaas.ml.explain import ExplainOptions, Explanation
from aiaas.serving.spec import ServingSpec


class Dispatcher(Protocol):
    async def start(self) -> None:
        """Open connections; called from the app's lifespan, inside the running loop."""

    async def close(self) -> None: ...

    def predict(self, spec: ServingSpec, inputs: np.ndarray) -> Awaitable[np.ndarray]:
        """Outputs for ``inputs`` (batch first), batched with concurrent requests for ``spec``.

        Raises ``TimeoutError`` when no answer came within ``settings.predict_timeout_s``.
        """
        ...

    def explain(
        self, spec: ServingSpec, inputs: np.ndarray, options: ExplainOptions
    ) -> Awaitable[Explanation]:
        """Attributions for ``inputs`` (batch first), all of its rows in one call where the
        predictions of ``spec`` run; never batched with other requests (each has its own
        method and target).

        Raises ``TimeoutError`` when no answer came within ``settings.predict_timeout_s``.
        """
        ...

    def submit(self, task: str, job_id: str) -> None:
        """Hand a committed job to a worker of its kind's queue (only its id travels);
        ``task`` names the kind (``JobKind.task``)."""
        ...

    def reconcile(self) -> int:
        """Hand out again jobs whose worker vanished or whose message was lost; how many."""
        ...
