"""Weights to upload, as safetensors bytes: the one format the registry takes (never a pickle).

torch is imported only when a torch module or tensor is given, so the SDK itself needs none.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

# A torch.nn.Module, a state dict of torch tensors or numpy arrays, safetensors bytes, or the
# path of a .safetensors file.
Weights = Any


def to_safetensors(weights: Weights) -> bytes:
    if isinstance(weights, bytes | bytearray | memoryview):
        return bytes(weights)
    if isinstance(weights, str | Path):
        return Path(weights).read_bytes()
    state = weights.state_dict() if hasattr(weights, "state_dict") else weights
    if not isinstance(state, Mapping) or not state:
        raise TypeError(
            "push takes a torch module, a non-empty state dict, safetensors bytes or a path, "
            f"not {type(weights).__name__}"
        )
    if all(isinstance(v, np.ndarray) for v in state.values()):
        from safetensors.numpy import save as save_numpy

        return bytes(save_numpy({str(k): np.ascontiguousarray(v) for k, v in state.items()}))
    from safetensors.torch import save as save_torch

    # Detached, contiguous and unshared: safetensors refuses views that share storage.
    tensors = {str(k): v.detach().cpu().contiguous().clone() for k, v in state.items()}
    return bytes(save_torch(tensors))
