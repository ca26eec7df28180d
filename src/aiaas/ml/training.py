"""The training loop: split, standardize, fit, evaluate, with checkpoints after every epoch.

Runs are reproducible on the CPU: the split comes from the seed, batches are drawn from a
dedicated generator seeded from it, and the global RNG (dropout) is seeded inside a fork so
the caller's random state is left as it was. A :class:`Checkpoint` holds every piece of
that state, so a run resumed from one ends bit-for-bit where an uninterrupted run would.

Scaling that helps optimization is trained with and then folded into the weights: input
standardization into the first ``nn.Linear`` (MLPs), target standardization into the last
one (regression). The returned state dict therefore serves raw inputs to raw outputs with a
plain forward pass, and the test metrics are measured exactly that way.
"""

from __future__ import annotations

import json
import math
import struct
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt
import safetensors.torch
import torch
from torch import nn

from aiaas.ml.errors import Canceled, CheckpointInvalid, Diverged, ShapeMismatch
from aiaas.ml.evaluation import classification_metrics, regression_metrics
from aiaas.ml.task import Task
from aiaas.ml.weights import load_safetensors

History = list[dict[str, float | int | None]]

_CHECKPOINT_KEY: Final = "aiaas.checkpoint"
_CHECKPOINT_VERSION: Final = 1
# Settings a resumed run may change: more epochs, or a different patience, extend the same
# trajectory. Any other difference would make the resumed run a different experiment.
_RESUMABLE_CHANGES: Final = frozenset({"epochs", "early_stopping_patience"})
# Rows per forward pass when evaluating; a memory bound only, it does not change results.
_EVAL_CHUNK: Final = 1024


@dataclass(frozen=True)
class Hyperparameters:
    """How to train; ``ValueError`` on construction names every setting out of range."""

    epochs: int = 20
    batch_size: int = 64
    learning_rate: float = 1e-3
    # sgd uses momentum 0.9: plain SGD is too slow to be a useful choice here.
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    weight_decay: float = 0.0
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    seed: int = 0
    early_stopping_patience: int | None = None

    def __post_init__(self) -> None:
        problems = []
        if self.epochs < 1:
            problems.append("epochs must be at least 1")
        if self.batch_size < 1:
            problems.append("batch_size must be at least 1")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            problems.append("learning_rate must be a positive number")
        if self.optimizer not in ("adam", "adamw", "sgd"):
            problems.append("optimizer must be adam, adamw or sgd")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            problems.append("weight_decay must be zero or positive")
        for name in ("val_fraction", "test_fraction"):
            if not 0 <= getattr(self, name) < 1:
                problems.append(f"{name} must be in [0, 1)")
        if self.val_fraction + self.test_fraction >= 1:
            problems.append("val_fraction + test_fraction must leave rows to train on")
        if self.seed < 0:
            problems.append("seed must be zero or positive")
        if self.early_stopping_patience is not None and self.early_stopping_patience < 1:
            problems.append("early_stopping_patience must be at least 1 (or None)")
        if problems:
            raise ValueError("; ".join(problems))


@dataclass(frozen=True)
class TrainingData:
    x: np.ndarray  # float32 [N, *input_shape]
    y: np.ndarray  # int64 class indices [N], or float32 targets [N] / [N, k]
    task: Task
    classes: list[str] | None  # labels in index order (classification), None for regression

    @property
    def outputs(self) -> int:
        """Model outputs the data needs: one logit per class, or one value per target."""
        if self.classes is not None:
            return len(self.classes)
        return 1 if np.ndim(self.y) == 1 else int(np.shape(self.y)[1])

    def check(self) -> None:
        """Raise ``ValueError`` unless the arrays and the task agree."""
        x, y = np.asarray(self.x), np.asarray(self.y)
        if x.ndim < 2 or len(x) == 0:
            raise ValueError(f"x must be [rows, *sample_shape] with rows, got {list(x.shape)}")
        if len(y) != len(x):
            raise ValueError(f"x has {len(x)} rows but y has {len(y)}")
        if not np.isfinite(x).all():
            raise ValueError("x holds NaN or infinite values")
        if self.task == "classification":
            if not self.classes:
                raise ValueError("classification needs the class labels")
            if y.ndim != 1 or y.dtype.kind not in "iu":
                raise ValueError("classification targets must be integer class indices [N]")
            if y.min() < 0 or y.max() >= len(self.classes):
                raise ValueError(f"class indices must lie in 0..{len(self.classes) - 1}")
        elif self.task == "regression":
            if self.classes is not None:
                raise ValueError("regression data has no class labels")
            if y.ndim not in (1, 2) or y.dtype.kind not in "fiu" or not np.isfinite(y).all():
                raise ValueError("regression targets must be finite numbers [N] or [N, k]")
        else:
            raise ValueError(f"unknown task {self.task!r}")


