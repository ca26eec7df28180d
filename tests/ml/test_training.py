from __future__ import annotations

import json
import struct
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import safetensors.torch
import torch
from torch import nn

from aiaas.ml.architectures import build_model, parse_config
from aiaas.ml.defaults import (
    default_config,
    fit_config,
    recommended_hyperparameters,
)
from aiaas.ml.errors import Canceled, CheckpointInvalid, Diverged, NotSafetensors, ShapeMismatch
from aiaas.ml.training import (
    Checkpoint,
    EpochReport,
    Hyperparameters,
    TrainingData,
    seeded_model,
    split_indices,
    train,
)

CPU = torch.device("cpu")


def _model(architecture: str, config: dict[str, Any], seed: int = 0) -> nn.Module:
    parsed = parse_config(architecture, config, max_parameters=10**8)
    return seeded_model(lambda: build_model(architecture, parsed), seed)


def _blobs(rows: int = 150, features: int = 5, classes: int = 3, seed: int = 0) -> TrainingData:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, rows)
    centers = rng.normal(0, 3, (classes, features))
    # Offset and scale the columns so that standardization has something to undo.
    x = (centers[y] + rng.normal(0, 1, (rows, features))) * np.arange(1, features + 1) + 50
    labels = [f"c{i}" for i in range(classes)]
    return TrainingData(x.astype(np.float32), y.astype(np.int64), "classification", labels)


def _regression(rows: int = 160, outputs: int | None = None, seed: int = 0) -> TrainingData:
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (rows, 4))
    weights = rng.normal(0, 1, (4, outputs or 1))
    y = (x @ weights + 0.3 * x[:, :1] ** 2) * 30 + 200
    y = y[:, 0] if outputs is None else y
    return TrainingData((x * 10 - 3).astype(np.float32), y.astype(np.float32), "regression", None)


def _mlp(data: TrainingData, *, dropout: float = 0.2, seed: int = 0) -> nn.Module:
    config = {
        "input_dim": data.x.shape[1],
        "hidden": [16, 8],
        "output_dim": data.outputs,
        "dropout": dropout,
    }
    return _model("mlp", config, seed)


