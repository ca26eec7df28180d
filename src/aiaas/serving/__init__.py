"""Framework-free serving core: runtimes, their cache, and dynamic batching.

Imports torch, numpy, the standard library and ``aiaas.ml`` only, so the gateway and the
workers can share it; metrics leave through plain callbacks the caller passes in.
"""

from aiaas.serving.batching import Batcher, BatcherClosed, BatchParts, make_executor
from aiaas.serving.cache import RuntimeCache
from aiaas.serving.device import select_device
from aiaas.serving.pool import BatcherPool
from aiaas.serving.runtime import ModelRuntime
from aiaas.serving.spec import ServingSpec

__all__ = [
    "BatchParts",
    "Batcher",
    "BatcherClosed",
    "BatcherPool",
    "ModelRuntime",
    "RuntimeCache",
    "ServingSpec",
    "make_executor",
    "select_device",
]