@dataclass(frozen=True)
class EpochReport:
    epoch: int
    epochs: int
    train_loss: float
    val_loss: float | None
    metrics: dict[str, float]  # validation accuracy (classification) or rmse (regression)
    seconds: float


@dataclass
class Checkpoint:
    """Everything needed to carry on after ``epoch`` exactly as an uninterrupted run would.

    Losses of regression runs are in standardized target units (``target_scaling``).
    """

    epoch: int
    model_state: dict[str, torch.Tensor]
    # Per-parameter optimizer state; its hyperparameters come from ``hyperparameters``.
    optimizer_state: dict[int, dict[str, Any]]
    rng_state: torch.Tensor
    shuffle_state: torch.Tensor
    history: History
    best_state: dict[str, torch.Tensor] | None
    best_val_loss: float | None
    epochs_since_best: int
    input_scaling: tuple[torch.Tensor, torch.Tensor] | None  # (mean, std), float64
    target_scaling: tuple[torch.Tensor, torch.Tensor] | None
    hyperparameters: dict[str, Any]
    rows: int
    cuda_rng_state: torch.Tensor | None = None

    def to_bytes(self) -> bytes:
        """A safetensors file: the tensors, plus the rest as JSON in its metadata."""
        tensors = {f"model.{k}": v for k, v in self.model_state.items()}
        tensors |= {f"best.{k}": v for k, v in (self.best_state or {}).items()}
        optimizer: dict[str, dict[str, Any]] = {}
        for index, entries in self.optimizer_state.items():
            layout = optimizer.setdefault(str(index), {})
            for key, value in entries.items():
                if isinstance(value, torch.Tensor):
                    tensors[f"optim.{index}.{key}"] = value
                    layout[key] = {"tensor": True}
                else:
                    layout[key] = {"value": value}
        tensors["rng.global"] = self.rng_state
        tensors["rng.shuffle"] = self.shuffle_state
        if self.cuda_rng_state is not None:
            tensors["rng.cuda"] = self.cuda_rng_state
        for name, scaling in (("input", self.input_scaling), ("target", self.target_scaling)):
            if scaling is not None:
                tensors[f"scale.{name}.mean"], tensors[f"scale.{name}.std"] = scaling
        meta = {
            "version": _CHECKPOINT_VERSION,
            "epoch": self.epoch,
            "history": self.history,
            "has_best": self.best_state is not None,
            "best_val_loss": self.best_val_loss,
            "epochs_since_best": self.epochs_since_best,
            "hyperparameters": self.hyperparameters,
            "rows": self.rows,
            "optimizer": optimizer,
        }
        cpu = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        out: bytes = safetensors.torch.save(cpu, metadata={_CHECKPOINT_KEY: json.dumps(meta)})
        return out

    @classmethod
    def from_bytes(cls, data: bytes) -> Checkpoint:
        """Read ``to_bytes`` output; raise ``NotSafetensors`` or ``CheckpointInvalid``."""
        tensors = load_safetensors(data)
        # load_safetensors has validated the header, so it can be read without checks.
        (header_len,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8 : 8 + header_len])
        raw = header.get("__metadata__", {}).get(_CHECKPOINT_KEY)
        if raw is None:
            raise CheckpointInvalid("the file is not a training checkpoint")
        try:
            meta = json.loads(raw)
            if meta["version"] != _CHECKPOINT_VERSION:
                raise CheckpointInvalid(f"unsupported checkpoint version {meta['version']!r}")
            optimizer = {
                int(index): {
                    key: tensors[f"optim.{index}.{key}"] if "tensor" in entry else entry["value"]
                    for key, entry in layout.items()
                }
                for index, layout in meta["optimizer"].items()
            }

            def group(prefix: str) -> dict[str, torch.Tensor]:
                return {
                    k.removeprefix(prefix): v
                    for k, v in tensors.items()
                    if k[: len(prefix)] == prefix
                }

            def scaling(name: str) -> tuple[torch.Tensor, torch.Tensor] | None:
                if f"scale.{name}.mean" not in tensors:
                    return None
                return tensors[f"scale.{name}.mean"], tensors[f"scale.{name}.std"]

            return cls(
                epoch=int(meta["epoch"]),
                model_state=group("model."),
                optimizer_state=optimizer,
                rng_state=tensors["rng.global"],
                shuffle_state=tensors["rng.shuffle"],
                history=list(meta["history"]),
                best_state=group("best.") if meta["has_best"] else None,
                best_val_loss=meta["best_val_loss"],
                epochs_since_best=int(meta["epochs_since_best"]),
                input_scaling=scaling("input"),
                target_scaling=scaling("target"),
                hyperparameters=dict(meta["hyperparameters"]),
                rows=int(meta["rows"]),
                cuda_rng_state=tensors.get("rng.cuda"),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CheckpointInvalid(f"malformed checkpoint metadata ({exc!r})") from None


@dataclass(frozen=True)
class TrainingResult:
    state_dict: dict[str, torch.Tensor]  # CPU, contiguous, scaling folded in
    history: History
    metrics: dict[str, Any]
    epochs_run: int
    stopped_early: bool


def seeded_model(build: Callable[[], nn.Module], seed: int) -> nn.Module:
    """``build()`` with the CPU RNG seeded, leaving the caller's RNG state untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        return build()


def _split_sizes(rows: int, val_fraction: float, test_fraction: float) -> tuple[int, int]:
    n_test = max(1, round(rows * test_fraction)) if test_fraction > 0 else 0
    n_val = max(1, round(rows * val_fraction)) if val_fraction > 0 else 0
    # Training needs a row more than evaluation does: give up validation rows first.
    excess = n_test + n_val - (rows - 1)
    if excess > 0:
        cut = min(excess, n_val)
        n_val, n_test = n_val - cut, n_test - (excess - cut)
    return n_val, n_test


def split_indices(
    data: TrainingData, *, val_fraction: float, test_fraction: float, seed: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Sorted ``(train, val, test)`` row indices, the same for the same data and seed.

    Classification splits are stratified: each class's rows are spread evenly over [0, 1)
    in random order, and test, validation and train take consecutive stretches of that line
    in this order. Every class contributes its share to each split (within a row), and as
    the last row of a class sits at or past the middle, rare classes keep a training row
    while validation and test take less than half of the rows.
    """
    data.check()
    rows = len(data.x)
    n_val, n_test = _split_sizes(rows, val_fraction, test_fraction)
    rng = np.random.default_rng(seed)
    if data.task == "classification":
        labels = np.asarray(data.y, dtype=np.int64)
        position = np.empty(rows)
        for label in np.unique(labels):
            members = np.flatnonzero(labels == label)
            position[members] = (rng.permutation(len(members)) + 0.5) / len(members)
        # Classes of equal size land on equal positions; a random tie-break mixes them.
        order = np.lexsort((rng.permutation(rows), position))
    else:
        order = rng.permutation(rows)
    test, val, train = np.split(order, [n_test, n_test + n_val])
    return np.sort(train), np.sort(val), np.sort(test)


def _has_parameters(module: nn.Module) -> bool:
    return next(module.parameters(recurse=False), None) is not None


def _input_linear(model: nn.Module, features: int) -> nn.Linear | None:
    """The first layer, when it is a Linear reading the flattened sample (an MLP)."""
    first = next((m for m in model.modules() if _has_parameters(m)), None)
    if isinstance(first, nn.Linear) and first.in_features == features and first.bias is not None:
        return first
    return None


def _output_linear(model: nn.Module, outputs: int) -> nn.Linear | None:
    # The families in ``architectures`` all end in a Linear registered last.
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if linears and linears[-1].out_features == outputs and linears[-1].bias is not None:
        return linears[-1]
    return None


def _standardize(values: npt.NDArray[Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """Column means and stds (float64); a near-constant column keeps std 1, as sklearn does."""
    mean = values.mean(axis=0, dtype=np.float64)
    std = values.std(axis=0, dtype=np.float64)
    std = np.where(std < 1e-8 * np.maximum(1.0, np.abs(mean)), 1.0, std)
    return torch.from_numpy(mean), torch.from_numpy(std)


@torch.no_grad()
def _fold_input(layer: nn.Linear, scaling: tuple[torch.Tensor, torch.Tensor]) -> None:
    mean, std = scaling
    weight = layer.weight.double() / std.to(layer.weight.device)
    bias = layer.bias.double() - weight @ mean.to(layer.weight.device)
    layer.weight.copy_(weight)
    layer.bias.copy_(bias)


@torch.no_grad()
def _fold_output(layer: nn.Linear, scaling: tuple[torch.Tensor, torch.Tensor]) -> None:
    mean, std = (t.to(layer.weight.device) for t in scaling)
    layer.weight.copy_(layer.weight.double() * std[:, None])
    layer.bias.copy_(layer.bias.double() * std + mean)


@torch.no_grad()
def _unfold_input(layer: nn.Linear, scaling: tuple[torch.Tensor, torch.Tensor]) -> None:
    """The inverse of ``_fold_input``: the layer then takes standardized inputs and gives what
    it gave for raw ones (a fine-tuned base version has its own scaling folded in)."""
    mean, std = (t.to(layer.weight.device) for t in scaling)
    weight = layer.weight.double()
    layer.bias.copy_(layer.bias.double() + weight @ mean)
    layer.weight.copy_(weight * std)


@torch.no_grad()
def _unfold_output(layer: nn.Linear, scaling: tuple[torch.Tensor, torch.Tensor]) -> None:
    mean, std = (t.to(layer.weight.device) for t in scaling)
    layer.weight.copy_(layer.weight.double() / std[:, None])
    layer.bias.copy_((layer.bias.double() - mean) / std)


def _cpu_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in state.items()}


def _cuda_index(device: torch.device) -> int:
    return device.index if device.index is not None else torch.cuda.current_device()


@contextmanager
def _forked_rng(device: torch.device) -> Iterator[None]:
    """Seeding inside this leaves the caller's RNG state (and the training device's) as it was."""
    devices = [_cuda_index(device)] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, device_type="cuda"):
        yield


def _optimizer(model: nn.Module, hp: Hyperparameters) -> torch.optim.Optimizer:
    params = model.parameters()
    if hp.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=hp.learning_rate, momentum=0.9, weight_decay=hp.weight_decay
        )
    kind = torch.optim.AdamW if hp.optimizer == "adamw" else torch.optim.Adam
    return kind(params, lr=hp.learning_rate, weight_decay=hp.weight_decay)


