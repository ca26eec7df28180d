"""Feature attributions of a batch: which input values moved the model's answer, and how far.

Built on Captum (integrated gradients, saliency, occlusion) rather than on gradients of our
own: its attribution methods are the reviewed, published ones, with their edge cases (batched
integration steps, per-row targets, sliding windows) handled.

What is explained is the number a client reads in the predict answer: for classification the
softmax probability of the target class, for regression the target output itself. So integrated
gradients' attributions add up (the completeness axiom) to how far that probability moved
between the all-zeros baseline and the input, in the probability's own units; the
``completeness_gap`` says how far short of that the numerical integration fell.

- ``integrated_gradients``: Gauss-Legendre quadrature over ``steps`` points from the zeros
  baseline to the input.
- ``saliency``: the signed gradient of the target at the input (Captum's ``abs=False``): the
  sign says which way a small change moves the answer; take its absolute value for a map.
- ``occlusion``: images only (``[channels, height, width]`` samples): each square patch, across
  all channels, replaced by zeros in turn; a value's attribution is how much the target dropped
  when its patch was hidden. Patches do not overlap (side: an eighth of the shorter image side,
  rounded up), so each value belongs to exactly one.

Recurrent layers run with cuDNN off during attribution: cuDNN's RNN backward works only in
training mode, and a served model is in eval mode. (On a CPU the flag changes nothing.)
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, get_args

import numpy as np
import torch
from torch import Tensor, nn

Method = Literal["integrated_gradients", "saliency", "occlusion"]
METHODS: Final[tuple[str, ...]] = get_args(Method)
DEFAULT_STEPS: Final = 50
MAX_STEPS: Final = 512
# Rows one forward pass of an attribution may take (integration points or occluded copies
# times examples): the memory of a large predict batch, whatever the steps or patches.
CHUNK_ROWS: Final = 1024


@dataclass(frozen=True, slots=True)
class ExplainOptions:
    """How to explain a batch; ``target`` is an output index (None: the predicted class for
    classification, output 0 for regression), ``steps`` integrated gradients' points."""

    method: Method = "integrated_gradients"
    target: int | None = None
    steps: int = DEFAULT_STEPS

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.target is not None and (type(self.target) is not int or self.target < 0):
            raise ValueError(f"target must be an output index >= 0, got {self.target!r}")
        if type(self.steps) is not int or not 1 <= self.steps <= MAX_STEPS:
            raise ValueError(f"steps must be an integer in [1, {MAX_STEPS}], got {self.steps!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "target": self.target, "steps": self.steps}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExplainOptions:
        """Inverse of ``to_dict``; ``ValueError`` for a malformed one."""
        try:
            return cls(method=data["method"], target=data["target"], steps=data["steps"])
        except KeyError as exc:
            raise ValueError(f"explain options lack {exc.args[0]!r}") from None


@dataclass(frozen=True, slots=True)
class Explanation:
    """Per row: the attributions (the input's shape), the model's outputs (probabilities for
    classification), the output explained, and for integrated gradients the completeness gap:
    the attributions' sum minus the target's change from the baseline."""

    attributions: np.ndarray
    outputs: np.ndarray
    targets: np.ndarray
    completeness_gap: np.ndarray | None


def explain(
    module: nn.Module, inputs: Tensor, options: ExplainOptions, *, softmax: bool
) -> Explanation:
    """Attribute ``module``'s answers on the batch ``inputs`` (on the module's device).

    ``softmax``: the module returns logits and the probabilities are explained. Raises
    ``ValueError`` for a target past the outputs or occlusion on a non-image input. Runs with
    autograd on whatever mode the calling thread is in (a forward thread is in inference mode).
    """
    # Imported here: a gateway in distributed mode never explains, and pays nothing for it.
    from captum.attr import IntegratedGradients, Occlusion, Saliency

    def forward(batch: Tensor) -> Tensor:
        out: Tensor = module(batch)
        return out.softmax(-1) if softmax else out

    with torch.inference_mode(False), torch.enable_grad(), _cudnn_off_for(module):
        # A copy made outside inference mode: an inference tensor cannot enter autograd.
        x = inputs.detach().clone()
        with torch.no_grad():
            outputs = forward(x)
        targets = _targets(outputs, options.target, softmax=softmax)
        rows = len(x)
        gap: Tensor | None = None
        if options.method == "integrated_gradients":
            attributions, gap = IntegratedGradients(forward).attribute(
                x,
                baselines=torch.zeros_like(x),
                target=targets,
                n_steps=options.steps,
                method="gausslegendre",
                internal_batch_size=max(rows, CHUNK_ROWS),
                return_convergence_delta=True,
            )
        elif options.method == "saliency":
            x.requires_grad_()
            attributions = Saliency(forward).attribute(x, target=targets, abs=False)
        else:
            window = occlusion_window(tuple(x.shape[1:]))
            with torch.no_grad():
                attributions = Occlusion(forward).attribute(
                    x,
                    sliding_window_shapes=window,
                    strides=window,
                    baselines=0.0,
                    target=targets,
                    perturbations_per_eval=max(1, CHUNK_ROWS // rows),
                )
    return Explanation(
        attributions=_numpy(attributions),
        outputs=_numpy(outputs),
        targets=targets.cpu().numpy().astype(np.int64),
        completeness_gap=None if gap is None else _numpy(gap),
    )


def evaluations(options: ExplainOptions, rows: int, sample: tuple[int, ...]) -> int:
    """Examples an explanation of ``rows`` runs through the model: its cost, whatever the
    batching (integration points or occluded copies, times the rows)."""
    if options.method == "integrated_gradients":
        return rows * options.steps
    if options.method == "occlusion":
        _, side_h, side_w = occlusion_window(sample)
        patches = math.ceil(sample[1] / side_h) * math.ceil(sample[2] / side_w)
        return rows * (patches + 1)
    return rows


def occlusion_window(sample: tuple[int, ...]) -> tuple[int, int, int]:
    """The occluded patch for samples of shape ``[channels, height, width]``: every channel,
    a square of an eighth of the shorter side (rounded up)."""
    if len(sample) != 3:
        raise ValueError(f"occlusion explains images [channels, height, width], not {list(sample)}")
    channels, height, width = sample
    side = max(1, math.ceil(min(height, width) / 8))
    return channels, min(side, height), min(side, width)


def _targets(outputs: Tensor, target: int | None, *, softmax: bool) -> Tensor:
    count = outputs.shape[-1]
    if target is not None:
        if target >= count:
            raise ValueError(f"target {target} is past the model's {count} outputs")
        return torch.full((len(outputs),), target, dtype=torch.long, device=outputs.device)
    if softmax:
        return outputs.argmax(-1)
    return torch.zeros(len(outputs), dtype=torch.long, device=outputs.device)


@contextlib.contextmanager
def _cudnn_off_for(module: nn.Module) -> Iterator[None]:
    # The flag is process-wide: a forward on another thread meanwhile runs without cuDNN too,
    # slower for that while but with the same answer.
    if any(isinstance(m, nn.RNNBase) for m in module.modules()):
        with torch.backends.cudnn.flags(enabled=False):
            yield
    else:
        yield


def _numpy(tensor: Tensor) -> np.ndarray:
    # Contiguous: orjson serialises only C-ordered arrays, and a message needs the bytes.
    return np.ascontiguousarray(tensor.detach().to(device="cpu", dtype=torch.float32).numpy())
