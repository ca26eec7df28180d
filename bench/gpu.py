"""Inference on CUDA through the worker's compute path, checked against the CPU and timed
beside plain torch on the same GPU.

For each model (the benchmark's MLP 784-256-256-10, a small CNN, an LSTM) and batch sizes 1, 32
and 512: the worker path (``ModelRuntime.predict``: a float32 array in, probabilities out, as a
worker runs each batch) on the GPU must give the CPU's outputs within 1e-4; its samples/s are
reported beside raw torch on the same GPU in two forms: the forward pass alone on inputs already
resident on the GPU (an upper bound no server reaches), and the same forward with the copy in
and out that any server pays (``torch.from_numpy(x).cuda()`` ... ``.cpu()``).

    python bench/gpu.py [--seconds 1.0] [--json out.json]

Needs a CUDA device; prints SKIP and exits 0 without one.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from aiaas.ml.architectures import build_model, parse_config
from aiaas.ml.weights import save_safetensors
from aiaas.serving.runtime import ModelRuntime
from aiaas.serving.spec import ServingSpec

MODELS: dict[str, tuple[str, dict[str, Any], tuple[int, ...]]] = {
    "mlp-784-256-256-10": (
        "mlp",
        {"input_dim": 784, "hidden": [256, 256], "output_dim": 10},
        (784,),
    ),
    "cnn-1x28x28": (
        "cnn",
        {
            "in_channels": 1,
            "height": 28,
            "width": 28,
            "blocks": [{"channels": 16, "kernel": 3}, {"channels": 32, "kernel": 3}],
            "hidden": [64],
            "output_dim": 10,
        },
        (1, 28, 28),
    ),
    "lstm-32x8": (
        "rnn",
        {"cell": "lstm", "input_size": 8, "hidden_size": 64, "seq_len": 32, "output_dim": 4},
        (32, 8),
    ),
}
BATCHES = (1, 32, 512)
TOLERANCE = 1e-4


def rate(step: Callable[[], object], rows: int, seconds: float) -> float:
    """Samples per second of ``step`` (which ends synchronised) over about ``seconds``."""
    for _ in range(5):
        step()
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds or count < 20:
        step()
        count += 1
    return rows * count / elapsed


def measure(
    name: str,
    cpu: ModelRuntime,
    cuda: ModelRuntime,
    shape: tuple[int, ...],
    batch: int,
    seconds: float,
) -> dict[str, Any]:
    x = np.random.default_rng(batch).standard_normal((batch, *shape), dtype=np.float32)
    module, gpu = cuda.module, cuda.device
    resident = torch.from_numpy(x).to(gpu)

    def raw_resident() -> object:
        with torch.inference_mode():
            out = module(resident).softmax(-1)
        torch.cuda.synchronize()
        return out

    def raw_with_copies() -> object:
        with torch.inference_mode():
            return module(torch.from_numpy(x).to(gpu)).softmax(-1).cpu().numpy()

    worker = rate(lambda: cuda.predict(x), batch, seconds)
    copies = rate(raw_with_copies, batch, seconds)
    alone = rate(raw_resident, batch, seconds)
    return {
        "model": name,
        "batch": batch,
        "max_abs_diff_vs_cpu": float(np.abs(cuda.predict(x) - cpu.predict(x)).max()),
        "worker_samples_s": worker,
        "raw_copies_samples_s": copies,
        "raw_resident_samples_s": alone,
        "worker_vs_raw_copies": worker / copies,
        "worker_vs_raw_resident": worker / alone,
        "cpu_worker_samples_s": rate(lambda: cpu.predict(x), batch, seconds / 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("SKIP: no CUDA device")
        return 0
    gpu = torch.device("cuda")
    print(f"device: {torch.cuda.get_device_name(gpu)}, torch {torch.__version__}")
    rows_out: list[dict[str, Any]] = []
    failures = 0
    for name, (architecture, raw, shape) in MODELS.items():
        config = parse_config(architecture, raw, max_parameters=10**9)
        torch.manual_seed(0)
        weights = save_safetensors(build_model(architecture, config))
        spec = ServingSpec(
            weights=name,
            architecture=architecture,
            config=raw,
            task="classification",
            labels=None,
            input_shape=shape,
        )
        cpu = ModelRuntime.load(spec, weights, device=torch.device("cpu"))
        cuda = ModelRuntime.load(spec, weights, device=gpu)
        for batch in BATCHES:
            measured = measure(name, cpu, cuda, shape, batch, args.seconds)
            ok = measured["max_abs_diff_vs_cpu"] <= TOLERANCE
            failures += not ok
            rows_out.append(measured)
            print(
                f"{name:20s} batch {batch:4d}  diff {measured['max_abs_diff_vs_cpu']:.2e} "
                f"{'ok' if ok else 'FAIL'}  "
                f"worker {measured['worker_samples_s']:12,.0f}/s  "
                f"raw+copies {measured['raw_copies_samples_s']:12,.0f}/s "
                f"({measured['worker_vs_raw_copies']:.2f}x)  "
                f"raw resident {measured['raw_resident_samples_s']:12,.0f}/s "
                f"({measured['worker_vs_raw_resident']:.2f}x)  "
                f"cpu worker {measured['cpu_worker_samples_s']:10,.0f}/s",
                flush=True,
            )
    if args.json:
        args.json.write_text(json.dumps(rows_out, indent=2))
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