@torch.inference_mode()
def _outputs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    return torch.cat([model(x[i : i + _EVAL_CHUNK]) for i in range(0, len(x), _EVAL_CHUNK)])


@dataclass
class _Prepared:
    """The data as the loop uses it: split, reshaped for the model, scaled, on the device."""

    train_rows: npt.NDArray[np.int64]
    val_rows: npt.NDArray[np.int64]
    test_rows: npt.NDArray[np.int64]
    x: npt.NDArray[np.float32]  # raw, flattened for an MLP
    y: npt.NDArray[Any]  # int64 [N], or float32 [N, k]
    first: nn.Linear | None  # where input scaling is folded
    last: nn.Linear | None  # where target scaling is folded
    input_scaling: tuple[torch.Tensor, torch.Tensor] | None
    target_scaling: tuple[torch.Tensor, torch.Tensor] | None
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor


def _prepare(
    model: nn.Module,
    data: TrainingData,
    hp: Hyperparameters,
    device: torch.device,
    resume: Checkpoint | None,
    from_base: bool,
) -> _Prepared:
    train_rows, val_rows, test_rows = split_indices(
        data, val_fraction=hp.val_fraction, test_fraction=hp.test_fraction, seed=hp.seed
    )
    x = np.asarray(data.x, dtype=np.float32)
    features = math.prod(x.shape[1:])
    first = _input_linear(model, features)
    if first is not None:
        x = x.reshape(len(x), features)
    y: npt.NDArray[Any]
    if data.task == "classification":
        y, last = np.asarray(data.y, dtype=np.int64), None
    else:
        y = np.asarray(data.y, dtype=np.float32).reshape(len(x), -1)
        last = _output_linear(model, data.outputs)
    if resume is None:
        input_scaling = _standardize(x[train_rows]) if first is not None else None
        target_scaling = _standardize(y[train_rows]) if last is not None else None
        if from_base:
            # Trained weights map raw inputs to raw outputs: make them take the scaled data
            # the loop feeds, so that epoch 0 is exactly the base model.
            if first is not None and input_scaling is not None:
                _unfold_input(first, input_scaling)
            if last is not None and target_scaling is not None:
                _unfold_output(last, target_scaling)
    else:
        _check_resume(resume, hp, len(x))
        input_scaling, target_scaling = resume.input_scaling, resume.target_scaling
        if (input_scaling is None) != (first is None) or (target_scaling is None) != (last is None):
            raise CheckpointInvalid("it was made for a model of another architecture")

    def scaled(
        values: npt.NDArray[Any], scaling: tuple[torch.Tensor, torch.Tensor] | None
    ) -> npt.NDArray[Any]:
        if scaling is None:
            return values
        out: npt.NDArray[Any] = (values - scaling[0].numpy()) / scaling[1].numpy()
        return out.astype(np.float32)

    x_scaled, y_scaled = scaled(x, input_scaling), scaled(y, target_scaling)

    def on_device(array: npt.NDArray[Any], rows: npt.NDArray[np.int64]) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array[rows])).to(device)

    return _Prepared(
        train_rows=train_rows,
        val_rows=val_rows,
        test_rows=test_rows,
        x=x,
        y=y,
        first=first,
        last=last,
        input_scaling=input_scaling,
        target_scaling=target_scaling,
        x_train=on_device(x_scaled, train_rows),
        y_train=on_device(y_scaled, train_rows),
        x_val=on_device(x_scaled, val_rows),
        y_val=on_device(y_scaled, val_rows),
    )


