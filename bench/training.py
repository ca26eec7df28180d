"""Training quality and time on the built-in datasets, with the platform's defaults.

Each run goes through the code a training job runs: the built-in dataset, the default config
and hyperparameters chosen for it (``ml.defaults``), ``ml.training.train`` (seeded, with its
held-out test split), on the CPU with ``--threads`` torch threads (2 by default, the reference
machine's cores) or on CUDA. Targets (issue: training on workers):

- digits, default CNN: test accuracy >= 0.97 in <= 60 s on 2 CPU cores;
- waves, default LSTM and GRU: test accuracy >= 0.95;
- iris MLP >= 0.93; breast_cancer MLP >= 0.95;
- diabetes MLP: test RMSE reported beside scikit-learn's linear regression on the same split.

    python bench/training.py [--device cpu|cuda] [--threads 2] [--json out.json] [--only iris]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from aiaas.datasets.builtins import load_builtin
from aiaas.ml import architectures, defaults
from aiaas.ml.training import Hyperparameters, TrainingData, seeded_model, split_indices, train


@dataclass(frozen=True)
class Run:
    name: str
    dataset: str
    architecture: str
    config: dict[str, Any] = field(default_factory=dict)
    metric: str = "accuracy"
    target: float | None = None
    max_seconds: float | None = None


RUNS = (
    Run("digits-cnn", "builtin:digits", "cnn", target=0.97, max_seconds=60.0),
    Run("waves-lstm", "builtin:waves", "rnn", {"cell": "lstm"}, target=0.95),
    Run("waves-gru", "builtin:waves", "rnn", {"cell": "gru"}, target=0.95),
    Run("iris-mlp", "builtin:iris", "mlp", target=0.93),
    Run("breast_cancer-mlp", "builtin:breast_cancer", "mlp", target=0.95),
    Run("wine-mlp", "builtin:wine", "mlp"),
    Run("diabetes-mlp", "builtin:diabetes", "mlp", metric="rmse"),
)


def linear_baseline_rmse(data: TrainingData, hp: Hyperparameters) -> float:
    from sklearn.linear_model import LinearRegression

    train_rows, val_rows, test_rows = split_indices(
        data, val_fraction=hp.val_fraction, test_fraction=hp.test_fraction, seed=hp.seed
    )
    fit_rows = np.concatenate([train_rows, val_rows])
    model = LinearRegression().fit(data.x[fit_rows], data.y[fit_rows])
    error = model.predict(data.x[test_rows]) - data.y[test_rows]
    return float(np.sqrt(np.mean(error**2)))


def run_one(run: Run, device: torch.device) -> dict[str, Any]:
    arrays = load_builtin(run.dataset)
    classes = [str(c) for c in arrays.classes] if arrays.classes is not None else None
    data = TrainingData(x=arrays.x, y=arrays.y, task=arrays.task, classes=classes)
    outputs = len(classes) if classes is not None else 1
    shape = tuple(arrays.input_shape)
    raw = {**defaults.default_config(run.architecture, shape, outputs), **run.config}
    config = architectures.parse_config(
        run.architecture, defaults.fit_config(run.architecture, raw, shape, outputs),
        max_parameters=10**9,
    )  # fmt: skip
    chosen = defaults.recommended_hyperparameters(run.architecture, arrays.rows)
    hp = Hyperparameters(**chosen)
    model = seeded_model(lambda: architectures.build_model(run.architecture, config), hp.seed)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    result = train(model, data, hp, device=device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    value = float(result.metrics[run.metric])
    row: dict[str, Any] = {
        "run": run.name,
        "device": str(device),
        "rows": arrays.rows,
        "epochs_run": result.epochs_run,
        "hyperparameters": chosen,
        "seconds": round(seconds, 2),
        run.metric: round(value, 4),
    }
    ok = True
    if run.target is not None:
        ok = value >= run.target
        row["target"] = f"{run.metric} >= {run.target}"
    if run.max_seconds is not None and device.type == "cpu":
        ok = ok and seconds <= run.max_seconds
        row["target"] = row.get("target", "") + f", <= {run.max_seconds:g} s"
    if run.metric == "rmse":
        row["linear_regression_rmse"] = round(linear_baseline_rmse(data, hp), 4)
        row["r2"] = round(float(result.metrics["r2"]), 4)
    row["ok"] = ok
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", default="")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    wanted = {n for n in args.only.split(",") if n}
    rows = []
    for run in RUNS:
        if wanted and not any(run.name.startswith(w) for w in wanted):
            continue
        row = run_one(run, device)
        rows.append(row)
        shown = {k: v for k, v in row.items() if k not in ("hyperparameters",)}
        print(json.dumps(shown), flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    failed = [r["run"] for r in rows if not r["ok"]]
    print("targets:", "all met" if not failed else f"missed by {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
