"""What one example may cost a worker, set once per process from the settings.

``AIAAS_MAX_ACTIVATION_MB`` bounds the activation memory of one example's forward pass,
computed from the config before anything is built (``architectures.parse_config``);
``AIAAS_MAX_SEQUENCE_LENGTH`` bounds a recurrent model's steps, both in its config and on a
variable-length input axis (``tensors``). ``create_app`` and each worker process call
``configure_limits``; the defaults are the settings' defaults.
"""

from __future__ import annotations

from dataclasses import dataclass

MB = 1024 * 1024


@dataclass
class ComputeLimits:
    max_activation_bytes: int = 256 * MB
    max_sequence_length: int = 4096


LIMITS = ComputeLimits()


def configure_limits(*, max_activation_mb: float, max_sequence_length: int) -> None:
    LIMITS.max_activation_bytes = int(max_activation_mb * MB)
    LIMITS.max_sequence_length = max_sequence_length