def _check_outputs(model: nn.Module, sample: torch.Tensor, data: TrainingData) -> None:
    """One forward pass up front, so a model that does not fit fails clearly, not mid-run."""
    shape = list(data.x.shape[1:])
    try:
        out = _outputs(model, sample)
    except RuntimeError as exc:
        raise ShapeMismatch(
            f"the model cannot take samples of shape {shape}: {str(exc)[:200]}"
        ) from None
    if tuple(out.shape) != (1, data.outputs):
        what = "classes" if data.task == "classification" else "target values"
        raise ShapeMismatch(
            f"the model gives {list(out.shape)[1:]} outputs per sample, but the data has "
            f"{data.outputs} {what}"
        )


def _check_resume(checkpoint: Checkpoint, hp: Hyperparameters, rows: int) -> None:
    if checkpoint.rows != rows:
        raise CheckpointInvalid(f"it was made on {checkpoint.rows} rows, this data has {rows}")
    current = asdict(hp)
    for name in (f.name for f in fields(hp)):
        if name in _RESUMABLE_CHANGES:
            continue
        if checkpoint.hyperparameters.get(name) != current[name]:
            raise CheckpointInvalid(
                f"it was made with {name}={checkpoint.hyperparameters.get(name)!r}, "
                f"this run has {name}={current[name]!r}"
            )