def _waves(rows: int, steps: int = 32, seed: int = 0) -> TrainingData:
    """Noisy sine, square and sawtooth waves of random frequency, phase and amplitude."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, rows)
    cycles = rng.uniform(1.5, 4.0, (rows, 1))
    phase = rng.uniform(0, 1, (rows, 1))
    position = (np.arange(steps) * cycles / steps + phase) % 1.0
    shapes = np.stack(
        [np.sin(2 * np.pi * position), np.where(position < 0.5, 1.0, -1.0), 2 * position - 1]
    )
    amplitude = rng.uniform(0.5, 1.5, (rows, 1))
    x = shapes[y, np.arange(rows)] * amplitude + rng.normal(0, 0.1, (rows, steps))
    classes = ["sine", "square", "sawtooth"]
    return TrainingData(
        x[..., None].astype(np.float32), y.astype(np.int64), "classification", classes
    )


def _assert_same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


# --------------------------------------------------------------------------- splits


def test_split_is_a_deterministic_partition() -> None:
    data = _blobs(rows=101)
    train_rows, val_rows, test_rows = split_indices(
        data, val_fraction=0.1, test_fraction=0.2, seed=3
    )
    assert (len(train_rows), len(val_rows), len(test_rows)) == (71, 10, 20)
    combined = np.concatenate([train_rows, val_rows, test_rows])
    assert sorted(combined.tolist()) == list(range(101))
    again = split_indices(data, val_fraction=0.1, test_fraction=0.2, seed=3)
    for first, second in zip((train_rows, val_rows, test_rows), again, strict=True):
        assert np.array_equal(first, second)
    other = split_indices(data, val_fraction=0.1, test_fraction=0.2, seed=4)
    assert not np.array_equal(test_rows, other[2])


def test_classification_split_is_stratified() -> None:
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], [500, 300, 200])
    rng.shuffle(y)
    data = TrainingData(np.zeros((1000, 2), np.float32), y, "classification", ["a", "b", "c"])
    train_rows, val_rows, test_rows = split_indices(
        data, val_fraction=0.1, test_fraction=0.2, seed=0
    )
    for rows, share in ((train_rows, 0.7), (val_rows, 0.1), (test_rows, 0.2)):
        counts = np.bincount(y[rows], minlength=3)
        assert np.abs(counts - share * np.array([500, 300, 200])).max() <= 1


def test_rare_classes_stay_in_training() -> None:
    y = np.array([0] * 40 + [1, 2, 2])
    data = TrainingData(np.zeros((43, 1), np.float32), y, "classification", ["a", "b", "c"])
    for seed in range(5):
        train_rows, _, _ = split_indices(data, val_fraction=0.1, test_fraction=0.2, seed=seed)
        assert set(y[train_rows]) == {0, 1, 2}


@pytest.mark.parametrize(
    ("rows", "sizes"), [(1, (1, 0, 0)), (2, (1, 0, 1)), (3, (1, 1, 1)), (10, (7, 1, 2))]
)
def test_tiny_splits_keep_a_training_row(rows: int, sizes: tuple[int, int, int]) -> None:
    data = _regression(rows=rows)
    split = split_indices(data, val_fraction=0.1, test_fraction=0.2, seed=0)
    assert tuple(len(part) for part in split) == sizes


# --------------------------------------------------------------------------- determinism


def test_training_is_deterministic_and_leaves_the_global_rng_alone() -> None:
    data = _blobs()
    hp = Hyperparameters(epochs=5, batch_size=16, seed=7)
    before = torch.get_rng_state()
    first = train(_mlp(data), data, hp, device=CPU)
    assert torch.equal(torch.get_rng_state(), before)
    second = train(_mlp(data), data, hp, device=CPU)
    _assert_same_state(first.state_dict, second.state_dict)
    assert first.metrics == second.metrics
    assert first.history == second.history
    different = train(
        _mlp(data), data, Hyperparameters(epochs=5, batch_size=16, seed=8), device=CPU
    )
    assert different.history != first.history


def test_seeded_model_is_reproducible_without_touching_the_global_rng() -> None:
    before = torch.get_rng_state()
    a, b = _mlp(_blobs(), seed=1), _mlp(_blobs(), seed=1)
    assert torch.equal(torch.get_rng_state(), before)
    _assert_same_state(a.state_dict(), b.state_dict())
    assert not torch.equal(
        a.state_dict()["linears.0.weight"], _mlp(_blobs(), seed=2).state_dict()["linears.0.weight"]
    )


def _resume_case(name: str) -> tuple[TrainingData, Callable[[], nn.Module], Hyperparameters]:
    if name == "mlp-classification":
        data = _blobs()
        return data, lambda: _mlp(data), Hyperparameters(epochs=6, batch_size=16, seed=1)
    if name == "mlp-regression":
        data = _regression(outputs=2)
        return (
            data,
            lambda: _mlp(data),
            Hyperparameters(epochs=6, batch_size=32, optimizer="adamw", weight_decay=0.01),
        )
    if name == "cnn-sgd":
        rng = np.random.default_rng(0)
        x = rng.normal(0, 1, (60, 1, 6, 6)).astype(np.float32)
        data = TrainingData(
            x, (x.mean(axis=(1, 2, 3)) > 0).astype(np.int64), "classification", ["n", "p"]
        )
        config = default_config("cnn", (1, 6, 6), 2)
        return (
            data,
            lambda: _model("cnn", config),
            Hyperparameters(epochs=6, batch_size=16, optimizer="sgd", learning_rate=0.01),
        )
    data = _waves(60, steps=8)
    config = {**default_config("rnn", (8, 1), 3), "num_layers": 2, "dropout": 0.3, "hidden_size": 8}
    return (
        data,
        lambda: _model("rnn", config),
        Hyperparameters(epochs=6, batch_size=16, early_stopping_patience=10),
    )


@pytest.mark.parametrize("case", ["mlp-classification", "mlp-regression", "cnn-sgd", "rnn-dropout"])
def test_resuming_from_a_checkpoint_matches_an_uninterrupted_run(case: str) -> None:
    data, build, hp = _resume_case(case)
    checkpoints: dict[int, Checkpoint] = {}
    reports: list[EpochReport] = []

    def keep(report: EpochReport, checkpoint: Checkpoint) -> None:
        reports.append(report)
        checkpoints[report.epoch] = checkpoint

    full = train(build(), data, hp, device=CPU, on_epoch=keep)
    assert [r.epoch for r in reports] == [1, 2, 3, 4, 5, 6]
    assert all(r.epochs == 6 and r.val_loss is not None for r in reports)

    restored = Checkpoint.from_bytes(checkpoints[3].to_bytes())
    later: list[int] = []
    resumed = train(
        build(), data, hp, device=CPU, resume=restored, on_epoch=lambda r, _: later.append(r.epoch)
    )
    assert later == [4, 5, 6]
    _assert_same_state(full.state_dict, resumed.state_dict)
    assert resumed.metrics == full.metrics
    assert resumed.history == full.history
    assert (resumed.epochs_run, resumed.stopped_early) == (full.epochs_run, full.stopped_early)


def test_checkpoint_round_trip_keeps_every_field() -> None:
    data = _regression()
    saved: list[Checkpoint] = []
    train(
        _mlp(data),
        data,
        Hyperparameters(epochs=2),
        device=CPU,
        on_epoch=lambda _, c: saved.append(c),
    )
    original = saved[-1]
    copy = Checkpoint.from_bytes(original.to_bytes())
    assert copy.epoch == original.epoch == 2
    assert copy.history == original.history
    assert copy.best_val_loss == original.best_val_loss
    assert copy.epochs_since_best == original.epochs_since_best
    assert copy.hyperparameters == original.hyperparameters
    assert copy.rows == original.rows
    _assert_same_state(copy.model_state, original.model_state)
    assert copy.best_state is not None
    assert original.best_state is not None
    _assert_same_state(copy.best_state, original.best_state)
    assert torch.equal(copy.rng_state, original.rng_state)
    assert torch.equal(copy.shuffle_state, original.shuffle_state)
    for mine, theirs in (
        (copy.input_scaling, original.input_scaling),
        (copy.target_scaling, original.target_scaling),
    ):
        assert mine is not None
        assert theirs is not None
        assert all(torch.equal(a, b) for a, b in zip(mine, theirs, strict=True))
    assert copy.optimizer_state.keys() == original.optimizer_state.keys()
    for index, entries in original.optimizer_state.items():
        for key, value in entries.items():
            assert torch.equal(copy.optimizer_state[index][key], value)


def test_checkpoints_are_plain_safetensors() -> None:
    data = _blobs()
    saved: list[Checkpoint] = []
    train(
        _mlp(data),
        data,
        Hyperparameters(epochs=1),
        device=CPU,
        on_epoch=lambda _, c: saved.append(c),
    )
    raw = saved[0].to_bytes()
    (header_len,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + header_len])
    assert "aiaas.checkpoint" in header["__metadata__"]
    assert "model.linears.0.weight" in safetensors.torch.load(raw)


def test_bad_checkpoints_are_refused() -> None:
    with pytest.raises(NotSafetensors):
        Checkpoint.from_bytes(b"not a checkpoint at all")
    plain = safetensors.torch.save({"w": torch.zeros(2)})
    with pytest.raises(CheckpointInvalid, match="not a training checkpoint"):
        Checkpoint.from_bytes(plain)
    broken = safetensors.torch.save({"w": torch.zeros(2)}, metadata={"aiaas.checkpoint": "{}"})
    with pytest.raises(CheckpointInvalid, match="malformed"):
        Checkpoint.from_bytes(broken)


def test_resuming_with_other_settings_is_refused() -> None:
    data = _blobs()
    saved: list[Checkpoint] = []
    train(
        _mlp(data),
        data,
        Hyperparameters(epochs=2),
        device=CPU,
        on_epoch=lambda _, c: saved.append(c),
    )
    with pytest.raises(CheckpointInvalid, match="seed"):
        train(_mlp(data), data, Hyperparameters(epochs=4, seed=5), device=CPU, resume=saved[0])
    with pytest.raises(CheckpointInvalid, match="rows"):
        train(_mlp(data), _blobs(rows=90), Hyperparameters(epochs=4), device=CPU, resume=saved[0])
    # More epochs continue the same run.
    longer = train(_mlp(data), data, Hyperparameters(epochs=4), device=CPU, resume=saved[0])
    assert longer.epochs_run == 4


# --------------------------------------------------------------------------- scaling folds


def _last_epoch(data: TrainingData, hp: Hyperparameters) -> tuple[nn.Module, Checkpoint, nn.Module]:
    saved: list[Checkpoint] = []
    model = _mlp(data)
    train(model, data, hp, device=CPU, on_epoch=lambda _, c: saved.append(c))
    trained = _mlp(data, seed=99)
    trained.load_state_dict(saved[-1].model_state)
    return model, saved[-1], trained.eval()


@pytest.mark.parametrize("outputs", [None, 1, 3])
def test_scaling_is_folded_into_the_weights(outputs: int | None) -> None:
    data = _blobs() if outputs == 3 else _regression(outputs=outputs)
    # Without a validation split the last epoch's weights are the ones returned.
    hp = Hyperparameters(epochs=3, val_fraction=0.0)
    served, checkpoint, trained = _last_epoch(data, hp)
    assert checkpoint.input_scaling is not None
    mean, std = checkpoint.input_scaling
    raw = torch.from_numpy(data.x)
    with torch.inference_mode():
        expected = trained(((raw.double() - mean) / std).float())
        got = served.eval()(raw)
    if data.task == "regression":
        assert checkpoint.target_scaling is not None
        y_mean, y_std = checkpoint.target_scaling
        # The served model answers in target units (around 200 here)...
        assert float(got.mean()) > 100
        # ...and matches the training-time model in the units that model was trained in.
        got = ((got.double() - y_mean) / y_std).float()
    else:
        assert checkpoint.target_scaling is None
    assert torch.allclose(got, expected, atol=1e-5, rtol=0)


def test_the_returned_state_serves_raw_inputs() -> None:
    data = _regression()
    hp = Hyperparameters(epochs=60, batch_size=16, learning_rate=5e-3)
    result = train(_mlp(data, dropout=0.0), data, hp, device=CPU)
    fresh = _mlp(data, dropout=0.0, seed=5).eval()
    fresh.load_state_dict(result.state_dict)
    assert all(t.device.type == "cpu" and t.is_contiguous() for t in result.state_dict.values())
    with torch.inference_mode():
        predicted = fresh(torch.from_numpy(data.x))[:, 0].numpy()
    # Raw-scale targets around 200: an unfolded model would be off by about that much.
    assert np.abs(predicted - data.y).mean() < 10
    assert result.metrics["r2"] > 0.9
    assert result.metrics["evaluated_on"] == "test"


def test_conv_and_recurrent_models_train_on_raw_inputs() -> None:
    data = _waves(40, steps=8)
    saved: list[Checkpoint] = []
    model = _model("rnn", fit_config("rnn", {"cell": "gru", "hidden_size": 4}, (8, 1), 3))
    train(model, data, Hyperparameters(epochs=1), device=CPU, on_epoch=lambda _, c: saved.append(c))
    assert saved[0].input_scaling is None
    assert saved[0].target_scaling is None


def test_mlp_flattens_image_samples() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (50, 1, 4, 4)).astype(np.float32)
    y = (x.sum(axis=(1, 2, 3)) > 0).astype(np.int64)
    data = TrainingData(x, y, "classification", ["no", "yes"])
    model = _model("mlp", default_config("mlp", (1, 4, 4), 2))
    result = train(model, data, Hyperparameters(epochs=2), device=CPU)
    assert result.state_dict["linears.0.weight"].shape[1] == 16


# --------------------------------------------------------------------------- the loop


def test_early_stopping_keeps_the_best_epoch() -> None:
    # Random labels: the validation loss soon rises while the training loss falls.
    data = _blobs(rows=200, features=20)
    rng = np.random.default_rng(1)
    noisy = TrainingData(data.x, rng.integers(0, 3, 200), "classification", data.classes)
    config = {"input_dim": 20, "hidden": [128, 128], "output_dim": 3}
    hp = Hyperparameters(epochs=100, learning_rate=1e-2, batch_size=16, early_stopping_patience=3)
    saved: dict[int, Checkpoint] = {}
    result = train(
        _model("mlp", config),
        noisy,
        hp,
        device=CPU,
        on_epoch=lambda r, c: saved.update({r.epoch: c}),
    )
    assert result.stopped_early
    assert result.epochs_run < 100
    losses = [entry["val_loss"] for entry in result.history]
    assert isinstance(losses[0], float)
    best_epoch = int(np.argmin(losses)) + 1
    assert best_epoch == result.epochs_run - 3
    best = saved[result.epochs_run].best_state
    assert best is not None
    _assert_same_state(best, saved[best_epoch].model_state)

    # A run resumed from the final checkpoint has nothing left to do.
    again = train(_model("mlp", config), noisy, hp, device=CPU, resume=saved[result.epochs_run])
    _assert_same_state(again.state_dict, result.state_dict)
    assert again.stopped_early


def test_without_a_validation_split() -> None:
    data = _blobs()
    reports: list[EpochReport] = []
    hp = Hyperparameters(epochs=3, val_fraction=0.0, early_stopping_patience=1)
    result = train(_mlp(data), data, hp, device=CPU, on_epoch=lambda r, _: reports.append(r))
    assert [r.val_loss for r in reports] == [None, None, None]
    assert all(r.metrics == {} for r in reports)
    assert result.epochs_run == 3
    assert not result.stopped_early
    assert result.metrics["rows"]["validation"] == 0


def test_reports_and_metrics() -> None:
    data = _blobs()
    reports: list[EpochReport] = []
    result = train(
        _mlp(data),
        data,
        Hyperparameters(epochs=30, batch_size=16),
        device=CPU,
        on_epoch=lambda r, _: reports.append(r),
    )
    assert len(reports) == 30
    assert all(set(r.metrics) == {"accuracy"} and r.seconds >= 0 for r in reports)
    assert reports[-1].train_loss < reports[0].train_loss
    assert result.history == [
        {"epoch": r.epoch, "train_loss": r.train_loss, "val_loss": r.val_loss} for r in reports
    ]
    metrics = result.metrics
    assert metrics["accuracy"] > 0.9
    assert set(metrics["per_class"]) == {"c0", "c1", "c2"}
    assert metrics["history"] == result.history
    assert metrics["rows"] == {"train": 105, "validation": 15, "test": 30}
    assert json.loads(json.dumps(metrics)) == metrics


def test_regression_reports_rmse_in_target_units() -> None:
    data = _regression()
    reports: list[EpochReport] = []
    train(
        _mlp(data),
        data,
        Hyperparameters(epochs=2),
        device=CPU,
        on_epoch=lambda r, _: reports.append(r),
    )
    # Targets spread over tens of units: the report is not in standardized units.
    assert reports[0].metrics["rmse"] > 5
    assert reports[0].val_loss is not None
    assert reports[0].val_loss < 5


def test_should_stop_cancels_between_batches() -> None:
    data = _blobs()
    calls = 0

    def stop() -> bool:
        nonlocal calls
        calls += 1
        return calls > 10

    # 105 training rows in batches of 16: seven batches an epoch.
    with pytest.raises(Canceled) as caught:
        train(
            _mlp(data), data, Hyperparameters(epochs=5, batch_size=16), device=CPU, should_stop=stop
        )
    assert caught.value.epochs_completed == 1
    assert calls == 11


def test_divergence_is_reported() -> None:
    data = _regression()
    hp = Hyperparameters(epochs=5, optimizer="sgd", learning_rate=1e6)
    with pytest.raises(Diverged, match="learning rate"):
        train(_mlp(data, dropout=0.0), data, hp, device=CPU)


def test_a_model_that_does_not_fit_the_data_is_refused() -> None:
    data = _blobs(classes=4)
    with pytest.raises(ShapeMismatch, match="4 classes"):
        train(
            _model("mlp", {"input_dim": 5, "output_dim": 3}),
            data,
            Hyperparameters(epochs=1),
            device=CPU,
        )
    with pytest.raises(ShapeMismatch, match="cannot take"):
        train(
            _model("mlp", {"input_dim": 7, "output_dim": 4}),
            data,
            Hyperparameters(epochs=1),
            device=CPU,
        )


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"epochs": 0}, "epochs"),
        ({"batch_size": 0}, "batch_size"),
        ({"learning_rate": float("nan")}, "learning_rate"),
        ({"val_fraction": 0.5, "test_fraction": 0.5}, "leave rows"),
        ({"test_fraction": 1.0}, "test_fraction"),
        ({"early_stopping_patience": 0}, "patience"),
        ({"optimizer": "lbfgs"}, "optimizer"),
    ],
)
def test_hyperparameters_are_checked(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Hyperparameters(**changes)


@pytest.mark.parametrize(
    ("x", "y", "task", "classes", "message"),
    [
        (np.zeros((3,)), np.zeros(3, np.int64), "classification", ["a"], "rows"),
        (np.zeros((3, 2)), np.zeros(2, np.int64), "classification", ["a"], "rows"),
        (np.full((3, 2), np.nan), np.zeros(3, np.int64), "classification", ["a"], "NaN"),
        (np.zeros((3, 2)), np.array([0, 1, 2]), "classification", ["a", "b"], "0..1"),
        (np.zeros((3, 2)), np.zeros(3), "classification", ["a"], "integer"),
        (np.zeros((3, 2)), np.zeros(3), "regression", ["a"], "no class labels"),
        (np.zeros((3, 2)), np.zeros((3, 1, 1)), "regression", None, "finite"),
    ],
)
def test_inconsistent_data_is_refused(
    x: npt.NDArray[Any], y: npt.NDArray[Any], task: Any, classes: list[str] | None, message: str
) -> None:
    data = TrainingData(x.astype(np.float32), y, task, classes)
    with pytest.raises(ValueError, match=message):
        train(_model("mlp", {"input_dim": 2, "output_dim": 1}), data, Hyperparameters(), device=CPU)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_training_on_cuda_returns_cpu_results() -> None:
    data = _blobs()
    saved: list[Checkpoint] = []
    device = torch.device("cuda")
    hp = Hyperparameters(epochs=30, batch_size=16)
    result = train(_mlp(data), data, hp, device=device, on_epoch=lambda _, c: saved.append(c))
    assert all(t.device.type == "cpu" for t in result.state_dict.values())
    assert all(t.device.type == "cpu" for t in saved[-1].model_state.values())
    assert saved[-1].cuda_rng_state is not None
    assert result.metrics["accuracy"] > 0.9
    resumed = train(
        _mlp(data), data, hp, device=device, resume=Checkpoint.from_bytes(saved[1].to_bytes())
    )
    for key, value in result.state_dict.items():
        assert torch.allclose(resumed.state_dict[key], value, atol=1e-5)


# --------------------------------------------------------------------------- quality


def _classification(x: npt.NDArray[Any], y: npt.NDArray[Any], classes: list[str]) -> TrainingData:
    return TrainingData(x.astype(np.float32), y.astype(np.int64), "classification", classes)


def _quality(name: str, architecture: str, data: TrainingData, config: dict[str, Any]) -> float:
    hp = Hyperparameters(**recommended_hyperparameters(architecture, len(data.x)))
    model = _model(architecture, config)
    began = time.perf_counter()
    result = train(model, data, hp, device=CPU)
    seconds = time.perf_counter() - began
    accuracy = float(result.metrics["accuracy"])
    settings = f"{hp.epochs} epochs, batch {hp.batch_size}, lr {hp.learning_rate}"
    print(f"{name}: accuracy {accuracy:.4f} in {seconds:.1f}s ({settings})")
    return accuracy


@pytest.mark.slow
def test_quality_on_the_builtin_datasets() -> None:
    from sklearn.datasets import load_breast_cancer, load_digits, load_iris

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        digits = load_digits()
        data = _classification(
            digits.data.reshape(-1, 1, 8, 8), digits.target, [str(i) for i in range(10)]
        )
        # Quality only: the time target (60 s on two cores) is bench/training.py's to report.
        assert _quality("digits cnn", "cnn", data, default_config("cnn", (1, 8, 8), 10)) >= 0.97

        for name, load, floor in (
            ("iris", load_iris, 0.93),
            ("breast_cancer", load_breast_cancer, 0.95),
        ):
            bunch = load()
            data = _classification(bunch.data, bunch.target, [str(t) for t in bunch.target_names])
            config = default_config("mlp", data.x.shape[1:], data.outputs)
            assert _quality(f"{name} mlp", "mlp", data, config) >= floor

        # The GRU (three times slower to train here) is left to bench/training.py.
        waves = _waves(600)
        config = fit_config("rnn", {"cell": "lstm"}, (32, 1), 3)
        assert _quality("waves lstm", "rnn", waves, config) >= 0.95
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_fine_tuning_starts_from_the_base_models_outputs(task: str) -> None:
    # Features and targets far from standard scale, so scaling mistakes would show at once.
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((120, 4)) * [1.0, 10.0, 100.0, 0.1] + [5, -20, 300, 0]).astype(
        np.float32
    )
    if task == "classification":
        data = TrainingData(x=x, y=(x[:, 0] > 5).astype(np.int64), task="classification",
                            classes=["no", "yes"])  # fmt: skip
        outputs = 2
    else:
        y = (x @ np.array([1.0, 0.5, 0.01, 3.0]) * 40 + 700).astype(np.float32)
        data = TrainingData(x=x, y=y, task="regression", classes=None)
        outputs = 1
    config = parse_config(
        "mlp", {"input_dim": 4, "hidden": [8], "output_dim": outputs}, max_parameters=10**6
    )
    base = seeded_model(lambda: build_model("mlp", config), 0)
    train(base, data, Hyperparameters(epochs=5, batch_size=16), device=torch.device("cpu"))
    raw = torch.from_numpy(x)
    with torch.inference_mode():
        before = base(raw).clone()
    # A step size too small to move anything: the tuned model must equal its base.
    result = train(
        base,
        data,
        Hyperparameters(epochs=1, batch_size=16, learning_rate=1e-12, optimizer="sgd"),
        device=torch.device("cpu"),
        from_base=True,
    )
    tuned = seeded_model(lambda: build_model("mlp", config), 1)
    tuned.load_state_dict(result.state_dict)
    with torch.inference_mode():
        after = tuned(raw)
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-3)
