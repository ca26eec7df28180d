"""The epoch loop: fit, validate, keep the best epoch, checkpoint after every epoch.

Runs are reproducible on the CPU: the split comes from the seed, batches are drawn from a
dedicated generator seeded from it, and the global RNG (dropout) is seeded inside a fork so
the caller's random state is left as it was. A :class:`Checkpoint` holds every piece of
that state, so a run resumed from one ends bit-for-bit where an uninterrupted run would.
The finished model has its scaling folded in, and its test metrics are measured the way
serving will run it: a plain forward pass on raw inputs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from aiaas.ml.errors import Canceled, CheckpointInvalid, Diverged, ShapeMismatch
from aiaas.ml.evaluation import infer, model_metrics
from aiaas.ml.task import Task
from aiaas.ml.training.checkpoint import Checkpoint, History
from aiaas.ml.training.data import Hyperparameters, TrainingData
from aiaas.ml.training.prepare import Prepared, prepare
from aiaas.ml.training.scaling import fold_input, fold_output


@dataclass(frozen=True)
class EpochReport:
    epoch: int
    epochs: int
    train_loss: float
    val_loss: float | None
    metrics: dict[str, float]  # validation accuracy (classification) or rmse (regression)
    seconds: float


@dataclass(frozen=True)
class TrainingResult:
    state_dict: dict[str, torch.Tensor]  # CPU, contiguous, scaling folded in
    history: History
    metrics: dict[str, Any]
    epochs_run: int
    stopped_early: bool


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


def _check_outputs(model: nn.Module, sample: torch.Tensor, data: TrainingData) -> None:
    """One forward pass up front, so a model that does not fit fails clearly, not mid-run."""
    shape = list(data.x.shape[1:])
    try:
        out = infer(model, sample)
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
    prepared: Prepared,
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
    model: nn.Module, prepared: Prepared, data: TrainingData, device: torch.device
) -> dict[str, Any]:
    """Metrics of the finished, folded model on raw inputs: exactly what serving will see."""
    split, rows = "test", prepared.test_rows
    if len(rows) == 0:
        split, rows = ("validation", prepared.val_rows)
        if len(rows) == 0:
            split, rows = "train", prepared.train_rows
    truth: npt.NDArray[Any]
    if data.classes is not None:
        truth = prepared.y[rows]
    else:
        # The targets as the model was trained on them (float32), in their original shape.
        truth = np.asarray(data.y, dtype=np.float32)[rows]
    metrics = model_metrics(model, prepared.x[rows], truth, data.classes, device=device)
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
    prepared = prepare(model, data, hp, device, resume, from_base)
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
                outputs = infer(model, prepared.x_val)
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
        fold_input(prepared.first, prepared.input_scaling)
    if prepared.last is not None and prepared.target_scaling is not None:
        fold_output(prepared.last, prepared.target_scaling)
    metrics_out = _test_metrics(model, prepared, data, device)
    metrics_out["history"] = progress.history
    return TrainingResult(
        state_dict=_cpu_state(model.state_dict()),
        history=progress.history,
        metrics=metrics_out,
        epochs_run=progress.epoch,
        stopped_early=progress.epoch < hp.epochs,
    )
