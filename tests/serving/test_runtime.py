from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pytest
import torch

from aiaas.ml.errors import NotSafetensors, WeightsMismatch
from aiaas.ml.weights import save_safetensors
from aiaas.serving import ModelRuntime
from aiaas.serving.graphs import calibrate, prepack_forward, trace_forward
from aiaas.serving.mode import in_serving_mode, serving_mode
from aiaas.serving.postprocess import postprocess
from tests.serving.helpers import load_runtime, make_module, make_spec, sample_shape

CPU = torch.device("cpu")


def _direct(module: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        out: np.ndarray = module(torch.from_numpy(x)).numpy()
    return out


@pytest.mark.parametrize("architecture", ["mlp", "cnn", "rnn"])
def test_classification_matches_the_module(architecture: str) -> None:
    spec = make_spec(architecture)
    runtime, module = load_runtime(spec)
    x = np.random.default_rng(0).standard_normal((5, *sample_shape(spec))).astype(np.float32)
    got = runtime.predict(x)
    with torch.no_grad():
        want = module(torch.from_numpy(x)).softmax(-1).numpy()
    assert got.dtype == np.float32
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)


def test_regression_returns_raw_values() -> None:
    spec = make_spec("mlp", task="regression")
    runtime, module = load_runtime(spec)
    x = np.random.default_rng(1).standard_normal((3, 64)).astype(np.float32)
    got = runtime.predict(x)
    np.testing.assert_allclose(got, _direct(module, x), rtol=0, atol=1e-6)
    assert runtime.postprocess(got) == got.tolist()


def test_postprocess_maps_the_argmax_to_labels() -> None:
    labels = tuple(f"class-{i}" for i in range(10))
    spec = make_spec("mlp", labels=labels)
    runtime, _ = load_runtime(spec)
    outputs = np.zeros((3, 10), dtype=np.float32)
    outputs[[0, 1, 2], [7, 0, 9]] = 1.0
    assert runtime.postprocess(outputs) == ["class-7", "class-0", "class-9"]
    assert postprocess(make_spec("mlp"), outputs) == [7, 0, 9]


def test_nbytes_counts_parameters_and_buffers() -> None:
    spec = make_spec("cnn")
    module = make_module(spec)
    weights = save_safetensors(module)
    expected = sum(p.numel() * 4 for p in module.parameters())
    eager = ModelRuntime.load(spec, weights, device=CPU, trace=False)
    assert eager.nbytes == expected > 0
    runtime = ModelRuntime.load(spec, weights, device=CPU)
    # With a prepacked graph, its copy of the weights counts too.
    assert runtime.nbytes == (2 * expected if runtime.batched_from is not None else expected)
    assert runtime.device == CPU


def test_variable_length_rnn_on_two_lengths() -> None:
    config = {"cell": "lstm", "input_size": 3, "hidden_size": 8, "seq_len": None, "output_dim": 2}
    spec = make_spec("rnn", config, task="regression")
    assert spec.input_shape == (None, 3)
    runtime, module = load_runtime(spec)
    rng = np.random.default_rng(2)
    for length in (4, 17):
        x = rng.standard_normal((2, length, 3)).astype(np.float32)
        np.testing.assert_allclose(runtime.predict(x), _direct(module, x), rtol=0, atol=1e-6)


def test_read_only_input_is_accepted() -> None:
    runtime, module = load_runtime(make_spec("mlp", task="regression"))
    x = np.arange(128, dtype=np.float32).reshape(2, 64) / 128
    frozen = np.frombuffer(x.tobytes(), dtype=np.float32).reshape(2, 64)
    assert not frozen.flags.writeable
    np.testing.assert_allclose(runtime.predict(frozen), _direct(module, x), atol=1e-6)


def test_float64_input_is_cast() -> None:
    runtime, _ = load_runtime(make_spec("mlp"))
    x = np.random.default_rng(3).standard_normal((2, 64))
    np.testing.assert_allclose(runtime.predict(x), runtime.predict(x.astype(np.float32)))


