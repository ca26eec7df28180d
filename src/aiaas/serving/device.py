"""Turn a device setting (``auto``, ``cpu``, ``cuda``, ``cuda:N``) into a torch device."""

from __future__ import annotations

import torch


def select_device(setting: str) -> torch.device:
    """Resolve ``setting``; asking for CUDA where there is none is a ``ValueError``.

    An explicit ``cuda`` is refused rather than quietly replaced by the CPU: a
    deployment that asked for a GPU and silently got none would only show up as slowness.
    """
    value = setting.strip().lower()
    if value == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if value == "cpu":
        return torch.device("cpu")
    if value == "cuda" or value.startswith("cuda:"):
        index_text = value.removeprefix("cuda").removeprefix(":")
        if value != "cuda" and not index_text.isdigit():
            raise ValueError(f"bad device {setting!r}: expected cuda:N with N a GPU index")
        if not torch.cuda.is_available():
            raise ValueError(f"device {setting!r} was asked for, but CUDA is not available here")
        if value == "cuda":
            return torch.device("cuda")
        index, count = int(index_text), torch.cuda.device_count()
        if index >= count:
            raise ValueError(f"device {setting!r} does not exist: this machine has {count} GPU(s)")
        return torch.device("cuda", index)
    raise ValueError(f"unknown device {setting!r}: expected auto, cpu, cuda or cuda:N")