@dataclass
class _Progress:
    """What changes from epoch to epoch besides the weights and the optimizer."""

    epoch: int
    history: History
    best_state: dict[str, torch.Tensor] | None
    best_loss: float | None
    since_best: int


def _start(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    shuffle: torch.Generator,
    hp: Hyperparameters,
    device: torch.device,
    resume: Checkpoint | None,
) -> _Progress:
    """Seed a new run, or put everything back where ``resume`` left it (inside the RNG fork)."""
    if resume is None:
        torch.default_generator.manual_seed(hp.seed)
        if device.type == "cuda":
            torch.cuda.default_generators[_cuda_index(device)].manual_seed(hp.seed)
        shuffle.manual_seed(hp.seed)
        return _Progress(epoch=0, history=[], best_state=None, best_loss=None, since_best=0)
    try:
        model.load_state_dict(resume.model_state)
        groups = optimizer.state_dict()["param_groups"]
        optimizer.load_state_dict({"state": resume.optimizer_state, "param_groups": groups})
    except (RuntimeError, KeyError, ValueError) as exc:
        raise CheckpointInvalid(f"it does not fit this model ({str(exc)[:200]})") from None
    torch.set_rng_state(resume.rng_state)
    if device.type == "cuda" and resume.cuda_rng_state is not None:
        torch.cuda.set_rng_state(resume.cuda_rng_state, device)
    shuffle.set_state(resume.shuffle_state)
    return _Progress(
        epoch=resume.epoch,
        history=[dict(entry) for entry in resume.history],
        best_state=resume.best_state,
        best_loss=resume.best_val_loss,
        since_best=resume.epochs_since_best,
    )


