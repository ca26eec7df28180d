"""The attribution methods on each family, through ``ModelRuntime.explain`` (as both
dispatchers call it), checked against what they promise: the input's shape, integrated
gradients' completeness, saliency as the plain autograd gradient, occlusion finding the one
patch a model reads."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from aiaas.ml.explain import ExplainOptions, explain, occlusion_window
from aiaas.ml.weights import save_safetensors
from aiaas.serving import ModelRuntime
from aiaas.serving.mode import serving_mode
from tests.serving.helpers import load_runtime, make_module, make_spec, sample_shape

CPU = torch.device("cpu")

FAMILIES: dict[str, tuple[str, dict[str, Any]]] = {
    "mlp": ("mlp", {"input_dim": 4, "hidden": [16], "output_dim": 3}),
    "cnn": (
        "cnn",
        {
            "in_channels": 1,
            "height": 8,
            "width": 8,
            "blocks": [{"channels": 4, "kernel": 3}],
            "hidden": [16],
            "output_dim": 3,
        },
    ),
    "lstm": (
        "rnn",
        {"cell": "lstm", "input_size": 2, "hidden_size": 8, "seq_len": 6, "output_dim": 3},
    ),
    "gru": (
        "rnn",
        {"cell": "gru", "input_size": 2, "hidden_size": 8, "seq_len": None, "output_dim": 3},
    ),
}


def _runtime(family: str) -> tuple[ModelRuntime, nn.Module, np.ndarray]:
    architecture, config = FAMILIES[family]
    spec = make_spec(architecture, config)
    runtime, module = load_runtime(spec)
    # Inputs far enough from the zeros baseline that the probabilities move between them.
    rng = np.random.default_rng(7)
    x = (3 * rng.standard_normal((4, *sample_shape(spec, 6)))).astype(np.float32)
    return runtime, module, x


def _probability(module: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        out: np.ndarray = module(torch.from_numpy(x)).softmax(-1).numpy()
    return out


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("method", ["integrated_gradients", "saliency"])
def test_attributions_have_the_inputs_shape(family: str, method: str) -> None:
    runtime, module, x = _runtime(family)
    found = runtime.explain(x, ExplainOptions(method=method))  # type: ignore[arg-type]
    assert found.attributions.shape == x.shape
    assert found.attributions.dtype == np.float32
    assert np.isfinite(found.attributions).all()
    np.testing.assert_allclose(found.outputs, _probability(module, x), atol=1e-6)
    # No target asked: the predicted class.
    assert found.targets.tolist() == found.outputs.argmax(1).tolist()


@pytest.mark.parametrize("family", FAMILIES)
def test_integrated_gradients_are_complete(family: str) -> None:
    runtime, module, x = _runtime(family)
    found = runtime.explain(x, ExplainOptions(target=1, steps=200))
    assert found.completeness_gap is not None
    rows = np.arange(len(x))
    moved = _probability(module, x)[rows, 1] - _probability(module, np.zeros_like(x))[rows, 1]
    # Meaningful only where the probability moved at all.
    assert (np.abs(moved) > 1e-3).all(), moved
    total = found.attributions.reshape(len(x), -1).sum(axis=1)
    # The gap is what it says it is, measured here independently...
    np.testing.assert_allclose(found.completeness_gap, total - moved, atol=1e-5)
    # ...and the attributions account for the change to within 1 %.
    assert (np.abs(total - moved) < 1e-2 * np.abs(moved)).all(), (total, moved)


@pytest.mark.parametrize("family", FAMILIES)
def test_saliency_is_the_gradient_of_the_target_probability(family: str) -> None:
    runtime, module, x = _runtime(family)
    found = runtime.explain(x, ExplainOptions(method="saliency", target=2))
    inputs = torch.from_numpy(x.copy()).requires_grad_()
    probability = module(inputs).softmax(-1)[:, 2].sum()
    (gradient,) = torch.autograd.grad(probability, inputs)
    # Signed: the sign tells which way a change moves the answer.
    assert (found.attributions < 0).any()
    assert (found.attributions > 0).any()
    np.testing.assert_allclose(found.attributions, gradient.numpy(), rtol=1e-4, atol=1e-7)


def _corner_cnn() -> tuple[ModelRuntime, int]:
    """A CNN whose answer reads the top-left 2x2 pixels of a 16x16 image and nothing else:
    a 1x1 identity convolution, and a head whose weights are zero elsewhere."""
    config = {
        "in_channels": 1,
        "height": 16,
        "width": 16,
        "blocks": [{"channels": 1, "kernel": 1, "pool": 1}],
        "output_dim": 2,
    }
    spec = make_spec("cnn", config)
    module = make_module(spec)
    side = occlusion_window((1, 16, 16))[1]
    with torch.no_grad():
        conv = module.convs[0]
        conv.weight.fill_(1.0)
        conv.bias.zero_()
        head = module.head.linears[-1]
        head.weight.zero_()
        head.bias.zero_()
        for row in range(side):
            head.weight[1, row * 16 : row * 16 + side] = 2.0
    weights = save_safetensors(module)
    return ModelRuntime.load(spec, weights, device=CPU), side


def test_occlusion_marks_the_patch_the_model_reads() -> None:
    runtime, side = _corner_cnn()
    x = np.random.default_rng(3).uniform(0.5, 1.0, (2, 1, 16, 16)).astype(np.float32)
    found = runtime.explain(x, ExplainOptions(method="occlusion", target=1))
    assert found.attributions.shape == x.shape
    corner = found.attributions[:, :, :side, :side]
    # Hiding the corner lowers class 1's probability; nothing else changes anything.
    assert (corner > 1e-3).all(), corner
    rest = found.attributions.copy()
    rest[:, :, :side, :side] = 0
    assert np.abs(rest).max() < 1e-6


def test_occlusion_is_for_images_only() -> None:
    runtime, _, x = _runtime("mlp")
    with pytest.raises(ValueError, match="occlusion explains images"):
        runtime.explain(x, ExplainOptions(method="occlusion"))


def test_a_target_past_the_outputs_is_refused() -> None:
    runtime, _, x = _runtime("mlp")
    with pytest.raises(ValueError, match="past the model's 3 outputs"):
        runtime.explain(x, ExplainOptions(target=3))


def test_regression_explains_the_output_itself() -> None:
    architecture, config = FAMILIES["mlp"]
    spec = make_spec(architecture, config, task="regression")
    runtime, module = load_runtime(spec)
    x = np.random.default_rng(5).standard_normal((3, 4)).astype(np.float32)
    found = runtime.explain(x, ExplainOptions(method="saliency", target=1))
    inputs = torch.from_numpy(x.copy()).requires_grad_()
    (gradient,) = torch.autograd.grad(module(inputs)[:, 1].sum(), inputs)
    np.testing.assert_allclose(found.attributions, gradient.numpy(), rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("family", ["cnn", "lstm"])
def test_explains_on_a_thread_in_serving_mode(family: str) -> None:
    """The forward thread and a worker's batch thread live in inference mode; explaining
    there must still differentiate, and give what it gives elsewhere."""
    runtime, _, x = _runtime(family)
    options = ExplainOptions(target=0, steps=16)
    outside = runtime.explain(x, options)
    with serving_mode():
        inside = runtime.explain(x, options)
    np.testing.assert_array_equal(inside.attributions, outside.attributions)


def test_options_travel_and_refuse_nonsense() -> None:
    options = ExplainOptions(method="saliency", target=2, steps=10)
    assert ExplainOptions.from_dict(options.to_dict()) == options
    for bad, says in (
        ({"method": "lime"}, "method must be"),
        ({"target": -1}, "target must be"),
        ({"steps": 0}, "steps must be"),
        ({"steps": 10_000}, "steps must be"),
    ):
        with pytest.raises(ValueError, match=says):
            ExplainOptions(**bad)
    with pytest.raises(ValueError, match="lack"):
        ExplainOptions.from_dict({"method": "saliency"})


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("family", FAMILIES)
def test_cuda_explains_as_the_cpu_does(family: str) -> None:
    """On CUDA, recurrent models need cuDNN off for the backward in eval mode."""
    runtime, module, x = _runtime(family)
    gpu = ModelRuntime.load(runtime.spec, save_safetensors(module), device=torch.device("cuda"))
    for method in ("integrated_gradients", "saliency"):
        options = ExplainOptions(method=method, target=1)  # type: ignore[arg-type]
        on_gpu = gpu.explain(x, options)
        on_cpu = runtime.explain(x, options)
        np.testing.assert_allclose(on_gpu.attributions, on_cpu.attributions, atol=1e-4)


def test_the_core_takes_a_plain_module() -> None:
    """``ml.explain`` needs no runtime: a module and a tensor."""
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(3, 2)).eval()
    x = torch.ones(1, 3)
    found = explain(module, x, ExplainOptions(method="saliency", target=0), softmax=False)
    np.testing.assert_allclose(found.attributions[0], module[0].weight[0].detach().numpy())