@pytest.mark.parametrize("shape", [(64,), (2, 63), (0, 64), (2, 64, 1)])
def test_wrong_input_shapes_are_refused(shape: tuple[int, ...]) -> None:
    runtime, _ = load_runtime(make_spec("mlp"))
    with pytest.raises(ValueError, match="batch"):
        runtime.predict(np.zeros(shape, dtype=np.float32))


def test_loading_sets_eval_mode_without_gradients() -> None:
    config = {"input_dim": 4, "hidden": [16], "output_dim": 2, "dropout": 0.5}
    runtime, _ = load_runtime(make_spec("mlp", config))
    assert not runtime.module.training
    assert not any(p.requires_grad for p in runtime.module.parameters())
    x = np.ones((4, 4), dtype=np.float32)
    # Dropout would make two forwards differ if the module were still training.
    np.testing.assert_array_equal(runtime.predict(x), runtime.predict(x))


@pytest.mark.parametrize("architecture", ["mlp", "cnn"])
def test_served_modules_have_no_dropout_and_answer_as_the_eval_model(architecture: str) -> None:
    config = (
        {"input_dim": 4, "hidden": [16, 8], "output_dim": 3, "dropout": 0.3}
        if architecture == "mlp"
        else None
    )
    spec = make_spec(architecture, config)
    original = make_module(spec)
    original.eval()
    assert any(isinstance(m, torch.nn.Dropout) for m in original.modules())
    runtime = ModelRuntime.load(spec, save_safetensors(original), device=CPU)
    assert not any(isinstance(m, torch.nn.Dropout) for m in runtime.module.modules())
    x = np.random.default_rng(0).normal(size=(5, *sample_shape(spec))).astype(np.float32)
    with torch.inference_mode():
        expected = original(torch.from_numpy(x)).softmax(-1).numpy()
    # Not bit for bit: batches may run through the prepacked graph, which sums in another order.
    np.testing.assert_allclose(runtime.predict(x), expected, rtol=0, atol=1e-6)


def test_weights_of_another_model_are_refused() -> None:
    spec = make_spec("mlp")
    other = make_module(make_spec("cnn"))
    with pytest.raises(WeightsMismatch):
        ModelRuntime.load(spec, save_safetensors(other), device=CPU)
    with pytest.raises(NotSafetensors):
        ModelRuntime.load(spec, b"not a model", device=CPU)


def test_label_count_must_match_the_outputs() -> None:
    spec = make_spec("mlp", labels=("a", "b"))
    with pytest.raises(ValueError, match="2 labels"):
        load_runtime(spec, module=make_module(make_spec("mlp")))


def test_without_warmup() -> None:
    spec = make_spec("rnn")
    module = make_module(spec)
    runtime = ModelRuntime.load(spec, save_safetensors(module), device=CPU, warmup=False)
    x = np.zeros((1, 50, 1), dtype=np.float32)
    np.testing.assert_allclose(
        runtime.predict(x), torch.from_numpy(_direct(module, x)).softmax(-1).numpy(), atol=1e-6
    )


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("architecture", ["mlp", "cnn", "rnn"])
def test_cuda_matches_cpu(architecture: str) -> None:
    spec = make_spec(architecture)
    module = make_module(spec)
    weights = save_safetensors(module)
    cpu = ModelRuntime.load(spec, weights, device=CPU)
    gpu = ModelRuntime.load(spec, weights, device=torch.device("cuda"))
    assert gpu.device.type == "cuda"
    rng = np.random.default_rng(4)
    for rows in (1, 32, 512):
        x = rng.standard_normal((rows, *sample_shape(spec))).astype(np.float32)
        out = gpu.predict(x)
        assert out.dtype == np.float32
        np.testing.assert_allclose(out, cpu.predict(x), rtol=0, atol=1e-4)