def _val_metrics(
    outputs: torch.Tensor,
    targets: torch.Tensor,
    task: Task,
    target_scaling: tuple[torch.Tensor, torch.Tensor] | None,
) -> dict[str, float]:
    if task == "classification":
        return {"accuracy": (outputs.argmax(1) == targets).double().mean().item()}
    per_output = (outputs - targets).double().pow(2).mean(0).sqrt()
    if target_scaling is not None:
        per_output = per_output * target_scaling[1].to(per_output.device)
    return {"rmse": per_output.mean().item()}


def _snapshot(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    shuffle: torch.Generator,
    progress: _Progress,
    prepared: _Prepared,
    hp: Hyperparameters,
    device: torch.device,
) -> Checkpoint:
    optimizer_state = {
        int(index): {
            key: value.detach().to("cpu", copy=True) if isinstance(value, torch.Tensor) else value
            for key, value in entries.items()
        }
        for index, entries in optimizer.state_dict()["state"].items()
    }
    return Checkpoint(
        epoch=progress.epoch,
        model_state=_cpu_state(model.state_dict()),
        optimizer_state=optimizer_state,
        rng_state=torch.get_rng_state(),
        shuffle_state=shuffle.get_state(),
        history=[dict(entry) for entry in progress.history],
        # Never modified in place (a new best replaces the dict), so sharing it is safe.
        best_state=progress.best_state,
        best_val_loss=progress.best_loss,
        epochs_since_best=progress.since_best,
        input_scaling=prepared.input_scaling,
        target_scaling=prepared.target_scaling,
        hyperparameters=asdict(hp),
        rows=len(prepared.x),
        cuda_rng_state=torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
    )


def _test_metrics(
    model: nn.Module, prepared: _Prepared, data: TrainingData, device: torch.device
) -> dict[str, Any]:
    """Metrics of the finished, folded model on raw inputs: exactly what serving will see."""
    split, rows = "test", prepared.test_rows
    if len(rows) == 0:
        split, rows = ("validation", prepared.val_rows)
        if len(rows) == 0:
            split, rows = "train", prepared.train_rows
    inputs = torch.from_numpy(np.ascontiguousarray(prepared.x[rows])).to(device)
    predicted = _outputs(model, inputs).cpu().numpy()
    if data.classes is not None:
        metrics = classification_metrics(prepared.y[rows], predicted.argmax(1), data.classes)
    else:
        truth = np.asarray(data.y, dtype=np.float32)[rows]
        metrics = regression_metrics(truth, predicted.reshape(truth.shape))
    sizes = (len(prepared.train_rows), len(prepared.val_rows), len(prepared.test_rows))
    metrics["evaluated_on"] = split
    metrics["rows"] = dict(zip(("train", "validation", "test"), sizes, strict=True))
    return metrics


def train(
    model: nn.Module,
    data: TrainingData,
    hp: Hyperparameters,
    *,
    device: torch.device,
    on_epoch: Callable[[EpochReport, Checkpoint], None] | None = None,
    resume: Checkpoint | None = None,
    should_stop: Callable[[], bool] | None = None,
    from_base: bool = False,
) -> TrainingResult:
    """Fit ``model`` on ``data``; afterwards the model holds the returned weights, in eval mode.

    ``on_epoch`` gets each epoch's report and a checkpoint to resume from. ``should_stop``
    is called before every batch (keep it cheap) and ends the run with ``Canceled``. With a
    validation split the best epoch's weights (by validation loss) are returned, and
    ``early_stopping_patience`` epochs without improvement end the run. ``from_base`` says the
    model holds trained weights (fine-tuning) whose outputs must not change before training.
    """
    prepared = _prepare(model, data, hp, device, resume, from_base)
    x_train, y_train = prepared.x_train, prepared.y_train
    has_val = len(prepared.val_rows) > 0
    model.to(device)
    _check_outputs(model, x_train[:1], data)
    loss_fn: nn.Module = nn.CrossEntropyLoss() if data.task == "classification" else nn.MSELoss()
    optimizer = _optimizer(model, hp)
    patience = hp.early_stopping_patience if has_val else None

    with _forked_rng(device):
        shuffle = torch.Generator()
        progress = _start(model, optimizer, shuffle, hp, device, resume)
        while progress.epoch < hp.epochs and not (
            patience is not None and progress.since_best >= patience
        ):
            progress.epoch += 1
            began = time.perf_counter()
            model.train()
            order = torch.randperm(len(x_train), generator=shuffle).to(device)
            # Summed on the device: one synchronization an epoch instead of one a batch.
            total = torch.zeros((), device=device)
            for begin in range(0, len(order), hp.batch_size):
                if should_stop is not None and should_stop():
                    raise Canceled(epochs_completed=progress.epoch - 1)
                batch = order[begin : begin + hp.batch_size]
                optimizer.zero_grad(set_to_none=True)
                loss = loss_fn(model(x_train[batch]), y_train[batch])
                loss.backward()
                optimizer.step()
                total += loss.detach() * len(batch)
            train_loss = total.item() / len(x_train)
            if not math.isfinite(train_loss):
                raise Diverged(epoch=progress.epoch)

            val_loss: float | None = None
            metrics: dict[str, float] = {}
            if has_val:
                outputs = _outputs(model, prepared.x_val)
                val_loss = float(loss_fn(outputs, prepared.y_val).item())
                metrics = _val_metrics(outputs, prepared.y_val, data.task, prepared.target_scaling)
                if progress.best_loss is None or val_loss < progress.best_loss:
                    progress.best_loss, progress.since_best = val_loss, 0
                    progress.best_state = _cpu_state(model.state_dict())
                else:
                    progress.since_best += 1
            progress.history.append(
                {"epoch": progress.epoch, "train_loss": train_loss, "val_loss": val_loss}
            )
            if on_epoch is not None:
                report = EpochReport(
                    epoch=progress.epoch,
                    epochs=hp.epochs,
                    train_loss=train_loss,
                    val_loss=val_loss,
                    metrics=metrics,
                    seconds=time.perf_counter() - began,
                )
                on_epoch(
                    report, _snapshot(model, optimizer, shuffle, progress, prepared, hp, device)
                )

    if progress.best_state is not None:
        model.load_state_dict(progress.best_state)
    if prepared.first is not None and prepared.input_scaling is not None:
        _fold_input(prepared.first, prepared.input_scaling)
    if prepared.last is not None and prepared.target_scaling is not None:
        _fold_output(prepared.last, prepared.target_scaling)
    metrics_out = _test_metrics(model, prepared, data, device)
    metrics_out["history"] = progress.history
    return TrainingResult(
        state_dict=_cpu_state(model.state_dict()),
        history=progress.history,
        metrics=metrics_out,
        epochs_run=progress.epoch,
        stopped_early=progress.epoch < hp.epochs,
    )