@pytest.mark.parametrize("architecture", ["mlp", "cnn"])
def test_feed_forward_models_run_traced_and_answer_as_eager(architecture: str) -> None:
    spec = make_spec(architecture)
    module = make_module(spec)
    weights = save_safetensors(module)
    traced = ModelRuntime.load(spec, weights, device=CPU)
    eager = ModelRuntime.load(spec, weights, device=CPU, trace=False)
    assert traced.traced
    assert not eager.traced
    rng = np.random.default_rng(5)
    for rows in (1, 2, 7, 64):
        x = rng.standard_normal((rows, *sample_shape(spec))).astype(np.float32)
        np.testing.assert_allclose(traced.predict(x), eager.predict(x), rtol=0, atol=1e-6)


def test_predict_leaves_the_callers_torch_state_as_it_was() -> None:
    runtime, _ = load_runtime(make_spec("cnn"))
    x = np.zeros((2, *sample_shape(runtime.spec)), dtype=np.float32)
    optimize = torch._C._get_graph_executor_optimize()
    runtime.predict(x)
    assert not torch.is_inference_mode_enabled()
    assert torch._C._get_graph_executor_optimize() == optimize
    with serving_mode():
        assert in_serving_mode()
        runtime.predict(x)
        assert in_serving_mode()
    assert not in_serving_mode()


@pytest.mark.parametrize("architecture", ["mlp", "cnn", "rnn"])
def test_a_runtime_loaded_in_serving_mode_is_the_same_runtime(architecture: str) -> None:
    # Forward threads load the models they are asked for while in serving mode: the load
    # must still build ordinary tensors (tracing needs them) and answer as elsewhere.
    spec = make_spec(architecture)
    weights = save_safetensors(make_module(spec))
    plain = ModelRuntime.load(spec, weights, device=CPU)
    with serving_mode():
        served = ModelRuntime.load(spec, weights, device=CPU)
        assert in_serving_mode()
    assert served.traced == plain.traced
    assert not any(p.is_inference() for p in served.module.parameters())
    x = np.random.default_rng(9).standard_normal((3, *sample_shape(spec))).astype(np.float32)
    with serving_mode():
        in_mode = served.predict(x)
    # Each load calibrates on its own timings: the 3 rows may go through the prepacked graph
    # in one and the plain graph in the other, which agree to oneDNN's summation order.
    np.testing.assert_allclose(in_mode, plain.predict(x), rtol=0, atol=1e-5)


def test_a_failing_forward_leaves_the_callers_torch_state_as_it_was() -> None:
    runtime, _ = load_runtime(make_spec("mlp"))
    optimize = torch._C._get_graph_executor_optimize()
    broken = ModelRuntime(runtime.spec, _Raising(), CPU)
    with pytest.raises(RuntimeError, match="the forward failed"):
        broken.predict(np.zeros((2, *sample_shape(runtime.spec)), dtype=np.float32))
    assert not torch.is_inference_mode_enabled()
    assert torch._C._get_graph_executor_optimize() == optimize


def test_rnn_falls_back_to_eager_and_still_takes_any_length() -> None:
    # nn.LSTM's hidden-state check warns while tracing: the trace is not trusted.
    spec = make_spec(
        "rnn", {"cell": "lstm", "input_size": 2, "hidden_size": 8, "seq_len": None, "output_dim": 3}
    )
    runtime, module = load_runtime(spec)
    assert not runtime.traced
    for length in (3, 40):
        x = np.random.default_rng(length).standard_normal((2, length, 2)).astype(np.float32)
        np.testing.assert_allclose(
            runtime.predict(x), torch.from_numpy(_direct(module, x)).softmax(-1).numpy(), atol=1e-6
        )


class _Raising(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("the forward failed")


class _Branching(torch.nn.Module):
    """Data-dependent control flow: a trace would keep only the branch it saw."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if x.sum() > 0 else -x


class _Counting(torch.nn.Module):
    """Python state a trace freezes as a constant, with no warning at all."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return x * self.calls


@pytest.mark.parametrize("module", [_Branching(), _Counting()], ids=["warns", "differs"])
def test_untrustworthy_traces_are_not_used(module: torch.nn.Module) -> None:
    spec = make_spec("mlp", {"input_dim": 4, "hidden": [], "output_dim": 4})
    assert trace_forward(spec, module, CPU) is None


def test_a_trusted_trace_is_returned_for_a_plain_module() -> None:
    spec = make_spec("mlp", {"input_dim": 4, "hidden": [], "output_dim": 4})
    module = make_module(spec)
    forward = trace_forward(spec, module, CPU)
    assert forward is not None
    x = torch.rand(5, 4)
    with torch.inference_mode():
        torch.testing.assert_close(forward(x), module(x))


def test_a_small_cnn_runs_batches_prepacked_and_answers_as_eager() -> None:
    # The benchmark's CNN: plain convolutions cost about the same per row at any batch
    # size, prepacked ones several times less from a few rows on.
    spec = make_spec(
        "cnn",
        {
            "in_channels": 1,
            "height": 28,
            "width": 28,
            "blocks": [{"channels": 8, "kernel": 3}, {"channels": 16, "kernel": 3}],
            "output_dim": 10,
        },
    )
    module = make_module(spec)
    weights = save_safetensors(module)
    runtime = ModelRuntime.load(spec, weights, device=CPU)
    eager = ModelRuntime.load(spec, weights, device=CPU, trace=False)
    assert runtime.batched_from is not None
    assert eager.batched_from is None
    rng = np.random.default_rng(6)
    for rows in sorted({1, runtime.batched_from, 7, 64}):
        x = rng.standard_normal((rows, *sample_shape(spec))).astype(np.float32)
        np.testing.assert_allclose(runtime.predict(x), eager.predict(x), rtol=0, atol=1e-5)


def test_a_prepacked_graph_that_differs_is_not_used() -> None:
    spec = make_spec("mlp", {"input_dim": 4, "hidden": [8], "output_dim": 3})
    assert prepack_forward(spec, make_module(spec)) is not None
    # Python state that the graph freezes as a constant: the eager module moves on.
    assert prepack_forward(spec, _Counting()) is None


class _Paced:
    """A forward whose run time is set per batch size, so calibration's choice is known."""

    def __init__(self, seconds: Callable[[int], float]) -> None:
        self.seconds = seconds

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        deadline = time.perf_counter() + self.seconds(len(x))
        while time.perf_counter() < deadline:
            pass
        return x


@pytest.mark.parametrize(
    ("plain_us", "prepacked_us", "expected"),
    [
        # Slower for one row, 3x faster from two on: the usual small CNN.
        (lambda n: 100 * n, lambda n: 130 + 20 * (n - 1), 2),
        # Faster everywhere: prepacked from the first row.
        (lambda n: 300 * n, lambda n: 100 * n, 1),
        # Never faster, or within the noise margin: never used.
        (lambda n: 100 * n, lambda n: 98 * n, None),
        # Faster only for small batches: not a threshold from which it stays faster.
        (lambda n: 100 + 10 * n, lambda n: 50 + 40 * n, None),
    ],
    ids=["crossover", "always", "never", "small-only"],
)
def test_calibration_picks_where_the_prepacked_graph_stays_faster(
    plain_us: Callable[[int], float], prepacked_us: Callable[[int], float], expected: int | None
) -> None:
    spec = replace(
        make_spec("mlp", {"input_dim": 4, "hidden": [], "output_dim": 2}), max_batch_size=8
    )
    plain = _Paced(lambda n: plain_us(n) / 1e6)
    prepacked = _Paced(lambda n: prepacked_us(n) / 1e6)
    assert calibrate(spec, plain, prepacked) == expected
